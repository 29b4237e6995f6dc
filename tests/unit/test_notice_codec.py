"""The notice codec (core/notices.py): what goes into the notices table comes back equal,
and a payload that does not fit its type is refused, never read as 0."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import notices
from core.model import OrderKind
from core.notices import (
    KINDS,
    NOTICE_TYPES,
    AnyNotice,
    ChannelsExpiring,
    ListedChannel,
    LowBalanceCrossed,
    NoticeUndecodable,
    decode,
    encode,
)

ZONES = [UTC, ZoneInfo("Europe/Berlin"), timezone(timedelta(hours=5, minutes=30)),
         timezone(timedelta(hours=-9))]
INSTANTS = st.datetimes(timezones=st.sampled_from(ZONES))


def strategy(hint: Any) -> st.SearchStrategy[Any]:
    """Any value of a notice field's type (built from the type hints, like the codec)."""
    if isinstance(hint, types.UnionType):
        return st.one_of(*(strategy(a) for a in typing.get_args(hint)))
    if hint is types.NoneType:
        return st.none()
    if hint is datetime:
        return INSTANTS
    if hint is OrderKind:
        return st.sampled_from(OrderKind)
    if typing.get_origin(hint) is tuple:
        return st.lists(strategy(typing.get_args(hint)[0]), max_size=4).map(tuple)
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return st.builds(hint, **{f.name: strategy(hints[f.name])  # type: ignore[arg-type]
                                  for f in dataclasses.fields(hint)})
    return st.from_type(hint)


ANY_NOTICE = st.one_of(*(strategy(cls) for cls in typing.get_args(AnyNotice)))


def test_every_notice_type_has_one_stored_kind() -> None:
    assert set(KINDS) == set(typing.get_args(AnyNotice))
    assert len(NOTICE_TYPES) == len(KINDS)  # no two types share a kind


@given(ANY_NOTICE)
def test_a_notice_comes_back_equal_and_encodes_the_same_again(notice: AnyNotice) -> None:
    kind, payload = encode(notice)
    back = decode(kind, payload)
    assert type(back) is type(notice) and back == notice
    assert encode(back) == (kind, payload)


def test_a_notice_is_stored_under_the_first_versions_kind_with_flat_facts() -> None:
    at = datetime(2030, 1, 17, 9, 30, tzinfo=UTC)
    kind, payload = encode(ChannelsExpiring(3, 2, (ListedChannel("a & b", at, True),)))
    assert kind == "expiry"
    assert json.loads(payload) == {
        "v": 2, "stage": 3, "count": 2,
        "channels": [{"name": "a & b", "until": "2030-01-17T09:30:00+00:00", "auto_renew": True}],
    }


def test_queueing_stores_the_encoded_notice_once_per_key() -> None:
    calls: list[tuple[str, int | None, str, str, datetime]] = []

    class Ledger:
        def add_notice(
            self, key: str, partner_id: int | None, kind: str, payload: str, at: datetime
        ) -> bool:
            calls.append((key, partner_id, kind, payload, at))
            return len(calls) == 1

    at = datetime(2030, 1, 14, tzinfo=UTC)
    low = LowBalanceCrossed(5, 10, 0, None)
    first = notices.notify(Ledger(), at, "low:1:1", 7, low)  # type: ignore[arg-type]
    again = notices.notify(Ledger(), at, "low:1:1", 7, low)  # type: ignore[arg-type]
    assert (first, again) == (True, False)
    assert calls[0] == ("low:1:1", 7, "low_balance", encode(low)[1], at)


def test_only_notices_encode() -> None:
    with pytest.raises(TypeError):
        encode(ListedChannel("a", None, False))  # type: ignore[arg-type]


LOW = '{"balance":5,"running":0,"runway":null,"threshold":10,"v":2}'


@pytest.mark.parametrize(("kind", "payload", "reason"), [
    ("low_balance_v9", LOW, "unknown kind"),
    ("low_balance", "{", "not JSON"),
    ("low_balance", "[5, 10]", "not a JSON object"),
    ("low_balance", LOW.replace('"v":2', '"v":3'), "unknown payload version"),
    ("low_balance", LOW.replace('"balance":5,', ""), "LowBalanceCrossed: missing balance"),
    ("low_balance", LOW.replace('"balance":5', '"balance":5,"extra":1'),
     "LowBalanceCrossed: unexpected extra"),
    ("low_balance", LOW.replace('"balance":5', '"balance":"5"'), "balance: expected int, got str"),
    ("low_balance", LOW.replace('"balance":5', '"balance":true'), "balance: expected int"),
    ("low_balance", LOW.replace('"balance":5', '"balance":null'), "balance: expected int"),
    ("low_balance", LOW.replace('"runway":null', '"runway":"soon"'), "not an ISO date"),
    ("low_balance", LOW.replace('"runway":null', '"runway":"2030-01-20T09:00:00"'),
     "has no time zone"),
    ("days_credited", '{"balance":1,"days":1,"order_id":4,"order_kind":"gift","v":2}',
     "not a OrderKind"),
    ("expiry", '{"channels":"a","count":1,"stage":3,"v":2}', "channels: expected tuple"),
    ("expiry", '{"channels":[{"name":"a","until":null,"auto_renew":1}],"count":1,"stage":3,'
               '"v":2}', "channels[0].auto_renew: expected bool, got int"),
    ("expiry", '{"channels":[{"name":"a","until":null}],"count":1,"stage":3,"v":2}',
     "ChannelsExpiring.channels[0]: missing auto_renew"),
])
def test_a_payload_that_does_not_fit_its_type_is_refused(
    kind: str, payload: str, reason: str
) -> None:
    with pytest.raises(NoticeUndecodable) as caught:
        decode(kind, payload)
    assert caught.value.kind == kind
    assert reason in caught.value.reason
