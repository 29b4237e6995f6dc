"""`POST /stripe/webhook` and `GET /healthz` over HTTP, with events signed like Stripe's.

Redeliveries, events out of order, races with reconciliation, forged or stale signatures,
malformed bodies, payments that do not match the quote and sessions that are not ours.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from core.model import OrderStatus, PaymentOrder, TransferKind
from storage.sqlite import SqliteStore
from tests.integration.payments_harness import (
    HTTPX_DEPRECATION,
    SUCCESS_URL,
    PaymentsHarness,
    payments_harness,
)

pytestmark = pytest.mark.filterwarnings(HTTPX_DEPRECATION)

Json = dict[str, Any]


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[PaymentsHarness]:
    async with payments_harness(tmp_path) as harness:
        yield harness


async def _open_topup(h: PaymentsHarness, days: int = 30, **partner: Any) -> PaymentOrder:
    acme = await h.new_partner(partner.pop("name", "Acme"), **partner)
    order = await h.payments.start_topup(acme.id, days, "user:1")
    assert order.provider_ref is not None
    return order


# --------------------------------------------------------------- exactly once


async def test_the_same_event_three_times_credits_once(h: PaymentsHarness) -> None:
    order = await _open_topup(h)
    assert order.provider_ref is not None
    event = h.fake.complete_session(order.provider_ref)

    answers = [await h.post(event) for _ in range(3)]
    assert [status for status, _ in answers] == [200, 200, 200]
    assert [body["status"] for _, body in answers] == ["ok", "duplicate", "duplicate"]
    assert {body["result"] for _, body in answers} == {"credited"}

    # ... and three more at the same time.
    racing = await asyncio.gather(*(h.post(event) for _ in range(3)))
    assert {status for status, _ in racing} == {200}

    assert await h.balance(order.partner_id) == 30
    assert len(await h.transfers(TransferKind.PURCHASE)) == 1
    assert len(await h.notices("days_credited")) == 1
    assert await h.stripe_events() == {event["id"]: ("checkout.session.completed", "credited")}
    await h.verify()


async def test_expired_after_completed_keeps_the_credit(h: PaymentsHarness) -> None:
    order = await _open_topup(h)
    assert order.provider_ref is not None
    completed = h.fake.complete_session(order.provider_ref)
    assert await h.deliver(completed) == "credited"
    # Stripe does not promise an order: an "expired" about the session arriving late.
    expired = h.variant(completed, status="expired", payment_status="unpaid", url=None)
    expired["type"] = "checkout.session.expired"
    before = await h.snapshot()
    assert await h.deliver(expired) == "already"
    assert await h.snapshot() == before
    assert (await h.order(order.id)).status is OrderStatus.PAID
    assert await h.balance(order.partner_id) == 30
    await h.verify()


async def test_completed_after_reconcile_credited_it_credits_once(h: PaymentsHarness) -> None:
    order = await _open_topup(h)
    assert order.provider_ref is not None
    event = h.fake.complete_session(order.provider_ref)  # the webhook is late

    done = await h.payments.reconcile(timedelta(0))
    assert (done.checked, done.credited) == (1, 1)
    assert await h.balance(order.partner_id) == 30
    [purchase] = await h.transfers(TransferKind.PURCHASE)
    assert purchase[4] == "stripe:reconcile"

    assert await h.deliver(event) == "already"
    assert await h.balance(order.partner_id) == 30
    assert (await h.order(order.id)).payment_ref == h.session(order)["payment_intent"]
    assert len(await h.notices("days_credited")) == 1
    await h.verify()


async def test_webhook_and_reconcile_at_the_same_instant_credit_once(
    h: PaymentsHarness,
) -> None:
    orders = [await _open_topup(h, 30 + i, name=f"Partner {i}") for i in range(5)]
    events = []
    for order in orders:
        assert order.provider_ref is not None
        events.append(h.fake.complete_session(order.provider_ref))

    answers, reconciled = await asyncio.gather(
        asyncio.gather(*(h.post(e) for e in events)),
        asyncio.gather(h.payments.reconcile(timedelta(0)), h.payments.reconcile(timedelta(0))),
    )
    assert {status for status, _ in answers} == {200}
    webhook_credits = sum(body["result"] == "credited" for _, body in answers)
    reconcile_credits = sum(r.credited for r in reconciled)
    assert webhook_credits + reconcile_credits == len(orders)

    for order in orders:
        assert await h.balance(order.partner_id) == order.days
        assert (await h.order(order.id)).status is OrderStatus.PAID
    assert len(await h.transfers(TransferKind.PURCHASE)) == len(orders)
    assert len(await h.notices("days_credited")) == len(orders)
    await h.verify()


# ------------------------------------------------------------------ signatures


@pytest.mark.parametrize(
    "forgery", ["wrong secret", "missing", "stale", "tampered body", "garbage header",
                "other scheme"],
)
async def test_unsigned_badly_signed_or_stale_changes_nothing(
    h: PaymentsHarness, forgery: str
) -> None:
    order = await _open_topup(h)
    assert order.provider_ref is not None
    event = h.fake.complete_session(order.provider_ref)
    before = await h.snapshot()

    if forgery == "wrong secret":
        status, body = await h.post(event, secret="whsec_test_someone_else")
    elif forgery == "missing":
        status, body = await h.post(event, signed=False)
    elif forgery == "stale":  # 301 s old, past the 300 s tolerance
        status, body = await h.post(event, timestamp=int(time.time()) - 301)
    elif forgery == "tampered body":
        payload, headers = h.fake.signed_webhook(event, h.secret)
        forged = payload.replace(b'"amount_total": 1000', b'"amount_total": 10')
        assert forged != payload
        async with h.http.post(h.webhook_url, data=forged, headers=headers) as resp:
            status, body = resp.status, await resp.json()
    elif forgery == "garbage header":
        status, body = await h.post(event, headers={"Stripe-Signature": "t=abc,v1=zz"})
    else:
        payload, headers = h.fake.signed_webhook(event, h.secret)
        v0 = headers["Stripe-Signature"].replace("v1=", "v0=")
        status, body = await h.post(event, headers={"Stripe-Signature": v0})

    assert (status, body) == (400, {"status": "invalid signature"})
    assert await h.snapshot() == before
    assert await h.stripe_events() == {}
    assert (await h.order(order.id)).status is OrderStatus.OPEN

    # The genuine delivery still works afterwards.
    assert await h.deliver(event) == "credited"
    await h.verify()


async def test_a_signature_inside_the_tolerance_is_accepted(h: PaymentsHarness) -> None:
    order = await _open_topup(h)
    assert order.provider_ref is not None
    event = h.fake.complete_session(order.provider_ref)
    status, body = await h.post(event, timestamp=int(time.time()) - 290)
    assert (status, body["result"]) == (200, "credited")
    await h.verify()


@pytest.mark.parametrize(
    "payload",
    [b"{not json", b"[1, 2]", b'"evt"', b'{"id": "evt_1", "type": "checkout.session.completed"}',
     b'{"id": "evt_1", "type": "checkout.session.completed", "data": {"object": "cs_1"}}',
     b'{"id": 7, "type": "invoice.paid", "data": {"object": {}}}', b""],
)
async def test_signed_but_malformed_bodies_get_400(h: PaymentsHarness, payload: bytes) -> None:
    await _open_topup(h)
    before = await h.snapshot()
    status, body = await h.post(payload)
    assert status == 400, body
    assert await h.snapshot() == before
    assert await h.stripe_events() == {}
    await h.verify()


async def test_a_body_that_is_not_utf8_gets_400(h: PaymentsHarness) -> None:
    body = b'{"id": "evt_\xff"}'
    header = f"t={int(time.time())},v1=" + "0" * 64
    async with h.http.post(
        h.webhook_url, data=body, headers={"Stripe-Signature": header}
    ) as resp:
        assert resp.status == 400
    await h.verify()


async def test_unknown_event_types_are_acknowledged_and_ignored(h: PaymentsHarness) -> None:
    order = await _open_topup(h)
    assert order.provider_ref is not None
    h.fake.complete_session(order.provider_ref)
    before = await h.snapshot()
    others = [*h.fake.events_of_type("payment_intent.succeeded"),
              *h.fake.events_of_type("charge.succeeded")]
    made_up = dict(others[0], id="evt_made_up_1", type="radar.early_fraud_warning.created")
    for event in [*others, made_up]:
        status, body = await h.post(event)
        assert (status, body) == (200, {"status": "ignored"})
    assert await h.snapshot() == before
    await h.verify()


async def test_a_large_event_arriving_in_pieces_is_read_whole(h: PaymentsHarness) -> None:
    """Stripe's events are a few kB, but TCP may split any body: read it all, then verify."""
    order = await _open_topup(h)
    assert order.provider_ref is not None
    event = h.fake.complete_session(order.provider_ref)
    event["data"]["object"]["custom_fields"] = [{"key": "note", "text": "x" * 300_000}]
    assert await h.deliver(event) == "credited"
    assert await h.balance(order.partner_id) == 30
    await h.verify()


