"""Hypothesis-generated deliveries to `POST /stripe/webhook`.

The world holds a paid top-up, an expired one and one still open whose genuine
`checkout.session.completed` event (made by FakeStripe) would credit 90 days if it
arrived properly signed. Then:

- forged deliveries (no signature, another secret, a stale or garbage timestamp, a body
  changed after signing, random headers, other schemes) of that genuine event and of
  random bodies get 400, whatever the body;
- bodies that are validly signed but are random JSON, real events with their fields
  mutated so that no rule lets them pay (amount or currency off, unpaid, ids we never
  made, metadata naming someone else), other event types, non-UTF-8 or huge bodies, are
  answered 400, or 200 ignored/duplicate/unchanged, and never 500;
- nothing in the ledger, orders or channels changes, and `verify()` holds.

At the end the genuine event, signed, still credits exactly its 90 days: nothing the
fuzz sent spoiled it.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.model import OrderStatus
from tests.integration.payments_harness import (
    HTTPX_DEPRECATION,
    PaymentsHarness,
    payments_harness,
)

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.filterwarnings(HTTPX_DEPRECATION),
]

EXAMPLES = 300  # cheap: about 10 ms a delivery
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,
    ],
)
MEMBER = 4242
Json = dict[str, Any]



@dataclass
class World:
    h: PaymentsHarness
    paid_ref: str  # session of the paid top-up
    paid_pi: str  # its PaymentIntent (a charge.refunded naming it would refund)
    expired_ref: str
    open_ref: str  # session of the open top-up: completing it would credit
    open_id: int
    genuine: Json  # the real checkout.session.completed of the open one
    seen_event_ids: list[str]
    real_events: list[Json]  # every event FakeStripe made (mostly unhandled types)
    stats: Counter[str] = field(default_factory=Counter)


async def ledger_state(h: PaymentsHarness) -> tuple[Any, ...]:
    """Everything a payment could change, except the audit of what arrived (stripe_events)
    and notices to support (a mismatch is reported to them, by design)."""
    q = h.store.execute_raw
    return (
        tuple(await q("SELECT code, balance FROM accounts ORDER BY code")),
        tuple(await q("SELECT * FROM orders ORDER BY id")),
        tuple(await q("SELECT * FROM channels ORDER BY id")),
        tuple(await q("SELECT * FROM partners ORDER BY id")),
        tuple(await q("SELECT * FROM members ORDER BY user_id")),
        (await q("SELECT count(*), max(id) FROM transfers"))[0],
        (await q("SELECT count(*) FROM operations"))[0],
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with payments_harness(tmp_path_factory.mktemp("webhook-fuzz")) as h:
        acme = await h.new_partner("Acme", channels=["shop", "live"], member_id=MEMBER)
        globex = await h.new_partner("Globex", channels=["gchan"])
        paid = await h.payments.start_topup(acme.id, 60, f"user:{MEMBER}")
        assert paid.provider_ref is not None
        paid_event = h.fake.complete_session(paid.provider_ref)
        assert await h.deliver(paid_event) == "credited"
        expired = await h.payments.start_topup(globex.id, 45, "user:1")
        assert expired.provider_ref is not None
        expired_event = h.fake.expire_session(expired.provider_ref)
        assert await h.deliver(expired_event) == "expired"
        still_open = await h.payments.start_topup(acme.id, 90, f"user:{MEMBER}")
        assert still_open.provider_ref is not None
        genuine = h.fake.complete_session(still_open.provider_ref)
        w = World(
            h, paid.provider_ref, h.session(paid)["payment_intent"], expired.provider_ref,
            still_open.provider_ref, still_open.id, genuine,
            [paid_event["id"], expired_event["id"]], h.fake.events,
        )
        yield w
        # Nothing spoiled the genuine event: signed as Stripe signs, it credits once.
        assert await h.deliver(genuine) == "credited"
        assert (await h.order(still_open.id)).status is OrderStatus.PAID
        assert await h.balance(acme.id) == 150
        total = sum(w.stats.values())
        print(f"\nwebhook fuzz: {total} deliveries: {dict(sorted(w.stats.items()))}")


# ------------------------------------------------------------------------- strategies

ASCII = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
)
JSON_VALUE = st.recursive(
    SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
TYPES = st.sampled_from([
    "checkout.session.completed", "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed", "checkout.session.expired", "invoice.paid",
    "customer.subscription.deleted", "charge.refunded", "payment_intent.succeeded",
    "charge.succeeded", "radar.early_fraud_warning.created", "", "CHECKOUT.SESSION.COMPLETED",
])


@st.composite
def random_event(draw: st.DrawFn, w: World) -> Json | bytes | str:
    """A body a validly signed delivery may carry that must change nothing."""
    shape = draw(st.sampled_from(
        ["json", "skeleton", "skeleton", "near miss", "near miss", "real", "replay", "raw"]
    ))
    if shape == "json":
        return json.dumps(draw(JSON_VALUE))
    if shape == "raw":
        return draw(st.one_of(
            st.binary(max_size=300),
            st.sampled_from([b"", b"{", b"null", b"[]", b'{"id":1}', b"\xff\xfe{}",
                             b'{"id": "evt_\xc3\x28"}', b"\x00" * 10]),
        ))
    if shape == "real":  # FakeStripe's own events of every type, under a fresh id
        event = copy.deepcopy(draw(st.sampled_from(w.real_events)))
        if event["type"] in ("checkout.session.completed", "charge.refunded"):
            event["type"] = "payment_intent.succeeded"  # the paying ones are near misses
        event["id"] = "evt_fuzz_real"
        return event
    if shape == "replay":  # an event id already handled: answered from the record
        event = copy.deepcopy(w.genuine)
        event["id"] = draw(st.sampled_from(w.seen_event_ids))
        event["data"]["object"]["amount_total"] = draw(st.integers(0, 10**6))
        return event
    obj: Json = {}
    kind = draw(TYPES)
    if shape == "near miss":
        # The genuine event with one thing changed that no rule lets pay.
        obj = copy.deepcopy(w.genuine["data"]["object"])
        kind = draw(st.sampled_from(["checkout.session.completed",
                                     "checkout.session.async_payment_succeeded"]))
        miss = draw(st.sampled_from(["amount", "currency", "unpaid", "open", "foreign", "id"]))
        if miss == "amount":
            obj["amount_total"] = draw(st.one_of(
                st.integers(-(10**12), 10**12).filter(lambda a: a != obj["amount_total"]),
                st.sampled_from([None, "3000", 3000.0, True, [3000]]),
            ))
        elif miss == "currency":
            # ("USD" would pay: currency codes are compared case-insensitively.)
            obj["currency"] = draw(st.sampled_from(["eur", "", None, "usd ", "jpy", 1, "us"]))
        elif miss == "unpaid":
            obj["payment_status"] = draw(st.sampled_from(["unpaid", "no_payment_required",
                                                          "", None, "PAID"]))
        elif miss == "open":
            obj["status"] = draw(st.sampled_from(["open", "", None, "completed"]))
        elif miss == "foreign":
            meta = dict(obj.get("metadata") or {})
            meta[draw(st.sampled_from(["partner_id", "order_id"]))] = str(
                draw(st.integers(1000, 10**9))
            )
            obj["metadata"] = meta
        else:
            obj["id"] = draw(st.sampled_from([w.paid_ref, w.expired_ref, "cs_test_unknown",
                                              "", w.open_ref.upper()]))
    else:  # an event skeleton of a handled type around random fields
        ref = draw(st.sampled_from([w.paid_ref, w.expired_ref, "cs_test_nope", "pi_nope",
                                    "sub_nope", "in_nope", w.paid_pi]))
        obj = draw(st.dictionaries(st.text(max_size=16), JSON_VALUE, max_size=6))
        obj["id"] = draw(st.one_of(st.just(ref), JSON_VALUE))
        if kind == "charge.refunded":  # a refund of something we never took
            obj["payment_intent"] = draw(st.one_of(
                st.sampled_from(["pi_nope", w.paid_ref, "", None]), JSON_VALUE,
            ))
            obj["amount_refunded"] = draw(st.one_of(st.integers(-(10**9), 10**9), JSON_VALUE))
        if kind == "invoice.paid":  # a period of a subscription we never made
            obj["parent"] = {"subscription_details": {
                "subscription": draw(st.sampled_from(["sub_nope", "", None])),
                "metadata": {"partner_id": draw(st.sampled_from(["2", "999", "x", ""])),
                             "channel_id": draw(st.sampled_from(["1", "2", "999", "-1"])),
                             "interval": draw(st.sampled_from(["month", "year", "week"]))},
            }}
    event: Json = {"id": "evt_fuzz_made", "object": "event", "type": kind,
                   "data": {"object": obj}}
    if draw(st.booleans()):
        event["livemode"] = draw(SCALAR)
    return event


def body_of(event: Json | bytes | str) -> bytes:
    if isinstance(event, bytes):
        return event
    if isinstance(event, str):
        return event.encode("utf-8", "surrogatepass")
    return json.dumps(event, indent=2).encode()


def signature(body: bytes, secret: str, timestamp: int) -> str:
    """`Stripe-Signature` as Stripe makes it, over the raw bytes (UTF-8 or not)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


