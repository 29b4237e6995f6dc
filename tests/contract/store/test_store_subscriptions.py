"""Store contract: at most one subscription per channel, pending or active (rule 10, issue
11 point 6), held by core (SubscriptionExists, checked in the transaction that would open
the order) and by the store itself (SQLite's partial unique index of migration 0006, the
fake's equivalent), against both stores and under concurrent asks."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from core.errors import StorageError, SubscriptionExists
from core.model import OrderKind, OrderStatus, SessionState
from core.payments import EventResult, PaymentService, end_subscription
from core.ports import Ledger, Store
from core.service import BillingService
from tests.conftest import START, FakeClock
from tests.contract.store.helpers import SUPPORT, fresh_key, new_partner, raw_partner
from tests.unit.test_payment_service_links import Gateway

TTL = timedelta(minutes=45)


def _open(lg: Ledger, pid: int, channel_id: int) -> int:
    return lg.add_order(
        pid, OrderKind.SUBSCRIPTION, 30, 1000, "usd", START, SUPPORT, channel_id=channel_id
    ).id


async def test_the_store_itself_refuses_a_second_pending_subscription_of_a_channel(
    store: Store,
) -> None:
    pid = await store.write(raw_partner)
    shop, blog = await store.write(lambda lg: (
        lg.add_channel(pid, "shop", START).id, lg.add_channel(pid, "blog", START).id
    ))
    first = await store.write(lambda lg: _open(lg, pid, shop))

    with pytest.raises(StorageError):
        await store.write(lambda lg: _open(lg, pid, shop))
    await store.write(lambda lg: _open(lg, pid, blog))  # another channel: its own

    # Closed, it frees the channel; re-opening it beside the new one is refused.
    def close(lg: Ledger) -> None:
        order = lg.get_order(first)
        assert order is not None
        lg.update_order(replace(order, status=OrderStatus.EXPIRED, closed_at=START))

    await store.write(close)
    second = await store.write(lambda lg: _open(lg, pid, shop))

    def reopen(lg: Ledger) -> None:
        order = lg.get_order(first)
        assert order is not None
        lg.update_order(replace(order, status=OrderStatus.OPEN, closed_at=None))

    with pytest.raises(StorageError):
        await store.write(reopen)
    open_ids = await store.read(lambda lg: [
        o.id for o in lg.list_orders(pid, statuses=(OrderStatus.OPEN,)) if o.channel_id == shop
    ])
    assert open_ids == [second]


async def test_subscribing_at_once_many_times_makes_one_order_and_names_it(
    store: Store, billing: BillingService, clock: FakeClock
) -> None:
    pid = await new_partner(billing)
    await billing.create_channel(pid, "shop", SUPPORT, fresh_key())
    gateway = Gateway()
    payments = PaymentService(store, clock, gateway, session_ttl=TTL)

    asks = await asyncio.gather(
        *(payments.start_subscription(pid, "shop", "month", f"user:{n}") for n in range(6)),
        return_exceptions=True,
    )
    made = [a for a in asks if not isinstance(a, BaseException)]
    refused = [a for a in asks if isinstance(a, SubscriptionExists)]
    assert (len(made), len(refused)) == (1, 5), asks
    assert len(gateway.asked) == 1
    [order] = made
    for exc in refused:
        assert (exc.channel, exc.interval, exc.pending) == ("shop", "month", True)
        assert exc.since == order.created_at
    # Asked again now that its link exists: that link, and when it lapses.
    with pytest.raises(SubscriptionExists) as again:
        await payments.start_subscription(pid, "SHOP", "year", "user:9")
    assert (again.value.url, again.value.expires_at) == (order.url, order.created_at + TTL)


async def test_an_expired_checkout_or_an_ended_subscription_frees_the_channel(
    store: Store, billing: BillingService, clock: FakeClock
) -> None:
    pid = await new_partner(billing)
    await billing.create_channel(pid, "shop", SUPPORT, fresh_key())
    payments = PaymentService(store, clock, Gateway(), session_ttl=TTL)
    first = await payments.start_subscription(pid, "shop", "month", "user:1")
    assert first.provider_ref is not None

    def state(order_ref: str, status: str, sub: str | None = None) -> SessionState:
        return SessionState(order_ref, status, "paid" if sub else "unpaid", 10_200, "usd",
                            None, pid, subscription_ref=sub)

    assert await payments.apply(state(first.provider_ref, "expired"), "stripe:evt") == (
        EventResult.EXPIRED
    )
    annual = await payments.start_subscription(pid, "shop", "year", "user:1")
    assert annual.provider_ref is not None and annual.amount == 10_200
    done = await payments.apply(state(annual.provider_ref, "complete", "sub_1"), "stripe:evt")
    assert done is EventResult.SUBSCRIBED
    with pytest.raises(SubscriptionExists) as active:
        await payments.start_subscription(pid, "shop", "month", "user:1")
    assert (active.value.pending, active.value.interval) == (False, "year")
    assert active.value.since == clock.now()

    now = clock.now()
    ended = await store.write(lambda lg: end_subscription(lg, now, "sub_1", "stripe:evt"))
    assert ended is EventResult.ENDED
    again = await payments.start_subscription(pid, "shop", "month", "user:1")
    assert again.status is OrderStatus.OPEN


async def test_a_pending_checkout_past_its_lifetime_is_asked_about_before_refusing(
    store: Store, billing: BillingService, clock: FakeClock
) -> None:
    pid = await new_partner(billing)
    await billing.create_channel(pid, "shop", SUPPORT, fresh_key())
    gateway = Gateway()
    payments = PaymentService(store, clock, gateway, session_ttl=TTL)
    first = await payments.start_subscription(pid, "shop", "month", "user:1")
    assert first.provider_ref is not None
    lapsed = SessionState(first.provider_ref, "expired", "unpaid", 1000, "usd", first.id, pid)
    gateway.states[first.provider_ref] = lapsed

    # Within its lifetime: refused without asking Stripe.
    clock.advance(TTL - timedelta(minutes=1))
    with pytest.raises(SubscriptionExists):
        await payments.start_subscription(pid, "shop", "month", "user:1")
    # Past it, its `expired` webhook not come: Stripe is asked; it lapsed, so a new one.
    clock.advance(timedelta(minutes=2))
    gateway.unreachable.add(first.provider_ref)
    with pytest.raises(SubscriptionExists):  # Stripe not answering: the refusal stands
        await payments.start_subscription(pid, "shop", "month", "user:1")
    gateway.unreachable.clear()
    second = await payments.start_subscription(pid, "shop", "month", "user:1")
    assert second.id != first.id and len(gateway.asked) == 2
    closed = await store.read(lambda lg: lg.get_order(first.id))
    assert closed is not None and closed.status is OrderStatus.EXPIRED