async def test_a_body_over_the_limit_gets_400(h: PaymentsHarness) -> None:
    order = await _open_topup(h)
    assert order.provider_ref is not None
    event = h.fake.complete_session(order.provider_ref)
    event["data"]["object"]["custom_fields"] = [{"key": "note", "text": "x" * 600_000}]
    before = await h.snapshot()
    status, _ = await h.post(event)
    assert status in (400, 413)
    assert await h.snapshot() == before
    await h.verify()


# ------------------------------------------------ payments that are not the quote


@pytest.mark.parametrize("change", [{"amount_total": 1874}, {"amount_total": 1876},
                                    {"currency": "usd"}, {"amount_total": None}])
async def test_a_payment_that_does_not_match_the_quote_credits_nothing(
    h: PaymentsHarness, change: Json
) -> None:
    order = await _open_topup(h, 45, currency="eur", monthly_price=1250)  # 18.75 EUR
    assert order.provider_ref is not None
    genuine = h.fake.complete_session(order.provider_ref)
    wrong = h.variant(genuine, **change)

    assert await h.deliver(wrong) == "mismatch"
    assert await h.deliver(h.variant(wrong, livemode=False)) == "mismatch"  # told once
    assert await h.balance(order.partner_id) == 0
    assert (await h.order(order.id)).status is OrderStatus.OPEN
    assert await h.transfers(TransferKind.PURCHASE) == []
    [notice] = await h.notices("payment_mismatch")
    assert notice.partner_id is None  # for support
    assert notice.facts["partner_id"] == order.partner_id
    assert notice.facts["order_id"] == order.id
    assert (notice.facts["expected_amount"], notice.facts["expected_currency"]) == (1875, "eur")
    assert await h.notices("days_credited") == []
    await h.verify()


