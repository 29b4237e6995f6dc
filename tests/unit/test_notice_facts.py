"""The facts each money notice carries, to whom it goes and how often: what the bot
renders into the text a member or support agent reads. A missing fact would render as a
wrong number, so each is pinned (written out by hand).

Notices are read through Book.notices, the one place that knows their stored form.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.channels import create_channel, credit_subscription_period
from core.errors import PaymentUnavailable
from core.model import OrderKind, SessionState
from core.notices import (
    DaysCredited,
    DaysRefunded,
    InvoiceIssued,
    PaymentMismatched,
    RefundOverdrawn,
    SubscriptionPaid,
)
from core.orders import attach_payment_link, refund_order
from core.payments import PaymentService, apply_session
from storage.memory import MemoryStore
from tests.conftest import FakeClock
from tests.unit.book import MEMBER, SUPPORT, T0, Book, Told
from tests.unit.test_payment_service_links import Gateway

DAY = timedelta(days=1)


@pytest.fixture
async def book(memory_store: MemoryStore) -> Book:
    book = await Book(memory_store).start()
    await book.add_member()
    return book


async def test_credited_days_are_told_to_the_members_with_the_new_balance(book: Book) -> None:
    await book.paid(60)
    assert await book.notices() == [
        Told(MEMBER, "days_credited",
             DaysCredited(order_id=1, order_kind=OrderKind.TOPUP, days=60, balance=60)),
    ]


async def test_a_refund_is_told_to_the_members_and_an_overdraft_to_support(book: Book) -> None:
    order = await book.paid(60)
    await book.grant(-50)
    await book.run(lambda lg: refund_order(lg, T0, order.id, 2000, "stripe:evt"))
    told = [n for n in await book.notices() if n.kind in ("days_refunded", "refund_overdrawn")]
    assert told == [
        Told(MEMBER, "days_refunded", DaysRefunded(order_id=1, days=60, balance=-50)),
        Told(SUPPORT, "refund_overdrawn", RefundOverdrawn(
            partner_id=book.partner_id, order_id=1, days=60, balance=-50,
        )),
    ]


async def test_a_paid_period_is_told_once_with_the_channel_and_its_new_end(book: Book) -> None:
    made = await book.run(lambda lg: create_channel(lg, T0, book.partner_id, "shop", "u:1", "c"))
    for _ in range(2):
        await book.run(lambda lg: credit_subscription_period(
            lg, T0, made.channel_id, 30, "in_1", "stripe:evt"
        ))
    assert await book.notices() == [
        Told(MEMBER, "subscription_paid", SubscriptionPaid(
            channel="shop", days=30, until=datetime(2030, 2, 13, 9, 30, tzinfo=UTC),
        )),
    ]


async def test_a_payment_other_than_the_quote_is_told_to_support_with_both_amounts(
    book: Book,
) -> None:
    order = await book.open(60)
    order = await book.run(lambda lg: attach_payment_link(lg, order.id, "cs_1", "https://p"))
    state = SessionState("cs_1", "complete", "paid", 1999, "usd", order.id, book.partner_id)
    await book.run(lambda lg: apply_session(lg, T0, state, "stripe:evt"))
    assert await book.notices() == [
        Told(SUPPORT, "payment_mismatch", PaymentMismatched(
            partner_id=book.partner_id, order_id=1, expected_amount=2000,
            expected_currency="usd", paid_amount=1999, paid_currency="usd",
        )),
    ]


async def test_an_invoice_is_told_with_its_size_amount_period_and_link(
    book: Book, memory_store: MemoryStore
) -> None:
    service = PaymentService(memory_store, FakeClock(T0), Gateway())
    for name in ("a", "b"):
        await book.run(lambda lg, n=name: create_channel(lg, T0, book.partner_id, n, "u:1", n))
    await service.issue_invoice(book.partner_id, "scheduler", period="2030-02")
    assert await book.notices() == [
        Told(MEMBER, "invoice_issued", InvoiceIssued(
            order_id=1, days=60, channels=2, amount=2000, currency="usd",
            period="2030-02", url="https://pay.example/cs_1",
        )),
    ]


async def test_an_invoice_is_announced_under_the_keys_earlier_versions_stored(
    book: Book, memory_store: MemoryStore
) -> None:
    """A notice's key is what stops it being queued twice, and keys are stored: a run of
    this version finishing an invoice an earlier one began must find the same keys."""
    gateway = Gateway()
    service = PaymentService(memory_store, FakeClock(T0), gateway)
    await book.run(lambda lg: create_channel(lg, T0, book.partner_id, "a", "u:1", "a"))
    gateway.down = True
    with pytest.raises(PaymentUnavailable):
        await service.issue_invoice(book.partner_id, "scheduler", period="2030-02")
    gateway.down = False
    await service.ensure_link(await book.order(1))
    await book.told()  # expands the queued notices into deliveries
    due = await book.read(lambda lg: lg.due_deliveries(T0 + 9000 * DAY, 999))
    assert [(d.notice.key, d.user_id) for d in due] == [
        ("invoice:1:unlinked", MEMBER), ("invoice:1", MEMBER),
    ]
    assert [d.notice.kind for d in due] == ["invoice_issued", "invoice_issued"]
