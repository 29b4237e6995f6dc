"""How each queued notice reads (core queues typed notices; texts live here).

One function per notice type; `text` dispatches on the type and ends in `assert_never`,
so mypy fails if a notice type in core has no text here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import tzinfo
from typing import assert_never

from bot.render import amount, date, days, esc
from core.model import Notice
from core.notices import (
    AnyNotice,
    BalanceCorrected,
    ChannelsExpiring,
    ChannelsRenewed,
    DaysCredited,
    DaysRefunded,
    InvoiceIssued,
    InvoiceOverdue,
    InvoiceUnpaid,
    ListedChannel,
    LowBalanceCrossed,
    PaymentMismatched,
    PeriodMismatched,
    RefundOverdrawn,
    RenewFellShort,
    SubscriptionEnded,
    SubscriptionPaid,
    SupportAllocated,
    SupportDeleted,
    decode,
)

SHOWN = 20  # channels named in one message; the rest are counted


def render(stored: Notice, tz: tzinfo) -> str:
    """The text of a stored notice; raises NoticeUndecodable if it cannot be read back."""
    return text(decode(stored.kind, stored.payload), tz)


def text(notice: AnyNotice, tz: tzinfo) -> str:
    match notice:
        case DaysCredited():
            return _days_credited(notice)
        case DaysRefunded():
            return _days_refunded(notice)
        case RefundOverdrawn():
            return _refund_overdrawn(notice)
        case PaymentMismatched():
            return _payment_mismatched(notice)
        case InvoiceIssued():
            return _invoice_issued(notice)
        case SubscriptionPaid():
            return _subscription_paid(notice, tz)
        case SubscriptionEnded():
            return _subscription_ended(notice, tz)
        case LowBalanceCrossed():
            return _low_balance_crossed(notice, tz)
        case ChannelsExpiring():
            return _channels_expiring(notice, tz)
        case ChannelsRenewed():
            return _channels_renewed(notice, tz)
        case RenewFellShort():
            return _renew_fell_short(notice, tz)
        case InvoiceUnpaid():
            return _invoice_unpaid(notice)
        case InvoiceOverdue():
            return _invoice_overdue(notice)
        case PeriodMismatched():
            return _period_mismatched(notice)
        case BalanceCorrected():
            return _balance_corrected(notice)
        case SupportAllocated():
            return _support_allocated(notice, tz)
        case SupportDeleted():
            return _support_deleted(notice)
        case _:
            assert_never(notice)


def _days_credited(n: DaysCredited) -> str:
    return f"{days(n.days)} credited; balance {n.balance:,} days."


def _days_refunded(n: DaysRefunded) -> str:
    return (
        f"A refund took {days(n.days)} back (order #{n.order_id}); "
        f"balance {n.balance:,} days."
    )


def _refund_overdrawn(n: RefundOverdrawn) -> str:
    return (
        f"Support: a refund of order #{n.order_id} took {days(n.days)} back "
        f"from partner #{n.partner_id}, whose balance is now {n.balance:,} days "
        f"(below zero). /account {n.partner_id}"
    )


def _payment_mismatched(n: PaymentMismatched) -> str:
    # The paid amount is quoted as Stripe reported it (minor units), as support sees it there.
    paid = f"{n.paid_amount} {n.paid_currency}"
    expected = amount(n.expected_amount, n.expected_currency)
    return (
        f"Support: order #{n.order_id} of partner #{n.partner_id} was paid "
        f"{esc(paid)} but the quote was {esc(expected)}. "
        "No days were credited; please check it in Stripe."
    )


def _period_mismatched(n: PeriodMismatched) -> str:
    paid = f"{n.paid_amount} {n.paid_currency}"
    expected = amount(n.expected_amount, n.expected_currency)
    return (
        f"Support: Stripe invoice {esc(n.invoice_ref)} for the subscription of channel "
        f"<b>{esc(n.channel)}</b> (partner #{n.partner_id}) was paid {esc(paid)} but its "
        f"price is {esc(expected)}. No days were credited; please check it in Stripe."
    )


def _balance_corrected(n: BalanceCorrected) -> str:
    verb = "granted" if n.days > 0 else "removed"
    return (
        f"Support {verb} {days(abs(n.days))}: {esc(n.reason)}. "
        f"Balance: {n.balance:,} days."
    )


def _support_allocated(n: SupportAllocated, tz: tzinfo) -> str:
    return (
        f"Support gave <b>{esc(n.channel)}</b> {days(n.days)} from your balance; it runs "
        f"until {date(n.until, tz)}. Balance: {n.balance:,} days."
    )


def _support_deleted(n: SupportDeleted) -> str:
    back = f"{days(n.returned)} came back" if n.returned else "no unused days to return"
    return (
        f"Support deleted channel <b>{esc(n.channel)}</b> ({back}). "
        f"Balance: {n.balance:,} days."
    )


def _invoice_issued(n: InvoiceIssued) -> str:
    period = f" for {esc(n.period)}" if n.period else ""
    pay = f"\nPay here: {esc(n.url)}" if n.url else "\n/invoices has it."
    return (
        f"New invoice #{n.order_id}{period}: {n.channels} channels × 30 = "
        f"{days(n.days)}, {esc(amount(n.amount, n.currency))}.{pay}"
    )


def _subscription_paid(n: SubscriptionPaid, tz: tzinfo) -> str:
    return (
        f"Subscription paid: <b>{esc(n.channel)}</b> got {days(n.days)}, "
        f"active until {date(n.until, tz)}."
    )


def _subscription_ended(n: SubscriptionEnded, tz: tzinfo) -> str:
    return (
        f"The subscription of <b>{esc(n.channel)}</b> ended. It runs until "
        f"{date(n.until, tz)}; then give it days with /allocate or /autorenew."
    )


def _low_balance_crossed(n: LowBalanceCrossed, tz: tzinfo) -> str:
    until = (
        f"At this rate the balance keeps your running channels going until "
        f"{date(n.runway, tz)}." if n.runway else "No channel is drawing on it now."
    )
    return (
        f"Low balance: {n.balance:,} days left, below your alert at "
        f"{days(n.threshold)}. {until}\nBuy days: /topup"
    )


def _channels_expiring(n: ChannelsExpiring, tz: tzinfo) -> str:
    head = (
        f"{n.count} channel(s) expired:" if n.stage == 0
        else f"{n.count} channel(s) expire within {days(n.stage)}:"
    )
    names = _names(n.channels, n.count, tz, detailed=True)
    return f"{head}\n{names}\nGive days: /allocate CHANNEL DAYS"


def _channels_renewed(n: ChannelsRenewed, tz: tzinfo) -> str:
    names = _names(n.channels, n.count, tz, detailed=False)
    return f"Auto-renew: {n.count} channel(s) extended by 30 days.\n{names}"


def _renew_fell_short(n: RenewFellShort, tz: tzinfo) -> str:
    return (
        f"Auto-renew could not extend {n.count} channel(s): they need "
        f"{days(n.needed)} and the balance has {n.balance:,}.\n"
        f"{_names(n.channels, n.count, tz, detailed=False)}\nBuy days: /topup"
    )


def _invoice_unpaid(n: InvoiceUnpaid) -> str:
    pay = f"\nPay here: {esc(n.url)}" if n.url else ""
    return (
        f"Reminder: invoice #{n.order_id} "
        f"({amount(n.amount, n.currency)}) is still unpaid.{pay}"
    )


def _invoice_overdue(n: InvoiceOverdue) -> str:
    return (
        f"Invoice #{n.order_id} of partner #{n.partner_id} "
        f"({amount(n.amount, n.currency)}) is overdue. /invoices"
    )


def _names(
    channels: Sequence[ListedChannel], count: int, tz: tzinfo, *, detailed: bool
) -> str:
    """The first SHOWN channels, one a line; `detailed` adds each one's end and auto-renew
    (the renewal notices list only auto-renew channels, so they name them alone)."""
    lines = []
    for c in channels[:SHOWN]:
        when = f" ({date(c.until, tz)})" if detailed and c.until else ""
        auto = ", auto-renew on" if detailed and c.auto_renew else ""
        lines.append(f"• <b>{esc(c.name)}</b>{when}{auto}")
    if count > len(lines):
        lines.append(f"… and {count - len(lines)} more: /channels")
    return "\n".join(lines)