async def test_a_session_we_did_not_make_changes_nothing(h: PaymentsHarness) -> None:
    await _open_topup(h)
    client = h.fake.make_client()
    session = await client.v1.checkout.sessions.create_async(params={
        "mode": "payment", "success_url": SUCCESS_URL,
        "metadata": {"partner_id": "1", "order_id": "1", "days": "30"},
        "line_items": [{"quantity": 1, "price_data": {
            "currency": "usd", "unit_amount": 1000, "product_data": {"name": "30 days"}}}],
    })
    before = await h.snapshot()
    assert await h.deliver(h.fake.complete_session(session.id)) == "unknown"
    assert await h.snapshot() == before
    await h.verify()


@pytest.mark.parametrize("field", ["partner_id", "order_id"])
async def test_a_session_whose_metadata_names_someone_else_changes_nothing(
    h: PaymentsHarness, field: str
) -> None:
    order = await _open_topup(h, name="Acme")
    other = await h.new_partner("Other")
    other_order = await h.payments.start_topup(other.id, 30, "user:2")
    assert order.provider_ref is not None
    genuine = h.fake.complete_session(order.provider_ref)
    metadata = dict(genuine["data"]["object"]["metadata"])
    metadata[field] = str(other.id if field == "partner_id" else other_order.id)
    before = await h.snapshot()

    assert await h.deliver(h.variant(genuine, metadata=metadata)) == "foreign"
    assert await h.snapshot() == before
    assert await h.balance(other.id) == 0
    assert (await h.order(other_order.id)).status is OrderStatus.OPEN
    await h.verify()


# ---------------------------------------------------------------------- healthz


async def test_healthz_answers_200_when_healthy(h: PaymentsHarness) -> None:
    assert await h.get("/healthz") == (200, {"database": "ok"})


async def test_healthz_answers_503_when_a_check_fails(tmp_path: Path) -> None:
    async def failing() -> dict[str, bool]:
        return {"database": False, "bot": True}

    async with payments_harness(tmp_path, healthy=failing) as h:
        assert await h.get("/healthz") == (503, {"database": "failing", "bot": "ok"})


async def test_healthz_answers_503_when_the_database_is_gone(tmp_path: Path) -> None:
    """The real database check (SqliteStore.ping) on a store that is no longer open."""
    (tmp_path / "other").mkdir()
    other = await SqliteStore.open(tmp_path / "other" / "health.db")

    async def database() -> dict[str, bool]:
        return {"database": await other.ping()}

    async with payments_harness(tmp_path, healthy=database) as h:
        assert await h.get("/healthz") == (200, {"database": "ok"})
        await other.close()
        assert await h.get("/healthz") == (503, {"database": "failing"})



async def test_ping_of_a_closed_store_answers_false(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "closed.db")
    await store.close()
    assert await store.ping() is False