async def post(
    w: World, body: bytes, headers: dict[str, str], *, chunked: bool = False
) -> tuple[int, Json]:
    h = w.h

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start:start + 65536]

    data: Any = pieces() if chunked else body
    async with h.http.post(h.webhook_url, data=data, headers=headers) as resp:
        text = await resp.text()
        try:
            answer = json.loads(text) if text else {}
        except ValueError:
            answer = {"raw": text[:200]}
        return resp.status, answer if isinstance(answer, dict) else {"raw": answer}


# ------------------------------------------------------------------------------ tests


@FUZZ
@given(data=st.data())
async def test_forged_deliveries_get_400_and_change_nothing(
    world: World, data: st.DataObject
) -> None:
    w, h = world, world.h
    event = data.draw(st.one_of(st.just(w.genuine), random_event(w)), label="event")
    body = body_of(event)
    now = int(time.time())
    forgery = data.draw(st.sampled_from([
        "missing", "wrong secret", "stale", "tampered", "garbage", "v0 only", "no timestamp",
        "random header",
    ]), label="forgery")
    header: str | None
    if forgery == "missing":
        header = None
    elif forgery == "wrong secret":
        other = data.draw(st.sampled_from(["whsec_other", h.secret + "x", h.secret[:-1], ""]))
        header = signature(body, other, now) if other else f"t={now},v1="
    elif forgery == "stale":
        header = signature(body, h.secret, now - data.draw(st.integers(301, 10**9)))
    elif forgery == "tampered":
        header = signature(body, h.secret, now)
        extra = data.draw(st.sampled_from([b" ", b"\n", b"0", b"{}"]))
        body = body + extra if data.draw(st.booleans()) else body.replace(b"9", b"1")
        if body == body_of(event):
            body += b" "
    elif forgery == "garbage":
        header = data.draw(ASCII)
    elif forgery == "v0 only":
        header = signature(body, h.secret, now).replace("v1=", "v0=")
    elif forgery == "no timestamp":
        header = signature(body, h.secret, now).split(",", 1)[1]
    else:
        parts = data.draw(st.lists(st.sampled_from([
            f"t={now}", "t=", "t=abc", f"t={now * 1000}", "v1=" + "0" * 64, "v1=", "v1=zz",
            ",", "=", "t=-1", "v1=" + "f" * 64,
        ]), max_size=5))
        header = ",".join(parts)
    headers = {"Content-Type": data.draw(st.sampled_from(
        ["application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded",
         "multipart/form-data", ""]
    ))}
    if header is not None:
        headers["Stripe-Signature"] = header
    before = await ledger_state(h)
    status, answer = await post(w, body, headers)
    shown = f"{forgery}: {body[:200]!r} {headers} -> {status} {answer}"
    assert status == 400, shown
    assert await ledger_state(h) == before, shown
    w.stats[f"forged:{forgery}:{status}"] += 1


