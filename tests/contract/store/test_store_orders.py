"""Store contract: payment orders, refunds, payment references and provider events."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from core.errors import (
    InsufficientBalance,
    InvalidInput,
    OrderNotPayable,
    PaymentMismatch,
    StorageError,
)
from core.model import ChannelBilling, OrderKind, OrderStatus, partner_account
from core.ports import Ledger, Store
from core.service import BillingService
from tests.conftest import START, FakeClock
from tests.contract.store.helpers import (
    STRIPE,
    SUPPORT,
    balance,
    buy,
    everything,
    fresh_key,
    grant,
    new_partner,
    raw_partner,
)

# payment orders ---------------------------------------------------------------------


async def test_an_order_is_quoted_at_the_partners_price(billing: BillingService) -> None:
    pid = await new_partner(billing)

    order = await billing.open_order(pid, OrderKind.TOPUP, 2250, "user:100")

    assert (order.amount, order.currency, order.status) == (75_000, "usd", OrderStatus.OPEN)
    assert (order.days, order.created_at, order.created_by) == (2250, START, "user:100")


async def test_a_monthly_invoice_is_opened_once_per_partner_and_period(
    billing: BillingService,
) -> None:
    acme, beta = await new_partner(billing, "Acme"), await new_partner(billing, "Beta")

    first = await billing.open_order(
        acme, OrderKind.INVOICE, 60, "scheduler:invoices", period="2030-01", channels=2
    )
    again = await billing.open_order(
        acme, OrderKind.INVOICE, 90, "scheduler:invoices", period="2030-01", channels=3
    )
    later = await billing.open_order(
        acme, OrderKind.INVOICE, 90, "scheduler:invoices", period="2030-02", channels=3
    )
    other = await billing.open_order(
        beta, OrderKind.INVOICE, 30, "scheduler:invoices", period="2030-01", channels=1
    )

    assert again == first
    assert len({first.id, later.id, other.id}) == 3
    assert [o.id for o in await billing.orders(acme)] == [later.id, first.id]


async def test_the_store_itself_refuses_a_second_invoice_for_one_period(store: Store) -> None:
    pid = await store.write(raw_partner)

    def invoice(lg: Ledger) -> int:
        return lg.add_order(
            pid, OrderKind.INVOICE, 30, 1000, "usd", START, SUPPORT, period="2030-01", channels=1
        ).id

    first = await store.write(invoice)

    with pytest.raises(StorageError):
        await store.write(invoice)
    found = await store.read(lambda lg: lg.find_invoice(pid, "2030-01"))
    assert found is not None and found.id == first
    assert await store.read(lambda lg: lg.find_invoice(pid, "2030-02")) is None


async def test_a_paid_order_is_credited_once_however_often_it_is_reported(
    billing: BillingService, store: Store, clock: FakeClock
) -> None:
    pid = await new_partner(billing)
    order = await billing.open_order(pid, OrderKind.TOPUP, 30, "user:100")

    first = await billing.credit_paid_order(order.id, 1000, "usd", STRIPE, payment_ref="pi_1")
    clock.advance(timedelta(minutes=5))
    again = await billing.credit_paid_order(order.id, 1000, "usd", "stripe:reconcile")

    assert (first.days, first.balance, first.replayed) == (30, 30, False)
    assert again == replace(first, replayed=True)
    assert await balance(store, partner_account(pid)) == 30
    paid = await store.read(lambda lg: lg.get_order(order.id))
    assert paid is not None
    assert (paid.status, paid.paid_at, paid.payment_ref) == (OrderStatus.PAID, START, "pi_1")


@pytest.mark.parametrize(
    ("amount", "currency"), [(1001, "usd"), (999, "usd"), (1000, "eur")],
    ids=["too much", "too little", "wrong currency"],
)
async def test_a_payment_that_does_not_match_the_quote_changes_nothing(
    billing: BillingService, store: Store, amount: int, currency: str
) -> None:
    pid = await new_partner(billing)
    order = await billing.open_order(pid, OrderKind.TOPUP, 30, "user:100")
    before = await everything(store)

    with pytest.raises(PaymentMismatch) as refused:
        await billing.credit_paid_order(order.id, amount, currency, STRIPE)

    mismatch = refused.value
    assert (mismatch.expected_amount, mismatch.expected_currency) == (1000, "usd")
    assert (mismatch.paid_amount, mismatch.paid_currency) == (amount, currency)
    assert await everything(store) == before
    credited = await billing.credit_paid_order(order.id, 1000, "USD", STRIPE)
    assert (credited.balance, credited.replayed) == (30, False)


async def test_a_payment_for_an_order_closed_unpaid_is_still_credited(
    billing: BillingService,
) -> None:
    pid = await new_partner(billing)
    order = await billing.open_order(pid, OrderKind.TOPUP, 30, "user:100")
    await billing.close_order(order.id, OrderStatus.EXPIRED, "stripe:evt_expired")

    credited = await billing.credit_paid_order(order.id, 1000, "usd", STRIPE)

    assert credited.balance == 30


async def test_a_subscription_order_never_reaches_the_balance(
    billing: BillingService, store: Store
) -> None:
    pid = await new_partner(billing)
    shop = await billing.create_channel(pid, "Shop", SUPPORT, fresh_key())
    order = await billing.open_order(
        pid, OrderKind.SUBSCRIPTION, 30, "user:100", channel_id=shop.channel_id
    )

    with pytest.raises(OrderNotPayable):
        await billing.credit_paid_order(order.id, order.amount, "usd", STRIPE)
    assert await balance(store, partner_account(pid)) == 0


async def test_payment_links_are_unique_per_order(billing: BillingService) -> None:
    pid = await new_partner(billing)
    one = await billing.open_order(pid, OrderKind.TOPUP, 30, "user:100")
    two = await billing.open_order(pid, OrderKind.TOPUP, 60, "user:100")
    await billing.attach_payment_link(one.id, "cs_1", "https://pay.example/1")

    with pytest.raises(StorageError):
        await billing.attach_payment_link(two.id, "cs_1", "https://pay.example/2")
    assert [o.provider_ref for o in await billing.orders(pid)] == [None, "cs_1"]


async def test_orders_are_listed_newest_first_and_filtered_by_status(
    billing: BillingService, store: Store
) -> None:
    acme, beta = await new_partner(billing, "Acme"), await new_partner(billing, "Beta")
    paid = (await buy(billing, acme, 30)).order_id
    open_ = (await billing.open_order(acme, OrderKind.TOPUP, 30, SUPPORT)).id
    theirs = (await billing.open_order(beta, OrderKind.TOPUP, 30, SUPPORT)).id

    assert [o.id for o in await billing.orders(acme)] == [open_, paid]
    assert [o.id for o in await billing.orders(acme, (OrderStatus.PAID,))] == [paid]
    everyone = await store.read(lambda lg: lg.list_orders(statuses=[OrderStatus.OPEN]))
    assert [o.id for o in everyone] == [theirs, open_]


async def test_a_refund_takes_back_days_in_proportion_to_the_money(
    billing: BillingService, store: Store
) -> None:
    pid = await new_partner(billing)
    order_id = (await buy(billing, pid, 30)).order_id  # 30 days for 10.00

    half = await billing.refund_order(order_id, 500, STRIPE)
    full = await billing.refund_order(order_id, 1000, STRIPE)

    assert (half.days, half.balance) == (15, 15)
    assert (full.days, full.balance) == (15, 0)
    order = await store.read(lambda lg: lg.get_order(order_id))
    assert order is not None and order.refunded_days == 30


async def test_a_refunded_share_of_days_rounds_half_up(billing: BillingService) -> None:
    pid = await new_partner(billing)
    credited = await buy(billing, pid, 7)  # 7 days for 2.33
    assert (await billing.orders(pid))[0].amount == 233

    refunded = await billing.refund_order(credited.order_id, 117, STRIPE)  # 3.515 days

    assert refunded.days == 4


async def test_a_refunded_share_of_exactly_half_a_day_rounds_up(billing: BillingService) -> None:
    pid = await new_partner(billing)
    credited = await buy(billing, pid, 30)  # 30 days for 10.00
    assert (await billing.orders(pid))[0].amount == 1000

    refunded = await billing.refund_order(credited.order_id, 150, STRIPE)  # 4.5 days exactly

    assert refunded.days == 5  # a tie: half-even and truncation would both take 4


async def test_a_quote_of_exactly_half_a_minor_unit_rounds_up(billing: BillingService) -> None:
    pid = await new_partner(billing)
    await billing.set_price(pid, 1045, SUPPORT)

    order = await billing.open_order(pid, OrderKind.TOPUP, 3, "user:100")

    assert order.amount == 105  # 3 x 1045 / 30 = 104.5 exactly; half-even would say 104


async def test_a_refund_reported_again_returns_the_first_outcome_and_changes_nothing(
    billing: BillingService, store: Store
) -> None:
    pid = await new_partner(billing)
    order_id = (await buy(billing, pid, 30)).order_id
    first = await billing.refund_order(order_id, 500, STRIPE)
    before = await everything(store)

    again = await billing.refund_order(order_id, 500, STRIPE)

    assert again == replace(first, replayed=True)
    assert await everything(store) == before


async def test_a_refund_of_more_than_was_paid_takes_back_only_the_days_bought(
    billing: BillingService,
) -> None:
    pid = await new_partner(billing)
    await grant(billing, pid, 5)
    order_id = (await buy(billing, pid, 30)).order_id

    refunded = await billing.refund_order(order_id, 5000, STRIPE)

    assert (refunded.days, refunded.balance) == (30, 5)


async def test_a_refund_of_days_already_spent_may_take_the_balance_below_zero(
    billing: BillingService, store: Store
) -> None:
    pid = await new_partner(billing)
    order_id = (await buy(billing, pid, 30)).order_id
    await billing.create_channel(pid, "Shop", SUPPORT, fresh_key())
    await billing.allocate_days(pid, "Shop", 30, SUPPORT, fresh_key())

    refunded = await billing.refund_order(order_id, 1000, STRIPE)

    assert refunded.balance == -30
    assert await balance(store, partner_account(pid)) == -30
    with pytest.raises(InsufficientBalance) as refused:
        await billing.allocate_days(pid, "Shop", 1, SUPPORT, fresh_key())
    assert refused.value.available == -30
    with pytest.raises(InsufficientBalance):
        await billing.grant_days(pid, -1, "correction", SUPPORT, fresh_key())
    assert (await grant(billing, pid, 31)).balance == 1


async def test_an_unpaid_order_cannot_be_refunded(billing: BillingService) -> None:
    pid = await new_partner(billing)
    order = await billing.open_order(pid, OrderKind.TOPUP, 30, SUPPORT)

    with pytest.raises(OrderNotPayable):
        await billing.refund_order(order.id, 1000, STRIPE)
    with pytest.raises(InvalidInput):
        await billing.refund_order((await buy(billing, pid, 30)).order_id, 0, STRIPE)


# payment references, provider events ------------------------------------------------


async def test_an_order_is_found_by_its_checkout_and_by_its_payment(
    billing: BillingService, store: Store
) -> None:
    pid = await new_partner(billing)
    order = await billing.open_order(pid, OrderKind.TOPUP, 30, "user:100")
    await billing.attach_payment_link(order.id, "cs_1", "https://pay.example/1")
    await billing.credit_paid_order(order.id, 1000, "usd", STRIPE, payment_ref="pi_1")

    by_ref = await store.read(lambda lg: lg.find_order_by_ref("cs_1"))
    by_payment = await store.read(lambda lg: lg.find_order_by_payment("pi_1"))

    assert by_ref is not None and by_ref.id == order.id and by_ref.url == "https://pay.example/1"
    assert by_payment == by_ref
    assert await store.read(lambda lg: lg.find_order_by_ref("cs_2")) is None
    assert await store.read(lambda lg: lg.find_order_by_payment("pi_2")) is None


async def test_a_channel_is_found_by_the_subscription_that_pays_for_it(store: Store) -> None:
    pid = await store.write(raw_partner)
    shop = await store.write(lambda lg: lg.add_channel(pid, "Shop", START))
    paid = replace(shop, billing=ChannelBilling.SUBSCRIPTION, subscription_ref="sub_1")

    await store.write(lambda lg: lg.update_channel(paid))

    assert await store.read(lambda lg: lg.find_channel_by_subscription("sub_1")) == paid
    assert await store.read(lambda lg: lg.find_channel_by_subscription("sub_2")) is None


async def test_a_provider_event_keeps_the_result_it_was_first_recorded_with(
    store: Store,
) -> None:
    assert await store.read(lambda lg: lg.find_provider_event("evt_1")) is None

    await store.write(lambda lg: lg.record_provider_event("evt_1", "x.y", START, "credited"))
    await store.write(lambda lg: lg.record_provider_event("evt_1", "x.y", START, "already"))

    assert await store.read(lambda lg: lg.find_provider_event("evt_1")) == "credited"
