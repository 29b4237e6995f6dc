"""The reconcile job: open orders whose webhook never came are settled by asking Stripe."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from core.model import ChannelBilling, OrderKind, OrderStatus, PaymentOrder, TransferKind
from core.payments import Reconciled
from tests.integration.payments_harness import (
    HTTPX_DEPRECATION,
    PaymentsHarness,
    payments_harness,
)

pytestmark = pytest.mark.filterwarnings(HTTPX_DEPRECATION)

AFTER = timedelta(minutes=30)  # orders younger than this are left to their webhook
RETRIEVE = "/v1/checkout/sessions/*"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[PaymentsHarness]:
    async with payments_harness(tmp_path) as harness:
        yield harness


async def _topup(h: PaymentsHarness, name: str, days: int = 30) -> PaymentOrder:
    partner = await h.new_partner(name)
    order = await h.payments.start_topup(partner.id, days, "user:1")
    assert order.provider_ref is not None
    return order


def _counts(done: Reconciled) -> tuple[int, int, int, int]:
    return done.checked, done.credited, done.closed, done.failed


async def test_reconcile_settles_what_the_webhooks_never_said(h: PaymentsHarness) -> None:
    paid = await _topup(h, "Paid", 30)
    expired = await _topup(h, "Expired", 40)
    still_open = await _topup(h, "Open", 50)
    async_failed = await _topup(h, "Async", 60)
    assert paid.provider_ref and expired.provider_ref and async_failed.provider_ref
    h.fake.complete_session(paid.provider_ref)
    h.fake.expire_session(expired.provider_ref)
    h.fake.complete_session(async_failed.provider_ref, paid=False)
    h.fake.async_payment_result(async_failed.provider_ref, succeeded=False)

    h.clock.advance(AFTER)
    done = await h.payments.reconcile(AFTER)
    assert _counts(done) == (4, 1, 1, 0)
    assert len(h.fake.requests_to(RETRIEVE, "GET")) == 4

    assert (await h.order(paid.id)).status is OrderStatus.PAID
    assert (await h.order(paid.id)).payment_ref == h.session(paid)["payment_intent"]
    assert await h.balance(paid.partner_id) == 30
    [purchase] = await h.transfers(TransferKind.PURCHASE)
    assert purchase[4] == "stripe:reconcile"
    assert (await h.order(expired.id)).status is OrderStatus.EXPIRED
    assert (await h.order(still_open.id)).status is OrderStatus.OPEN
    assert await h.balance(still_open.partner_id) == 0
    # A session tells nothing of an asynchronous failure: the order waits for its
    # webhook (or for the session's own expiry), and is not credited meanwhile.
    assert (await h.order(async_failed.id)).status is OrderStatus.OPEN
    assert await h.balance(async_failed.partner_id) == 0

    # Again: only the orders still open are asked about; nothing changes.
    before = await h.snapshot()
    again = await h.payments.reconcile(AFTER)
    assert _counts(again) == (2, 0, 0, 0)
    assert await h.snapshot() == before
    await h.verify()


async def test_reconcile_leaves_young_orders_to_their_webhook(h: PaymentsHarness) -> None:
    order = await _topup(h, "Acme")
    assert order.provider_ref is not None
    h.fake.complete_session(order.provider_ref)
    h.clock.advance(AFTER - timedelta(seconds=1))
    assert _counts(await h.payments.reconcile(AFTER)) == (0, 0, 0, 0)
    assert h.fake.requests_to(RETRIEVE, "GET") == []
    assert await h.balance(order.partner_id) == 0
    h.clock.advance(timedelta(seconds=1))
    assert _counts(await h.payments.reconcile(AFTER)) == (1, 1, 0, 0)
    assert await h.balance(order.partner_id) == 30
    await h.verify()


async def test_stripe_down_during_reconcile_is_retried_next_run(h: PaymentsHarness) -> None:
    first = await _topup(h, "First")
    second = await _topup(h, "Second")
    assert first.provider_ref and second.provider_ref
    h.fake.complete_session(first.provider_ref)
    h.fake.complete_session(second.provider_ref)
    h.clock.advance(AFTER)

    h.fake.fail_next(path=RETRIEVE, method="GET", status=500)
    h.fake.hang_next(3.0, path=RETRIEVE, method="GET")
    assert _counts(await h.payments.reconcile(AFTER)) == (0, 0, 0, 2)
    assert (await h.order(first.id)).status is OrderStatus.OPEN
    assert (await h.order(second.id)).status is OrderStatus.OPEN

    assert _counts(await h.payments.reconcile(AFTER)) == (2, 2, 0, 0)
    assert await h.balance(first.partner_id) == 30
    assert await h.balance(second.partner_id) == 30
    await h.verify()


async def test_two_reconcile_runs_at_once_credit_once(h: PaymentsHarness) -> None:
    orders = [await _topup(h, f"Partner {i}", 30 + i) for i in range(4)]
    for order in orders:
        assert order.provider_ref is not None
        h.fake.complete_session(order.provider_ref)
    h.clock.advance(AFTER)
    runs = await asyncio.gather(*(h.payments.reconcile(AFTER) for _ in range(3)))
    assert sum(run.credited for run in runs) == len(orders)
    for order in orders:
        assert await h.balance(order.partner_id) == order.days
    assert len(await h.transfers(TransferKind.PURCHASE)) == len(orders)
    await h.verify()


async def test_an_order_left_without_a_link_by_a_crash_is_cancelled(
    h: PaymentsHarness,
) -> None:
    acme = await h.new_partner("Acme", channels=["shop"])
    # What a crash between "order recorded" and "link attached" leaves behind.
    topup = await h.billing.open_order(acme.id, OrderKind.TOPUP, 30, "user:1")
    invoice = await h.billing.open_order(acme.id, OrderKind.INVOICE, 30, "support:1",
                                         channels=1)  # fmt: skip
    h.clock.advance(AFTER)
    done = await h.payments.reconcile(AFTER)
    assert (_counts(done), done.relinked) == ((0, 0, 1, 0), 1)
    assert (await h.order(topup.id)).status is OrderStatus.CANCELED
    assert h.checkout_requests(topup.id) == []
    # An invoice stays open and gets its link.
    linked = await h.order(invoice.id)
    assert linked.status is OrderStatus.OPEN
    assert linked.url is not None and linked.provider_ref is not None
    assert h.fake.requests_to(RETRIEVE, "GET") == []
    assert await h.deliver(h.fake.complete_session(linked.provider_ref)) == "credited"
    assert await h.balance(acme.id) == 30
    await h.verify()


async def test_reconcile_completes_a_subscription_checkout(h: PaymentsHarness) -> None:
    acme = await h.new_partner("Acme", channels=["shop"], days=3)
    order = await h.payments.start_subscription(acme.id, "shop", "month", "user:1")
    assert order.provider_ref is not None
    h.fake.complete_session(order.provider_ref)
    h.clock.advance(AFTER)
    assert _counts(await h.payments.reconcile(AFTER)) == (1, 1, 0, 0)
    shop = await h.channel(acme.id, "shop")
    assert shop.billing is ChannelBilling.SUBSCRIPTION
    assert shop.subscription_ref == h.session(order)["subscription"]
    assert (await h.order(order.id)).status is OrderStatus.PAID
    assert await h.balance(acme.id) == 3  # the days come with invoice.paid, not here
    await h.verify()