@FUZZ
@given(data=st.data())
async def test_signed_random_bodies_are_refused_or_ignored_never_500(
    world: World, data: st.DataObject
) -> None:
    w, h = world, world.h
    event = data.draw(random_event(w), label="event")
    if isinstance(event, dict) and str(event["id"]).startswith("evt_fuzz_"):
        # A fresh id each time (hypothesis repeats itself): handled, not a duplicate.
        w.stats["fresh ids"] += 1
        event["id"] = f"evt_fuzz_{w.stats['fresh ids']:06d}"
    body = body_of(event)
    skew = data.draw(st.sampled_from([0, 0, 0, -290, 60]), label="clock skew")
    headers = {"Content-Type": "application/json; charset=utf-8",
               "Stripe-Signature": signature(body, h.secret, int(time.time()) + skew)}
    before = await ledger_state(h)
    status, answer = await post(w, body, headers, chunked=data.draw(st.booleans()))
    shown = f"{body[:300]!r} -> {status} {answer}"
    assert status in (200, 400), shown
    if status == 200:
        assert answer.get("status") in ("ok", "ignored", "duplicate"), shown
    assert await ledger_state(h) == before, shown
    w.stats[f"signed:{status}:{answer.get('status')}:{answer.get('result', '-')}"] += 1


@settings(FUZZ, max_examples=12)
@given(
    size=st.sampled_from([512 * 1024 + 1, 600_000, 2 * 1024 * 1024]),
    signed=st.booleans(), chunked=st.booleans(),
    fill=st.sampled_from([b" ", b"x", b"\xff", b"{"]),
)
async def test_huge_bodies_get_400(
    world: World, size: int, signed: bool, chunked: bool, fill: bytes
) -> None:
    w, h = world, world.h
    # A genuine event padded past the limit is refused like any other huge body.
    body = body_of(w.genuine) + b" " * size if fill == b" " else fill * size
    headers = {"Content-Type": "application/json"}
    if signed:
        headers["Stripe-Signature"] = signature(body, h.secret, int(time.time()))
    before = await ledger_state(h)
    try:
        status, answer = await post(w, body, headers, chunked=chunked)
    except (ConnectionError, OSError) as exc:  # the server may close on an oversized body
        status, answer = 400, {"closed": str(exc)}
    assert status in (400, 413), (status, answer)
    assert await ledger_state(h) == before
    w.stats[f"huge:{status}"] += 1


async def test_the_fuzzed_webhook_left_a_sound_ledger(world: World) -> None:
    await world.h.verify()
    assert (await world.h.order(world.open_id)).status is OrderStatus.OPEN
    assert world.h.fake.internal_errors == []
