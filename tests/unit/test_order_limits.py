"""Days in and out at their limits: support removing the whole balance, an order of
exactly Stripe's minimum or of exactly the most days, refunds to exactly zero.

Each test runs the use case functions of core.orders over the in-memory store and checks
what the store holds afterwards: balances, order states and who support is told about.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.errors import (
    InsufficientBalance,
    InvalidInput,
    OrderNotPayable,
    PaymentMismatch,
)
from core.model import OrderKind, OrderStatus, PaymentOrder
from core.orders import (
    close_order,
    credit_paid_order,
    grant_days,
    open_order,
    refund_order,
)
from storage.memory import MemoryStore
from tests.unit.book import T0, Book


@pytest.fixture
async def book(memory_store: MemoryStore) -> Book:
    return await Book(memory_store).start()


# --- support grants and removals (rule 11) ------------------------------------------


async def test_support_may_remove_the_whole_balance_and_not_a_day_more(book: Book) -> None:
    await book.grant(40, "g1")
    with pytest.raises(InsufficientBalance) as caught:
        await book.grant(-41, "r1")
    assert (caught.value.needed, caught.value.available) == (41, 40)
    assert await book.balance() == 40

    removed = await book.run(lambda lg: grant_days(
        lg, T0, book.partner_id, -40, "  closing  the account ", "support:1", "r2"
    ))
    assert (removed.days, removed.balance, removed.reason) == (-40, 0, "closing the account")
    assert await book.balance() == 0


async def test_a_grant_reports_the_balance_after_it(book: Book) -> None:
    assert await book.grant(25, "g1") == 25
    assert await book.grant(5, "g2") == 30
    assert await book.grant(-12, "r1") == 18


async def test_a_grant_of_zero_days_is_refused_and_changes_nothing(book: Book) -> None:
    with pytest.raises(InvalidInput) as caught:
        await book.grant(0)
    assert (caught.value.field, caught.value.reason) == ("days", "must not be 0")
    assert await book.balance() == 0


# --- orders: Stripe's minimum, the most days, the largest amount --------------------


@pytest.fixture
async def book_1500(memory_store: MemoryStore) -> Book:
    # 15.00 a month: one day is exactly 0.50, Stripe's minimum charge in USD.
    return await Book(memory_store, price=1500).start()


async def test_an_order_of_exactly_stripes_minimum_is_accepted(book_1500: Book) -> None:
    order = await book_1500.open(1)
    assert (order.days, order.amount, order.currency) == (1, 50, "usd")
    assert order.status is OrderStatus.OPEN


async def test_an_order_one_cent_under_stripes_minimum_is_refused_with_the_least_days(
    book: Book,
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await book.open(1)  # 10.00 a month: one day is 0.33
    assert caught.value.field == "days"
    assert caught.value.reason == "must be at least 2 (the smallest payment is 0.50 USD)"
    with pytest.raises(InvalidInput):
        await book.open(1, amount=49)
    assert (await book.open(1, amount=50)).amount == 50


async def test_a_top_up_of_exactly_the_most_days_is_accepted_and_one_more_is_not(
    book: Book,
) -> None:
    order = await book.open(36_500, max_days=36_500)
    assert (order.days, order.amount) == (36_500, 1_216_667)  # 12,166.666... half up
    with pytest.raises(InvalidInput) as caught:
        await book.open(36_501, max_days=36_500)
    assert (caught.value.field, caught.value.reason) == ("days", "must be at most 36,500")


async def test_an_amount_of_exactly_the_largest_payment_is_accepted_and_one_more_is_not(
    book: Book,
) -> None:
    assert (await book.open(30, amount=99_999_999)).amount == 99_999_999
    with pytest.raises(InvalidInput) as caught:
        await book.open(30, amount=100_000_000)
    assert (caught.value.field, caught.value.reason) == (
        "days", "make the amount too large for one payment"
    )


async def test_an_order_records_what_was_asked_at_the_partners_price(book: Book) -> None:
    order = await book.run(lambda lg: open_order(
        lg, T0, book.partner_id, OrderKind.INVOICE, 60, "scheduler:invoices",
        period="2030-02", channels=2,
    ))
    assert order == PaymentOrder(
        id=1, partner_id=book.partner_id, kind=OrderKind.INVOICE, days=60, amount=2000,
        currency="usd", status=OrderStatus.OPEN, created_at=T0,
        created_by="scheduler:invoices", period="2030-02", channels=2,
    )
    again = await book.run(lambda lg: open_order(
        lg, T0, book.partner_id, OrderKind.INVOICE, 90, "scheduler:invoices",
        period="2030-02", channels=3,
    ))
    assert again == order  # one invoice per period


# --- closing and crediting -----------------------------------------------------------


async def test_closing_an_open_order_records_when_and_a_closed_one_stays(book: Book) -> None:
    order = await book.open(30)
    later = T0 + timedelta(hours=2)
    closed = await book.run(lambda lg: close_order(
        lg, later, order.id, OrderStatus.EXPIRED, "stripe:evt"
    ))
    assert (closed.status, closed.closed_at) == (OrderStatus.EXPIRED, later)
    again = await book.run(lambda lg: close_order(
        lg, later + timedelta(hours=1), order.id, OrderStatus.CANCELED, "stripe:evt"
    ))
    assert (again.status, again.closed_at) == (OrderStatus.EXPIRED, later)
    assert await book.order(order.id) == closed


async def test_an_order_is_not_closed_as_paid(book: Book) -> None:
    order = await book.open(30)
    with pytest.raises(ValueError, match="does not close an order"):
        await book.run(lambda lg: close_order(lg, T0, order.id, OrderStatus.PAID, "x"))
    assert (await book.order(order.id)).status is OrderStatus.OPEN


async def test_a_payment_in_the_quoted_currency_written_in_capitals_is_credited(
    book: Book,
) -> None:
    order = await book.open(60)
    done = await book.run(lambda lg: credit_paid_order(
        lg, T0, order.id, 2000, "USD", "stripe:evt", payment_ref="pi_1"
    ))
    assert (done.days, done.balance) == (60, 60)
    stored = await book.order(order.id)
    assert (stored.status, stored.paid_at, stored.payment_ref) == (OrderStatus.PAID, T0, "pi_1")


@pytest.mark.parametrize(("amount", "currency"), [(1999, "usd"), (2001, "usd"), (2000, "eur")])
async def test_a_payment_that_differs_from_the_quote_is_not_credited(
    book: Book, amount: int, currency: str
) -> None:
    order = await book.open(60)
    with pytest.raises(PaymentMismatch) as caught:
        await book.run(lambda lg: credit_paid_order(
            lg, T0, order.id, amount, currency, "stripe:evt"
        ))
    assert (caught.value.expected_amount, caught.value.expected_currency) == (2000, "usd")
    assert (caught.value.order_id, caught.value.paid_amount, caught.value.paid_currency) == (
        order.id, amount, currency
    )
    assert await book.balance() == 0
    assert (await book.order(order.id)).status is OrderStatus.OPEN


# --- refunds (rule 11) ----------------------------------------------------------------


async def test_a_refund_that_leaves_exactly_zero_days_tells_support_nothing(
    book: Book,
) -> None:
    order = await book.paid(60)
    done = await book.run(lambda lg: refund_order(lg, T0, order.id, 2000, "stripe:evt"))
    assert (done.days, done.balance) == (60, 0)
    assert await book.support_told() == 0


async def test_a_refund_that_leaves_a_negative_balance_tells_support_once(book: Book) -> None:
    order = await book.paid(60)
    await book.grant(-1, "r1")
    done = await book.run(lambda lg: refund_order(lg, T0, order.id, 2000, "stripe:evt"))
    assert (done.days, done.balance) == (60, -1)
    assert await book.support_told() == 1


@pytest.mark.parametrize(
    ("refunded", "days_back"),
    [
        (1, 0),  # 0.01 of 20.00 is 0.03 days: rounds to none
        (16, 0),  # 0.48 days
        (17, 1),  # 0.51 days rounds up
        (1000, 30),  # half the money, half the days
        (2000, 60),
        (5000, 60),  # more than was paid takes back no more than was bought
    ],
)
async def test_a_refund_takes_back_days_in_proportion_to_the_money_half_up(
    book: Book, refunded: int, days_back: int
) -> None:
    order = await book.paid(60)
    done = await book.run(lambda lg: refund_order(lg, T0, order.id, refunded, "stripe:evt"))
    assert done.days == days_back
    assert await book.balance() == 60 - days_back
    assert (await book.order(order.id)).refunded_days == days_back


async def test_a_refund_of_an_unpaid_order_or_of_nothing_is_refused(book: Book) -> None:
    unpaid = await book.open(60)
    with pytest.raises(OrderNotPayable):
        await book.run(lambda lg: refund_order(lg, T0, unpaid.id, 2000, "stripe:evt"))
    paid = await book.paid(60)
    with pytest.raises(InvalidInput) as caught:
        await book.run(lambda lg: refund_order(lg, T0, paid.id, 0, "stripe:evt"))
    assert (caught.value.field, caught.value.reason) == ("refunded amount", "must be positive")
    assert await book.balance() == 60
