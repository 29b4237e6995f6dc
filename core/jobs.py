"""Scheduled work that is safe to repeat: each run is keyed by partner and period."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import date, tzinfo

from core.errors import InvalidInput, NothingToInvoice, PaymentUnavailable
from core.model import OrderKind, OrderStatus
from core.payments import PaymentService
from core.ports import Clock, Store

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def check_period(text: str) -> str:
    if not _PERIOD.match(text):
        raise InvalidInput("period", f"{text!r} is not a month like 2026-11")
    return text


def billing_date(year: int, month: int, billing_day: int) -> date:
    """The partner's billing day in that month; past a short month's end, its last day."""
    last = calendar.monthrange(year, month)[1]
    return date(year, month, min(billing_day, last))


@dataclass
class InvoiceRun:
    period: str
    issued: list[int] = field(default_factory=list)  # partner ids invoiced by this run
    already: list[int] = field(default_factory=list)  # invoiced before for this period
    no_channels: list[int] = field(default_factory=list)
    not_due: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)  # the payment link could not be made

    def summary(self) -> str:
        return (
            f"invoices {self.period}: {len(self.issued)} issued, {len(self.already)} already "
            f"issued, {len(self.no_channels)} without channels, {len(self.not_due)} not due "
            f"yet, {len(self.failed)} failed (retried on the next run)"
        )


async def run_invoices(
    store: Store,
    clock: Clock,
    payments: PaymentService,
    tz: tzinfo,
    period: str | None = None,
) -> InvoiceRun:
    """Rule 6: the monthly invoice of every partner whose billing day has come.

    With an explicit period every partner is invoiced for it now. Running again (after
    a crash, or twice at once) issues nothing new: the store keeps one invoice per
    partner and period.
    """
    today = clock.now().astimezone(tz).date()
    explicit = period is not None
    run = InvoiceRun(check_period(period) if period else f"{today:%Y-%m}")
    year, month = (int(x) for x in run.period.split("-"))
    partners, unlinked = await store.read(lambda lg: (
        [(p, lg.find_invoice(p.id, run.period)) for p in lg.list_partners()],
        [o for o in lg.list_orders(statuses=(OrderStatus.OPEN,))
         if o.kind is OrderKind.INVOICE and o.url is None],
    ))
    # Links that failed before, whatever their period (or none: issued on request).
    for order in unlinked:
        try:
            await payments.ensure_link(order)
        except PaymentUnavailable:
            if order.partner_id not in run.failed:
                run.failed.append(order.partner_id)
    for partner, existing in partners:
        if existing is not None:
            run.already.append(partner.id)
            continue
        if not explicit and today < billing_date(year, month, partner.billing_day):
            run.not_due.append(partner.id)
            continue
        try:
            _, new = await payments.invoice_for_period(
                partner.id, "scheduler:invoices", period=run.period
            )
        except NothingToInvoice:
            run.no_channels.append(partner.id)
        except PaymentUnavailable:
            if partner.id not in run.failed:
                run.failed.append(partner.id)
        else:
            (run.issued if new else run.already).append(partner.id)
    return run
