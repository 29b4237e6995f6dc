"""What Stripe reports, applied by core.payments: checkout sessions (top-ups, invoices,
subscriptions), paid subscription periods, ended subscriptions and refunds.

Each test checks what the store holds afterwards (order states, balances, the channel,
transfers, the audit trail and who is told), never the words a function returns.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from core.channels import create_channel, delete_channel
from core.model import (
    ChannelBilling,
    OrderKind,
    OrderStatus,
    PaymentOrder,
    SessionState,
    channel_account,
)
from core.orders import attach_payment_link, open_order
from core.payments import (
    ChargeRefunded,
    EventResult,
    PeriodPaid,
    annual_price,
    apply_period,
    apply_refund,
    apply_session,
    end_subscription,
)
from storage.memory import MemoryStore
from tests.unit.book import MEMBER, SUPPORT, T0, Book, Event

DAY = timedelta(days=1)
LATER = T0 + timedelta(hours=1)


@pytest.fixture
async def book(memory_store: MemoryStore) -> Book:
    return await Book(memory_store).start()


async def _linked(book: Book, order: PaymentOrder, ref: str = "cs_1") -> PaymentOrder:
    return await book.run(lambda lg: attach_payment_link(lg, order.id, ref, f"https://p/{ref}"))


async def _topup(book: Book, days: int = 60, ref: str = "cs_1") -> PaymentOrder:
    return await _linked(book, await book.open(days), ref)


def _state(order: PaymentOrder, status: str = "complete", paid: str = "paid", **kw: object
           ) -> SessionState:
    fields: dict[str, object] = {
        "provider_ref": order.provider_ref, "status": status, "payment_status": paid,
        "amount_total": order.amount, "currency": order.currency, "order_id": order.id,
        "partner_id": order.partner_id, "payment_ref": "pi_1",
    }
    fields.update(kw)
    return SessionState(**fields)  # type: ignore[arg-type]


async def _apply(book: Book, state: SessionState) -> None:
    await book.run(lambda lg: apply_session(lg, LATER, state, "stripe:evt"))


# --- top-ups and invoices -----------------------------------------------------------------


async def test_a_paid_session_credits_its_order_once(book: Book) -> None:
    order = await _topup(book)
    await _apply(book, _state(order))
    await _apply(book, _state(order))
    assert await book.balance() == 60
    paid = await book.order(order.id)
    assert (paid.status, paid.paid_at, paid.payment_ref) == (OrderStatus.PAID, LATER, "pi_1")


@pytest.mark.parametrize(
    "change",
    [
        {"partner_id": 2},  # another partner's metadata on our session id
        {"order_id": 2},
        {"provider_ref": "cs_other"},  # not a session we made
        {"status": "open", "payment_status": "unpaid"},
        {"status": "complete", "payment_status": "unpaid"},  # paid later, asynchronously
        {"status": "open", "payment_status": "paid"},
    ],
)
async def test_a_session_that_is_not_ours_or_not_paid_credits_nothing(
    book: Book, change: dict[str, object]
) -> None:
    order = await _topup(book)
    await _apply(book, _state(order, **change))
    assert await book.balance() == 0
    assert (await book.order(order.id)).status is OrderStatus.OPEN


async def test_a_session_without_metadata_is_matched_by_its_id_alone(book: Book) -> None:
    order = await _topup(book)
    await _apply(book, _state(order, partner_id=None, order_id=None))
    assert await book.balance() == 60


async def test_a_failed_payment_fails_its_order(book: Book) -> None:
    order = await _topup(book)
    await _apply(book, _state(order, paid="unpaid", failed=True))
    failed = await book.order(order.id)
    assert (failed.status, failed.closed_at) == (OrderStatus.FAILED, LATER)
    assert await book.balance() == 0


async def test_an_expired_top_up_session_expires_its_order(book: Book) -> None:
    order = await _topup(book)
    await _apply(book, _state(order, status="expired", paid="unpaid"))
    expired = await book.order(order.id)
    assert (expired.status, expired.closed_at) == (OrderStatus.EXPIRED, LATER)


async def test_an_expired_invoice_session_drops_only_the_link(book: Book) -> None:
    invoice = await book.run(lambda lg: open_order(
        lg, T0, book.partner_id, OrderKind.INVOICE, 60, "scheduler:invoices", channels=2
    ))
    invoice = await _linked(book, invoice, "cs_9")
    await _apply(book, _state(invoice, status="expired", paid="unpaid"))
    still = await book.order(invoice.id)
    assert (still.status, still.provider_ref, still.url) == (OrderStatus.OPEN, None, None)
    assert book.events[-1] == Event(
        "stripe:evt", "order.link_expired", book.partner_id, "order=1 session=cs_9"
    )


async def test_an_expired_session_of_a_paid_invoice_leaves_it_as_it_is(book: Book) -> None:
    invoice = await book.run(lambda lg: open_order(
        lg, T0, book.partner_id, OrderKind.INVOICE, 60, "scheduler:invoices", channels=2
    ))
    invoice = await _linked(book, invoice, "cs_9")
    await _apply(book, _state(invoice))
    paid = await book.order(invoice.id)
    late = _state(invoice, status="expired", paid="unpaid")
    replayed = await book.run(lambda lg: apply_session(lg, LATER, late, "stripe:evt"))
    assert replayed is EventResult.ALREADY
    assert await book.order(invoice.id) == paid
    assert "order.link_expired" not in book.actions()


async def test_a_payment_other_than_the_quote_credits_nothing_and_tells_support_once(
    book: Book,
) -> None:
    order = await _topup(book)
    await _apply(book, _state(order, amount_total=1999))
    await _apply(book, _state(order, amount_total=1999))  # the same event again
    assert await book.balance() == 0
    assert (await book.order(order.id)).status is OrderStatus.OPEN
    assert await book.support_told() == 1


# --- subscriptions (rule 10) ------------------------------------------------------------


async def _subscription(book: Book) -> tuple[int, PaymentOrder]:
    made = await book.run(lambda lg: create_channel(lg, T0, book.partner_id, "shop", "u:1", "c"))
    order = await book.run(lambda lg: open_order(
        lg, T0, book.partner_id, OrderKind.SUBSCRIPTION, 30, "user:1",
        channel_id=made.channel_id, amount=1000,
    ))
    return made.channel_id, await _linked(book, order, "cs_s")


async def test_a_completed_subscription_checkout_marks_the_channel_as_paid_by_it(
    book: Book,
) -> None:
    cid, order = await _subscription(book)
    await _apply(book, _state(order, payment_ref=None, subscription_ref="sub_1"))
    paid = await book.order(order.id)
    assert (paid.status, paid.paid_at, paid.payment_ref) == (OrderStatus.PAID, LATER, "sub_1")
    channel = await book.channel(cid)
    assert (channel.billing, channel.subscription_ref) == (ChannelBilling.SUBSCRIPTION, "sub_1")
    # No days yet: they come with each paid period.
    assert await book.balance(channel_account(cid)) == 0
    assert book.events[-1] == Event(
        "stripe:evt", "subscription.started", book.partner_id, "order=1 subscription=sub_1"
    )


async def test_a_subscription_completed_twice_is_started_once(book: Book) -> None:
    _, order = await _subscription(book)
    await _apply(book, _state(order, subscription_ref="sub_1"))
    await _apply(book, _state(order, subscription_ref="sub_2"))
    assert (await book.order(order.id)).payment_ref == "sub_1"
    assert book.actions().count("subscription.started") == 1


async def test_an_expired_subscription_checkout_expires_its_order(book: Book) -> None:
    cid, order = await _subscription(book)
    await _apply(book, _state(order, status="expired", paid="unpaid"))
    expired = await book.order(order.id)
    assert (expired.status, expired.closed_at) == (OrderStatus.EXPIRED, LATER)
    assert (await book.channel(cid)).billing is ChannelBilling.BALANCE


@pytest.mark.parametrize(
    "change", [{"status": "open"}, {"status": "complete", "subscription_ref": None}]
)
async def test_a_subscription_checkout_not_yet_complete_changes_nothing(
    book: Book, change: dict[str, object]
) -> None:
    cid, order = await _subscription(book)
    state = _state(order, subscription_ref="sub_1")
    await _apply(book, replace(state, **change))  # type: ignore[arg-type]
    assert (await book.order(order.id)).status is OrderStatus.OPEN
    assert (await book.channel(cid)).subscription_ref is None


async def test_a_subscription_completing_after_its_channel_was_deleted_leaves_it_deleted(
    book: Book,
) -> None:
    cid, order = await _subscription(book)
    await book.run(lambda lg: delete_channel(lg, T0, book.partner_id, cid, "user:1", "d"))
    gone = await book.channel(cid)
    await _apply(book, _state(order, subscription_ref="sub_1"))
    assert (await book.order(order.id)).status is OrderStatus.PAID  # the money is real
    assert await book.channel(cid) == gone
    assert gone.billing is ChannelBilling.BALANCE


async def _period(book: Book, cid: int, invoice: str = "in_1", interval: str = "month",
                  sub: str = "sub_1", partner_id: int | None = None) -> None:
    pid = book.partner_id if partner_id is None else partner_id
    period = PeriodPaid(
        invoice_ref=invoice, subscription_ref=sub, partner_id=pid, channel_id=cid,
        interval=interval, amount_paid=1000, currency="usd",  # the subscription's price
    )
    await book.run(lambda lg: apply_period(lg, LATER, period, "stripe:evt"))


@pytest.mark.parametrize(("interval", "days"), [("month", 30), ("year", 365)])
async def test_a_paid_period_extends_its_channel_by_its_interval_once(
    book: Book, interval: str, days: int
) -> None:
    cid, _ = await _subscription(book)
    await _period(book, cid, interval=interval)
    await _period(book, cid, interval=interval)
    assert await book.balance(channel_account(cid)) == days
    channel = await book.channel(cid)
    assert channel.active_until == LATER + days * DAY
    # A period paid before the checkout was seen links the channel to its subscription.
    assert (channel.billing, channel.subscription_ref) == (ChannelBilling.SUBSCRIPTION, "sub_1")


async def test_a_paid_period_keeps_the_subscription_the_channel_already_has(
    book: Book,
) -> None:
    cid, order = await _subscription(book)
    await _apply(book, _state(order, subscription_ref="sub_1"))
    await _period(book, cid, sub="sub_other")
    assert (await book.channel(cid)).subscription_ref == "sub_1"
    assert await book.balance(channel_account(cid)) == 30


@pytest.mark.parametrize(
    ("interval", "channel", "partner"),
    [("week", 1, None), ("month", 99, None), ("month", 1, 2)],
)
async def test_a_period_for_an_unknown_interval_channel_or_partner_credits_nothing(
    book: Book, interval: str, channel: int, partner: int | None
) -> None:
    cid, _ = await _subscription(book)
    assert cid == 1
    await _period(book, channel, interval=interval, partner_id=partner)
    assert await book.balance(channel_account(cid)) == 0
    assert (await book.channel(cid)).subscription_ref is None


async def test_a_period_for_a_deleted_channel_credits_nothing_and_is_logged(book: Book) -> None:
    cid, _ = await _subscription(book)
    await book.run(lambda lg: delete_channel(lg, T0, book.partner_id, cid, "user:1", "d"))
    await _period(book, cid)
    assert await book.balance(channel_account(cid)) == 0
    assert (await book.channel(cid)).subscription_ref is None
    assert book.events[-1] == Event(
        "stripe:evt", "subscription.period_for_deleted_channel", book.partner_id,
        "channel=1 subscription=sub_1 invoice=in_1",
    )


async def test_an_ended_subscription_returns_the_channel_to_the_balance(book: Book) -> None:
    await book.add_member()
    cid, order = await _subscription(book)
    await _apply(book, _state(order, subscription_ref="sub_1"))
    await _period(book, cid)
    told = len(await book.told())
    await book.run(lambda lg: end_subscription(lg, LATER, "sub_1", "stripe:evt"))
    channel = await book.channel(cid)
    assert (channel.billing, channel.subscription_ref) == (ChannelBilling.BALANCE, None)
    assert channel.active_until == LATER + 30 * DAY  # it runs until its paid end
    assert book.events[-1] == Event(
        "stripe:evt", "subscription.ended", book.partner_id, "channel=1 subscription=sub_1"
    )
    assert (await book.told())[told:] == [MEMBER]
    await book.run(lambda lg: end_subscription(lg, LATER, "sub_1", "stripe:evt"))
    assert book.actions().count("subscription.ended") == 1


# --- refunds (rule 11) --------------------------------------------------------------------


async def test_a_refund_of_a_paid_top_up_takes_its_days_back(book: Book) -> None:
    order = await _topup(book)
    await _apply(book, _state(order))
    refund = ChargeRefunded("pi_1", 1000)
    await book.run(lambda lg: apply_refund(lg, LATER, refund, "stripe:evt"))
    assert await book.balance() == 30
    assert (await book.order(order.id)).refunded_days == 30


async def test_a_refund_of_an_unknown_or_subscription_payment_takes_nothing(
    book: Book,
) -> None:
    cid, order = await _subscription(book)
    await _apply(book, _state(order, subscription_ref="sub_1"))
    await book.grant(10)
    for ref in ("pi_unknown", "sub_1"):
        refund = ChargeRefunded(ref, 1000)
        await book.run(lambda lg, r=refund: apply_refund(lg, LATER, r, "stripe:evt"))
    assert await book.balance() == 10
    assert (await book.order(order.id)).refunded_days == 0
    assert cid == 1


async def test_a_refund_of_an_order_no_longer_paid_takes_nothing(book: Book) -> None:
    order = await _topup(book)
    await _apply(book, _state(order))
    # A hand-edited row: the payment is known but the order is not marked paid.
    await book.run(lambda lg: lg.update_order(replace(
        lg.get_order(order.id), status=OrderStatus.CANCELED
    )))
    refund = ChargeRefunded("pi_1", 2000)
    await book.run(lambda lg: apply_refund(lg, LATER, refund, "stripe:evt"))
    assert await book.balance() == 60
    assert SUPPORT not in await book.told()


@pytest.mark.parametrize(
    ("monthly", "discount", "annual"),
    [
        (1000, 15, 10_200),  # 12 x 10.00 less 15 %
        (1000, 0, 12_000),
        (1000, 100, 0),
        (2, 15, 20),  # 20.4 rounds down
        (4, 15, 41),  # 40.8 rounds up
        (999, 15, 10_190),  # 10,189.8 rounds up
    ],
)
def test_the_annual_price_is_twelve_months_less_the_discount_half_up(
    monthly: int, discount: int, annual: int
) -> None:
    assert annual_price(monthly, discount) == annual


async def test_a_subscription_ended_before_any_period_was_paid_ends_cleanly(
    book: Book,
) -> None:
    await book.add_member()
    cid, order = await _subscription(book)
    await _apply(book, _state(order, subscription_ref="sub_1"))
    assert (await book.channel(cid)).active_until is None
    await book.run(lambda lg: end_subscription(lg, LATER, "sub_1", "stripe:evt"))
    channel = await book.channel(cid)
    assert (channel.billing, channel.subscription_ref) == (ChannelBilling.BALANCE, None)
    assert await book.told() == [MEMBER]


async def test_a_subscription_checkout_reports_what_became_of_it(book: Book) -> None:
    """The word the webhook answers Stripe with, and reconciliation counts by."""
    cid, order = await _subscription(book)

    async def report(state: SessionState) -> EventResult:
        return await book.run(lambda lg: apply_session(lg, LATER, state, "stripe:evt"))

    opened = _state(order, status="open", subscription_ref="sub_1")
    assert await report(opened) is EventResult.PENDING
    assert await report(_state(order, subscription_ref="sub_1")) is EventResult.SUBSCRIBED
    assert await report(_state(order, subscription_ref="sub_1")) is EventResult.ALREADY
    _, other = await _subscription_for(book, "blog")
    assert await report(_state(other, status="expired", paid="unpaid")) is EventResult.EXPIRED
    assert cid == 1


async def _subscription_for(book: Book, name: str) -> tuple[int, PaymentOrder]:
    made = await book.run(lambda lg: create_channel(lg, T0, book.partner_id, name, "u:1", name))
    order = await book.run(lambda lg: open_order(
        lg, T0, book.partner_id, OrderKind.SUBSCRIPTION, 30, "user:1",
        channel_id=made.channel_id, amount=1000,
    ))
    return made.channel_id, await _linked(book, order, f"cs_{name}")


async def test_a_period_or_refund_that_is_not_ours_reports_unknown(book: Book) -> None:
    cid, _ = await _subscription(book)
    period = PeriodPaid(
        invoice_ref="in_1", subscription_ref="sub_1", partner_id=book.partner_id,
        channel_id=cid, interval="week", amount_paid=1000, currency="usd",
    )
    unknown = await book.run(lambda lg: apply_period(lg, LATER, period, "stripe:evt"))
    assert unknown is EventResult.UNKNOWN
    order = await _topup(book, ref="cs_t")
    await _apply(book, _state(order, payment_ref="pi_t"))
    await book.run(lambda lg: lg.update_order(replace(
        lg.get_order(order.id), status=OrderStatus.CANCELED
    )))
    refund = ChargeRefunded("pi_t", 1000)
    result = await book.run(lambda lg: apply_refund(lg, LATER, refund, "stripe:evt"))
    assert result is EventResult.UNKNOWN
