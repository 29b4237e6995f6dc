"""Top-ups (rule 3) and their refunds (rule 11) through the real gateway, webhook and SQLite.

Every test ends with the ledger invariants checked (`h.verify()`; the harness checks
them again on the way out).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Literal

import pytest

from core import money, notices
from core.errors import InvalidInput, PaymentUnavailable
from core.model import CheckoutMode, CheckoutRequest, OrderKind, OrderStatus, TransferKind
from payments.stripe_gateway import idempotency_key
from tests.integration.payments_harness import (
    CHECKOUT,
    HTTPX_DEPRECATION,
    SESSION_TTL,
    SUCCESS_URL,
    PaymentsHarness,
    payments_harness,
)

pytestmark = pytest.mark.filterwarnings(HTTPX_DEPRECATION)

MEMBER = 101


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[PaymentsHarness]:
    async with payments_harness(tmp_path) as harness:
        yield harness


# ------------------------------------------------------------------ the happy path


async def test_topup_goes_from_quote_to_credited_balance(h: PaymentsHarness) -> None:
    # A partner in euros at an agreed 12.50 a channel-month: 45 days cost 18.75.
    acme = await h.new_partner(
        "Acme", currency="eur", monthly_price=1250, channels=["shop"], member_id=MEMBER
    )
    order = await h.payments.start_topup(acme.id, 45, f"user:{MEMBER}")

    assert order.kind is OrderKind.TOPUP
    assert order.status is OrderStatus.OPEN
    assert (order.days, order.amount, order.currency) == (45, 1875, "eur")
    assert order.amount == money.amount_for_days(45, 1250)
    assert order.provider_ref is not None and order.url is not None
    assert order.url.startswith("https://checkout.stripe.com/")
    assert await h.balance(acme.id) == 0  # never before Stripe says "paid"

    # What Stripe was asked for: one Checkout Session with the quote.
    [request] = h.checkout_requests(order.id)
    assert request.status == 200
    params = request.params
    assert params["mode"] == "payment"
    assert "payment_method_types" not in params  # refused by API 2026-10-28
    [item] = params["line_items"]
    assert item["quantity"] == "1"
    assert item["price_data"]["currency"] == "eur"
    assert item["price_data"]["unit_amount"] == str(order.amount)
    assert params["metadata"] == {
        "partner_id": str(acme.id), "order_id": str(order.id), "days": "45", "kind": "topup",
    }
    assert params["payment_intent_data"]["metadata"]["order_id"] == str(order.id)
    assert params["client_reference_id"] == f"order-{order.id}"
    assert params["expires_at"] == str(int((h.clock.now() + SESSION_TTL).timestamp()))
    assert params["success_url"] == SUCCESS_URL
    assert request.idempotency_key == idempotency_key(order.id, h.gateway.checkout_params(
        CheckoutRequest(order, CheckoutMode.PAYMENT, "45 days", h.clock.now() + SESSION_TTL)
    ))
    assert request.idempotency_key.startswith(f"partnerbot-order-{order.id}-checkout-")
    session = h.session(order)
    assert (session["amount_total"], session["currency"]) == (1875, "eur")
    assert session["url"] == order.url

    # The customer pays; Stripe tells the webhook.
    event = h.fake.complete_session(order.provider_ref)
    assert await h.deliver(event) == "credited"

    assert await h.balance(acme.id) == 45
    paid = await h.order(order.id)
    assert paid.status is OrderStatus.PAID
    assert paid.paid_at == h.clock.now()
    assert paid.payment_ref == h.session(order)["payment_intent"]
    [purchase] = await h.transfers(TransferKind.PURCHASE)
    assert purchase == (
        "ext:purchases", f"partner:{acme.id}", 45, "purchase", f"stripe:{event['id']}", order.id
    )
    assert await h.stripe_events() == {event["id"]: ("checkout.session.completed", "credited")}

    # The members are told, through the outbox.
    [notice] = await h.notices("days_credited")
    assert notice.partner_id == acme.id
    assert notice.notice == notices.DaysCredited(
        order_id=order.id, order_kind=OrderKind.TOPUP, days=45, balance=45
    )
    assert (MEMBER, "days_credited") in await h.deliveries()
    await h.verify()


async def test_topup_outside_the_limits_asks_nothing_of_stripe(h: PaymentsHarness) -> None:
    # At 10.00 a month one day costs 0.33, under Stripe's 0.50 minimum; two cost 0.67.
    acme = await h.new_partner("Acme", monthly_price=1000)
    with pytest.raises(InvalidInput) as too_few:
        await h.payments.start_topup(acme.id, 1, "user:1")
    assert "at least 2" in too_few.value.reason
    with pytest.raises(InvalidInput):
        await h.payments.start_topup(acme.id, 36_501, "user:1")
    order = await h.payments.start_topup(acme.id, 2, "user:1")
    assert order.amount == 67
    assert [r.params["metadata"]["order_id"] for r in h.checkout_requests()] == [str(order.id)]
    assert await h.orders(acme.id) == [order]
    await h.verify()


async def test_an_expired_session_closes_the_order(h: PaymentsHarness) -> None:
    acme = await h.new_partner("Acme")
    order = await h.payments.start_topup(acme.id, 30, "user:1")
    assert order.provider_ref is not None
    assert await h.deliver(h.fake.expire_session(order.provider_ref)) == "expired"
    closed = await h.order(order.id)
    assert closed.status is OrderStatus.EXPIRED
    assert closed.closed_at == h.clock.now()
    assert await h.balance(acme.id) == 0
    await h.verify()


# ------------------------------------------------------------------- async payments


async def test_async_payment_credits_only_when_it_succeeds(h: PaymentsHarness) -> None:
    acme = await h.new_partner("Acme")
    order = await h.payments.start_topup(acme.id, 60, "user:1")
    assert order.provider_ref is not None

    completed = h.fake.complete_session(order.provider_ref, paid=False)
    assert completed["data"]["object"]["payment_status"] == "unpaid"
    before = await h.snapshot()
    assert await h.deliver(completed) == "pending"
    assert await h.snapshot() == before
    assert (await h.order(order.id)).status is OrderStatus.OPEN

    succeeded = h.fake.async_payment_result(order.provider_ref, succeeded=True)
    assert succeeded["type"] == "checkout.session.async_payment_succeeded"
    assert await h.deliver(succeeded) == "credited"
    assert await h.balance(acme.id) == 60
    assert (await h.order(order.id)).status is OrderStatus.PAID
    await h.verify()


async def test_async_payment_failure_fails_the_order(h: PaymentsHarness) -> None:
    acme = await h.new_partner("Acme")
    order = await h.payments.start_topup(acme.id, 60, "user:1")
    assert order.provider_ref is not None
    assert await h.deliver(h.fake.complete_session(order.provider_ref, paid=False)) == "pending"

    failed = h.fake.async_payment_result(order.provider_ref, succeeded=False)
    assert failed["type"] == "checkout.session.async_payment_failed"
    assert await h.deliver(failed) == "failed"
    closed = await h.order(order.id)
    assert closed.status is OrderStatus.FAILED
    assert await h.balance(acme.id) == 0
    assert await h.transfers(TransferKind.PURCHASE) == []
    await h.verify()


# ------------------------------------------------------- Stripe failing at the start


@pytest.mark.parametrize("fault", ["500", "timeout", "timeout_after_processing"])
async def test_stripe_down_during_topup_leaves_no_payable_order(
    h: PaymentsHarness, fault: str
) -> None:
    acme = await h.new_partner("Acme")
    if fault == "500":
        h.fake.fail_next(path=CHECKOUT, method="POST", status=500)
    else:
        process: Literal["before", "never"] = (
            "before" if fault == "timeout_after_processing" else "never"
        )
        h.fake.hang_next(3.0, path=CHECKOUT, method="POST", process=process)

    with pytest.raises(PaymentUnavailable) as raised:
        await h.payments.start_topup(acme.id, 30, "user:1")
    assert h.fake.api_key not in str(raised.value)

    [order] = await h.orders(acme.id)
    assert order.status is OrderStatus.CANCELED
    assert order.url is None and order.provider_ref is None
    assert await h.orders(acme.id, OrderStatus.OPEN) == []
    assert len(h.checkout_requests(order.id)) == 1
    assert await h.balance(acme.id) == 0

    # Reconciliation later finds nothing open to ask Stripe about.
    h.clock.advance(timedelta(hours=2))
    done = await h.payments.reconcile(timedelta(minutes=30))
    assert (done.checked, done.credited, done.closed, done.failed) == (0, 0, 0, 0)
    await h.verify()


async def test_a_retried_500_reuses_the_idempotency_key(tmp_path: Path) -> None:
    """With network retries (production uses 2), one 500 is absorbed: same key, one session."""
    async with payments_harness(tmp_path, max_network_retries=2) as h:
        acme = await h.new_partner("Acme")
        h.fake.fail_next(path=CHECKOUT, method="POST", status=500)
        order = await h.payments.start_topup(acme.id, 30, "user:1")
        first, second = h.checkout_requests(order.id)
        assert (first.status, second.status) == (500, 200)
        assert first.idempotency_key == second.idempotency_key is not None
        assert order.status is OrderStatus.OPEN and order.url is not None
        assert order.provider_ref is not None
        assert await h.deliver(h.fake.complete_session(order.provider_ref)) == "credited"
        assert await h.balance(acme.id) == 30
        await h.verify()


# ------------------------------------------------------------------------- refunds


async def _paid_topup(h: PaymentsHarness, partner_id: int, days: int) -> tuple[int, str]:
    order = await h.payments.start_topup(partner_id, days, "user:1")
    assert order.provider_ref is not None
    assert await h.deliver(h.fake.complete_session(order.provider_ref)) == "credited"
    payment_intent = h.session(order)["payment_intent"]
    assert isinstance(payment_intent, str)
    return order.id, payment_intent


async def test_refund_after_allocation_takes_the_days_back_below_zero(
    h: PaymentsHarness,
) -> None:
    acme = await h.new_partner("Acme", channels=["shop"], member_id=MEMBER)
    order_id, pi = await _paid_topup(h, acme.id, 60)
    await h.billing.allocate_days(acme.id, "shop", 50, "user:1", h.key("alloc"))
    assert await h.balance(acme.id) == 10

    refunded = h.fake.refund(pi)
    assert refunded["type"] == "charge.refunded"
    assert refunded["data"]["object"]["amount_refunded"] == 2000
    assert await h.deliver(refunded) == "refunded"

    assert await h.balance(acme.id) == -50  # rule 11: the only way below zero
    order = await h.order(order_id)
    assert order.status is OrderStatus.PAID
    assert order.refunded_days == 60
    [refund] = await h.transfers(TransferKind.REFUND)
    assert refund[:4] == (f"partner:{acme.id}", "ext:purchases", 60, "refund")
    assert refund[5] == order_id
    # The channel keeps its days; support is told, the members too.
    shop = await h.channel(acme.id, "shop")
    assert shop.active_until == h.clock.now() + timedelta(days=50)
    [overdrawn] = await h.notices("refund_overdrawn")
    assert overdrawn.partner_id is None
    assert overdrawn.notice == notices.RefundOverdrawn(
        partner_id=acme.id, order_id=order_id, days=60, balance=-50
    )
    [told] = await h.notices("days_refunded")
    assert told.partner_id == acme.id
    await h.verify()


async def test_partial_refunds_take_proportional_days_once_each(h: PaymentsHarness) -> None:
    acme = await h.new_partner("Acme")  # 10.00 a month: 90 days cost 30.00
    order_id, pi = await _paid_topup(h, acme.id, 90)

    first = h.fake.refund(pi, 1000)  # a third of the money
    assert await h.deliver(first) == "refunded"
    assert await h.balance(acme.id) == 60
    assert (await h.order(order_id)).refunded_days == 30

    # The same event again, then twice at the same time, takes nothing more.
    status, body = await h.post(first)
    assert (status, body["status"]) == (200, "duplicate")
    answers = await asyncio.gather(h.post(first), h.post(first))
    assert [a[0] for a in answers] == [200, 200]
    assert await h.balance(acme.id) == 60

    # 333 more cents: 1333 of 3000 refunded is 39.99 days, half up 40; 10 more.
    second = h.fake.refund(pi, 333)
    assert second["data"]["object"]["amount_refunded"] == 1333
    assert await h.deliver(second) == "refunded"
    assert await h.balance(acme.id) == 50
    assert (await h.order(order_id)).refunded_days == 40
    assert [t[2] for t in await h.transfers(TransferKind.REFUND)] == [30, 10]
    assert await h.notices("refund_overdrawn") == []  # never below zero here
    await h.verify()


async def test_a_refund_delivered_again_under_another_event_id_takes_once(
    h: PaymentsHarness,
) -> None:
    acme = await h.new_partner("Acme")
    _, pi = await _paid_topup(h, acme.id, 30)
    event = h.fake.refund(pi)
    again = h.variant(event)  # same charge state, new event id
    assert await h.deliver(event) == "refunded"
    assert await h.deliver(again) == "already"
    assert await h.balance(acme.id) == 0
    assert len(await h.transfers(TransferKind.REFUND)) == 1
    await h.verify()


async def test_a_refund_of_a_payment_we_do_not_know_changes_nothing(
    h: PaymentsHarness,
) -> None:
    acme = await h.new_partner("Acme", days=5)
    # A payment taken outside partnerbot (e.g. by hand in the Dashboard).
    client = h.fake.make_client()
    session = await client.v1.checkout.sessions.create_async(params={
        "mode": "payment", "success_url": SUCCESS_URL,
        "line_items": [{"quantity": 1, "price_data": {
            "currency": "usd", "unit_amount": 700, "product_data": {"name": "other"}}}],
    })
    h.fake.complete_session(session.id)
    before = await h.snapshot()
    refund = h.fake.refund(h.fake.get(session.id)["payment_intent"])
    assert await h.deliver(refund) == "unknown"
    assert await h.snapshot() == before
    assert await h.balance(acme.id) == 5
    await h.verify()
