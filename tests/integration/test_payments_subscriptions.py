"""Per-channel Stripe subscriptions (rule 10): monthly and annual, periods paid by
`invoice.paid`, cancellation by `customer.subscription.deleted`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from core import notices
from core.errors import InvalidInput, PaymentUnavailable, SubscriptionExists
from core.model import ChannelBilling, OrderKind, OrderStatus, Partner, PaymentOrder, TransferKind
from core.payments import annual_price
from tests.integration.payments_harness import (
    ANNUAL_DISCOUNT,
    CHECKOUT,
    HTTPX_DEPRECATION,
    PaymentsHarness,
    payments_harness,
)

pytestmark = pytest.mark.filterwarnings(HTTPX_DEPRECATION)

BALANCE = 7  # days on the partner's balance that no subscription may touch


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[PaymentsHarness]:
    async with payments_harness(tmp_path) as harness:
        yield harness


async def _subscribe(
    h: PaymentsHarness, interval: str, price: int = 1000
) -> tuple[Partner, PaymentOrder, str]:
    """A partner whose channel "shop" is subscribed; returns (partner, order, sub id)."""
    acme = await h.new_partner("Acme", monthly_price=price, channels=["shop"], days=BALANCE,
                               member_id=101)  # fmt: skip
    order = await h.payments.start_subscription(acme.id, "shop", interval, "user:101")
    assert order.provider_ref is not None
    completed = h.fake.complete_session(order.provider_ref)
    assert await h.deliver(completed) == "subscribed"
    sub_id = h.session(order)["subscription"]
    assert isinstance(sub_id, str)
    return acme, order, sub_id


@pytest.mark.parametrize(("interval", "days"), [("month", 30), ("year", 365)])
async def test_each_paid_period_extends_the_channel_once(
    h: PaymentsHarness, interval: str, days: int
) -> None:
    acme, order, sub_id = await _subscribe(h, interval)
    start = h.clock.now()

    # The checkout Stripe was asked for.
    [request] = h.checkout_requests(order.id)
    params = request.params
    assert params["mode"] == "subscription"
    [item] = params["line_items"]
    price = item["price_data"]
    assert price["recurring"] == {"interval": interval}
    expected = 1000 if interval == "month" else annual_price(1000, ANNUAL_DISCOUNT)
    assert price["unit_amount"] == str(expected) == str(order.amount)
    assert price["currency"] == "usd"
    assert "payment_intent_data" not in params
    shop = await h.channel(acme.id, "shop")
    assert params["subscription_data"]["metadata"] == {
        "partner_id": str(acme.id), "order_id": str(order.id), "days": str(days),
        "kind": "subscription", "channel_id": str(shop.id), "interval": interval,
    }
    assert (order.kind, order.days, order.channel_id) == (OrderKind.SUBSCRIPTION, days, shop.id)

    # The session completed: the channel knows its subscription, no days yet.
    assert shop.billing is ChannelBilling.SUBSCRIPTION
    assert shop.subscription_ref == sub_id
    assert shop.active_until is None
    assert (await h.order(order.id)).status is OrderStatus.PAID

    # First period: the invoice Stripe paid when the subscription started.
    first = h.event_for("invoice.paid", h.fake.get(sub_id)["latest_invoice"])
    assert first["data"]["object"]["billing_reason"] == "subscription_create"
    assert await h.deliver(first) == "extended"
    assert (await h.channel(acme.id, "shop")).active_until == start + timedelta(days=days)
    assert await h.deliver(h.variant(first)) == "already"  # same invoice, new event id
    status, body = await h.post(first)
    assert (status, body["status"]) == (200, "duplicate")

    # Second period.
    second = h.fake.renew_subscription(sub_id)
    h.clock.sync()
    assert second["type"] == "invoice.paid"
    assert second["data"]["object"]["billing_reason"] == "subscription_cycle"
    assert await h.deliver(second) == "extended"
    assert await h.deliver(second) == "extended"  # answered from the event log
    assert (await h.channel(acme.id, "shop")).active_until == start + timedelta(days=2 * days)

    # Never the balance; two subscription transfers into the channel.
    assert await h.balance(acme.id) == BALANCE
    moves = await h.transfers(TransferKind.SUBSCRIPTION)
    assert [(m[0], m[1], m[2]) for m in moves] == [
        ("ext:subscriptions", f"channel:{shop.id}", days)
    ] * 2
    assert await h.transfers(TransferKind.PURCHASE) == []
    assert len(await h.notices("subscription_paid")) == 2
    await h.verify()


def test_annual_price_is_twelve_months_less_the_discount() -> None:
    assert annual_price(1000, 15) == 10_200
    assert annual_price(999, 15) == 10_190  # 10189.8 rounds half up
    assert annual_price(1250, 0) == 15_000
    assert annual_price(1, 50) == 6


async def test_a_period_paid_before_the_session_completed_still_counts(
    h: PaymentsHarness,
) -> None:
    acme = await h.new_partner("Acme", channels=["shop"], days=BALANCE)
    order = await h.payments.start_subscription(acme.id, "shop", "month", "user:1")
    assert order.provider_ref is not None
    completed = h.fake.complete_session(order.provider_ref)
    sub_id = h.session(order)["subscription"]
    first = h.event_for("invoice.paid", h.fake.get(sub_id)["latest_invoice"])

    assert await h.deliver(first) == "extended"  # arrives first
    shop = await h.channel(acme.id, "shop")
    assert shop.subscription_ref == sub_id
    assert shop.active_until == h.clock.now() + timedelta(days=30)
    assert await h.deliver(completed) == "subscribed"
    shop = await h.channel(acme.id, "shop")
    assert (shop.billing, shop.subscription_ref) == (ChannelBilling.SUBSCRIPTION, sub_id)
    assert shop.active_until == h.clock.now() + timedelta(days=30)
    assert await h.balance(acme.id) == BALANCE
    await h.verify()


@pytest.mark.parametrize("at_period_end", [False, True])
async def test_cancelling_keeps_the_channel_running_until_active_until(
    h: PaymentsHarness, at_period_end: bool
) -> None:
    acme, _, sub_id = await _subscribe(h, "month")
    first = h.event_for("invoice.paid", h.fake.get(sub_id)["latest_invoice"])
    assert await h.deliver(first) == "extended"
    until = (await h.channel(acme.id, "shop")).active_until
    assert until is not None

    if at_period_end:
        updated = h.fake.cancel_subscription(sub_id, at_period_end=True)
        assert await h.deliver(updated) == "ignored"
        deleted = h.fake.renew_subscription(sub_id)  # the period ends: no new invoice
        h.clock.sync()
    else:
        deleted = h.fake.cancel_subscription(sub_id)
    assert deleted["type"] == "customer.subscription.deleted"
    assert await h.deliver(deleted) == "ended"
    assert await h.deliver(h.variant(deleted)) == "unknown"  # nothing left to end

    shop = await h.channel(acme.id, "shop")
    assert shop.active_until == until
    assert shop.billing is ChannelBilling.BALANCE
    assert shop.subscription_ref is None
    assert shop.live
    assert await h.balance(acme.id) == BALANCE
    [ended] = await h.notices("subscription_ended")
    assert ended.partner_id == acme.id
    assert ended.notice == notices.SubscriptionEnded(channel="shop", until=until)
    # The channel may be subscribed again.
    again = await h.payments.start_subscription(acme.id, "shop", "year", "user:101")
    assert again.status is OrderStatus.OPEN and again.url is not None
    await h.verify()


async def test_a_channel_with_a_subscription_cannot_get_a_second_one(
    h: PaymentsHarness,
) -> None:
    acme, _, _ = await _subscribe(h, "month")
    with pytest.raises(SubscriptionExists) as exists:
        await h.payments.start_subscription(acme.id, "shop", "year", "user:101")
    assert (exists.value.pending, exists.value.interval) == (False, "month")
    with pytest.raises(InvalidInput):
        await h.payments.start_subscription(acme.id, "shop", "weekly", "user:101")
    assert len(h.checkout_requests()) == 1
    await h.verify()


async def test_a_period_paid_for_a_deleted_channel_puts_no_days_into_it(
    h: PaymentsHarness,
) -> None:
    acme, _, sub_id = await _subscribe(h, "month")
    first = h.event_for("invoice.paid", h.fake.get(sub_id)["latest_invoice"])
    assert await h.deliver(first) == "extended"
    shop = await h.channel(acme.id, "shop")
    h.clock.advance(timedelta(days=10))
    deleted = await h.billing.delete_channel(acme.id, shop.id, "user:101", h.key("del"))
    assert deleted.returned_days == 20  # exactly 20 whole days were left
    balance = await h.balance(acme.id)

    renewal = h.fake.renew_subscription(sub_id)  # Stripe still bills the subscription
    h.clock.sync()
    assert await h.deliver(renewal) == "channel_deleted"
    assert await h.balance(acme.id) == balance
    assert len(await h.transfers(TransferKind.SUBSCRIPTION)) == 1
    held = await h.store.execute_raw(
        "SELECT balance FROM accounts WHERE code = ?", (f"channel:{shop.id}",)
    )
    assert held == [(0,)]
    traces = await h.store.execute_raw(
        "SELECT actor, detail FROM events WHERE action = 'subscription.period_for_deleted_channel'"
    )
    assert traces == [(f"stripe:{renewal['id']}",
                       f"channel={shop.id} subscription={sub_id} "
                       f"invoice={renewal['data']['object']['id']}")]
    await h.verify()


async def test_stripe_down_during_subscribe_leaves_no_payable_order(
    h: PaymentsHarness,
) -> None:
    acme = await h.new_partner("Acme", channels=["shop"])
    h.fake.fail_next(path=CHECKOUT, method="POST", status=503)
    with pytest.raises(PaymentUnavailable):
        await h.payments.start_subscription(acme.id, "shop", "month", "user:1")
    [order] = await h.orders(acme.id)
    assert order.status is OrderStatus.CANCELED
    shop = await h.channel(acme.id, "shop")
    assert (shop.billing, shop.subscription_ref) == (ChannelBilling.BALANCE, None)
    await h.verify()
