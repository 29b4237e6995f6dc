"""Invoice reminders: unpaid invoices reminded, then overdue with support told; run at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from core import notices, sweeps
from core.days import DAY
from core.model import OrderKind, OrderStatus
from storage.sqlite import SqliteStore
from tests.integration.sweeps.harness import ACTOR, T0, Book

# --------------------------------------------------------------------- invoice reminders


async def test_unpaid_invoices_are_reminded_then_overdue_and_support_is_told(
    book: Book,
) -> None:
    pid = await book.partner("Acme", members=(101,))
    paid_pid = await book.partner("Paid", members=(102,))
    order = await book.billing.open_order(pid, OrderKind.INVOICE, 30, ACTOR, channels=1)
    paid = await book.billing.open_order(paid_pid, OrderKind.INVOICE, 30, ACTOR, channels=1)
    await book.billing.credit_paid_order(paid.id, paid.amount, paid.currency, "stripe:evt")
    steps = []
    for at in (3 * DAY - timedelta(seconds=1), 3 * DAY, 5 * DAY, 14 * DAY, 20 * DAY):
        book.clock.set(T0 + at)
        result = await sweeps.sweep_reminders(book.store, book.clock)
        steps.append(result.detail)

    assert steps == [
        "0 reminded, 0 overdue", "1 reminded, 0 overdue", "0 reminded, 0 overdue",
        "0 reminded, 1 overdue", "0 reminded, 0 overdue",
    ]
    sent = [(n.kind, n.partner_id, n.facts["order_id"]) for n in await book.sent()
            if n.kind in (notices.INVOICE_REMINDER, notices.INVOICE_OVERDUE)]
    assert sent == [
        (notices.INVOICE_REMINDER, pid, order.id),
        (notices.INVOICE_OVERDUE, None, order.id),  # support
        (notices.INVOICE_OVERDUE, pid, order.id),
    ]
    assert (await book.store.read(lambda lg: lg.get_order(order.id))).status is (  # type: ignore[union-attr]
        OrderStatus.OPEN
    )
    assert await book.count(
        "SELECT count(*) FROM events WHERE action = 'invoice.overdue' AND partner_id = ?", pid
    ) == 1


async def test_reminder_sweeps_at_once_remind_once(book: Book, second: SqliteStore) -> None:
    for i in range(3):
        pid = await book.partner(f"P{i}", members=(100 + i,))
        await book.billing.open_order(pid, OrderKind.INVOICE, 30, ACTOR, channels=1)
    book.clock.advance(15 * DAY)

    await asyncio.gather(
        sweeps.sweep_reminders(book.store, book.clock),
        sweeps.sweep_reminders(second, book.clock),
        sweeps.sweep_reminders(book.store, book.clock),
    )

    kinds = [n.kind for n in await book.sent()]
    assert kinds.count(notices.INVOICE_REMINDER) == 3
    assert kinds.count(notices.INVOICE_OVERDUE) == 6  # support and members, once each
