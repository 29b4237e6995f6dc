"""Stored outcomes: what a repeated idempotency key returns must equal the first answer."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.outcomes import (
    OUTCOME_TYPES,
    ChannelCreated,
    ChannelDeleted,
    ChannelRenewed,
    DaysAllocated,
    DaysGranted,
    OrderCredited,
    OrderRefunded,
    SubscriptionPeriodPaid,
    decode,
    encode,
)

AT = datetime(2030, 1, 14, 9, 30, 15, 123456, tzinfo=UTC)
BERLIN_SUMMER = datetime(2026, 7, 1, 12, 0, tzinfo=ZoneInfo("Europe/Berlin"))
INDIA = datetime(2026, 7, 1, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))

SAMPLES: list[Any] = [
    ChannelCreated(1, 7, "shop <1> & “quotes”", AT),
    ChannelCreated(2, 8, "Café 🚀 客服", BERLIN_SUMMER),
    DaysAllocated(1, 7, "shop", 30, 70, AT + timedelta(days=30), 12),
    DaysAllocated(1, 7, "shop", 1, 0, INDIA, 13),
    ChannelDeleted(1, 7, "shop", 20, 10, 55, AT),
    ChannelDeleted(1, 8, "empty", 0, 0, 0, BERLIN_SUMMER),
    DaysGranted(1, 30, 100, "goodwill", 14),
    DaysGranted(1, -30, 70, "mistake, ticket #9", 15),
    OrderCredited(1, 3, 2250, 2320, 16),
    OrderRefunded(1, 3, 2250, -180, 17),  # a refund may leave the balance negative
    OrderRefunded(1, 3, 0, 40, None),  # nothing left to take back
    ChannelRenewed(1, 7, "shop", 30, 40, AT + timedelta(days=60), 18),
    SubscriptionPeriodPaid(1, 9, "annual", 365, INDIA, 19),
]


def sample_id(outcome: Any) -> str:
    return type(outcome).__name__


def test_every_outcome_type_has_a_sample() -> None:
    assert {type(s).__name__ for s in SAMPLES} == set(OUTCOME_TYPES)


@pytest.mark.parametrize("outcome", SAMPLES, ids=sample_id)
def test_an_outcome_decodes_to_an_equal_replayed_copy(outcome: Any) -> None:
    kind, payload = encode(outcome)
    assert kind == type(outcome).__name__
    decoded = decode(kind, payload, type(outcome))
    assert type(decoded) is type(outcome)
    assert decoded.replayed is True
    assert decoded == dataclasses.replace(outcome, replayed=True)


@pytest.mark.parametrize("outcome", SAMPLES, ids=sample_id)
def test_datetimes_survive_with_their_offset(outcome: Any) -> None:
    decoded = decode(*encode(outcome), type(outcome))
    for field in dataclasses.fields(outcome):
        before, after = getattr(outcome, field.name), getattr(decoded, field.name)
        if isinstance(before, datetime):
            assert isinstance(after, datetime)
            assert after == before
            assert after.utcoffset() == before.utcoffset()
            assert after.microsecond == before.microsecond


@pytest.mark.parametrize("outcome", SAMPLES, ids=sample_id)
def test_the_payload_is_stable_json_without_the_replayed_flag(outcome: Any) -> None:
    kind, payload = encode(outcome)
    assert "replayed" not in json.loads(payload)
    assert encode(dataclasses.replace(outcome, replayed=True)) == (kind, payload)
    replayed = decode(kind, payload, type(outcome))
    assert encode(replayed) == (kind, payload)  # a replay stores nothing new


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (DaysAllocated(1, 7, "shop", 30, 70, AT, 12), ChannelRenewed),
        (ChannelRenewed(1, 7, "shop", 30, 40, AT, 18), DaysAllocated),
        (DaysGranted(1, 30, 100, "goodwill", 14), OrderCredited),
        (OrderCredited(1, 3, 2250, 2320, 16), OrderRefunded),
        (ChannelCreated(1, 7, "shop", AT), ChannelDeleted),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else type(v).__name__,
)
def test_a_key_reused_for_another_operation_is_refused(outcome: Any, expected: type) -> None:
    kind, payload = encode(outcome)
    with pytest.raises(TypeError, match=kind):
        decode(kind, payload, expected)


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(TypeError):
        decode("ChannelExploded", "{}", ChannelCreated)


@pytest.mark.parametrize(
    "thing", [object(), {"days": 1}, 42, None], ids=["object", "dict", "int", "None"]
)
def test_only_outcomes_can_be_encoded(thing: object) -> None:
    with pytest.raises(TypeError):
        encode(thing)


def test_the_stored_bytes_are_pinned() -> None:
    """Existing databases hold these payloads: an encoding that writes other bytes would
    make a replay compare differently and a stored row read differently."""
    assert encode(DaysAllocated(1, 7, "Café 🚀 <b>", 30, 70, BERLIN_SUMMER, 12)) == (
        "DaysAllocated",
        '{"active_until":"2026-07-01T12:00:00+02:00","balance":70,"channel_id":7,'
        '"channel_name":"Caf\\u00e9 \\ud83d\\ude80 <b>","days":30,"partner_id":1,'
        '"transfer_id":12}',
    )
    assert encode(OrderRefunded(1, 3, 0, 40, None)) == (
        "OrderRefunded",
        '{"balance":40,"days":0,"order_id":3,"partner_id":1,"transfer_id":null}',
    )
