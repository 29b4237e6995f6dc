"""What the order use cases leave in the books: the transfers (kind, key, reason), the
audit trail, and who is told. Expected rows are written out by hand."""

from __future__ import annotations

import pytest

from core.errors import OrderNotFound, OrderNotPayable, PartnerNotFound
from core.model import GRANTS, OrderKind, OrderStatus, TransferKind, partner_account
from core.orders import (
    close_order,
    credit_paid_order,
    grant_days,
    open_order,
    refund_order,
)
from core.outcomes import DaysGranted, OrderCredited, OrderRefunded
from storage.memory import MemoryStore
from tests.unit.book import MEMBER, SUPPORT, T0, Book, Event


@pytest.fixture
async def book(memory_store: MemoryStore) -> Book:
    book = await Book(memory_store).start()
    await book.add_member()
    return book


async def _rows(book: Book) -> list[tuple[TransferKind, int, str, str, str, str, int | None]]:
    account = partner_account(book.partner_id)
    found = await book.read(lambda lg: lg.list_transfers(account, limit=99))
    return [(t.kind, t.days, t.key, t.debit, t.credit, t.reason, t.order_id)
            for t in reversed(found)]


async def test_support_grants_and_removals_are_transfers_with_their_reason(book: Book) -> None:
    granted = await book.run(lambda lg: grant_days(
        lg, T0, book.partner_id, 10, "welcome", "support:1", "g"
    ))
    removed = await book.run(lambda lg: grant_days(
        lg, T0, book.partner_id, -4, "typo", "support:1", "r"
    ))
    assert granted == DaysGranted(book.partner_id, 10, 10, "welcome", 1)
    assert removed == DaysGranted(book.partner_id, -4, 6, "typo", 2)
    assert await _rows(book) == [
        (TransferKind.GRANT, 10, "g", GRANTS, "partner:1", "welcome", None),
        (TransferKind.REMOVAL, 4, "r", "partner:1", GRANTS, "typo", None),
    ]


async def test_days_for_a_partner_that_does_not_exist_are_refused(book: Book) -> None:
    with pytest.raises(PartnerNotFound):
        await book.run(lambda lg: grant_days(lg, T0, 99, 10, "welcome", "support:1", "g"))


async def test_opening_and_closing_an_order_are_logged(book: Book) -> None:
    order = await book.run(lambda lg: open_order(
        lg, T0, book.partner_id, OrderKind.TOPUP, 60, "user:7"
    ))
    await book.run(lambda lg: close_order(lg, T0, order.id, OrderStatus.CANCELED, "system:x"))
    assert book.events == [
        Event("user:7", "order.opened", book.partner_id, "order=1 kind=topup days=60 amount=2000"),
        Event("system:x", "order.canceled", book.partner_id, "order=1"),
    ]


async def test_a_credited_order_is_one_purchase_and_the_members_are_told(book: Book) -> None:
    order = await book.open(60)
    done = await book.run(lambda lg: credit_paid_order(
        lg, T0, order.id, 2000, "usd", "stripe:evt"
    ))
    assert done == OrderCredited(book.partner_id, order.id, 60, 60, 1)
    again = await book.run(lambda lg: credit_paid_order(
        lg, T0, order.id, 2000, "usd", "stripe:evt"
    ))
    assert again == OrderCredited(book.partner_id, order.id, 60, 60, 1, replayed=True)
    assert await _rows(book) == [
        (TransferKind.PURCHASE, 60, "order:1:credit", "ext:purchases", "partner:1", "topup 1", 1),
    ]
    assert await book.told() == [MEMBER]


async def test_a_subscription_order_never_credits_the_balance(book: Book) -> None:
    order = await book.open(30, amount=1000)
    from dataclasses import replace

    await book.run(lambda lg: lg.update_order(replace(order, kind=OrderKind.SUBSCRIPTION)))
    with pytest.raises(OrderNotPayable) as caught:
        await book.run(lambda lg: credit_paid_order(lg, T0, order.id, 1000, "usd", "s:e"))
    assert (caught.value.order_id, caught.value.status) == (order.id, "open")
    assert await book.balance() == 0


async def test_a_refund_is_one_transfer_per_refunded_total_and_tells_the_members(
    book: Book,
) -> None:
    order = await book.paid(60)  # 20.00
    first = await book.run(lambda lg: refund_order(lg, T0, order.id, 1000, "stripe:evt"))
    assert first == OrderRefunded(book.partner_id, order.id, 30, 30, 2)
    # Events can arrive out of order: a smaller total after a larger one takes nothing.
    late = await book.run(lambda lg: refund_order(lg, T0, order.id, 900, "stripe:evt"))
    assert late == OrderRefunded(book.partner_id, order.id, 0, 30, None)
    rest = await book.run(lambda lg: refund_order(lg, T0, order.id, 2000, "stripe:evt"))
    assert rest == OrderRefunded(book.partner_id, order.id, 30, 0, 3)
    assert (await _rows(book))[1:] == [
        (TransferKind.REFUND, 30, "order:1:refund:30", "partner:1", "ext:purchases",
         "refund of topup 1", 1),
        (TransferKind.REFUND, 30, "order:1:refund:60", "partner:1", "ext:purchases",
         "refund of topup 1", 1),
    ]
    assert (await book.order(order.id)).refunded_days == 60
    told = await book.told()
    # Credited, refunded twice, and the low-balance alert (0 days is under 30).
    assert (told.count(MEMBER), told.count(SUPPORT)) == (4, 0)


async def test_an_unknown_order_is_named_in_the_refusal(book: Book) -> None:
    with pytest.raises(OrderNotFound) as caught:
        await book.run(lambda lg: close_order(lg, T0, 99, OrderStatus.EXPIRED, "stripe:evt"))
    assert caught.value.order_id == 99


async def test_a_refund_of_an_unpaid_order_names_the_order_and_its_state(book: Book) -> None:
    order = await book.open(60)
    with pytest.raises(OrderNotPayable) as caught:
        await book.run(lambda lg: refund_order(lg, T0, order.id, 2000, "stripe:evt"))
    assert (caught.value.order_id, caught.value.status) == (order.id, "open")
