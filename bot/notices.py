"""How each queued notice reads (core queues facts; texts live here)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo

from bot.render import amount, date, days, esc
from core import notices
from core.model import Notice


def _when(value: object, tz: tzinfo) -> str:
    if not isinstance(value, str):
        return "-"
    return date(datetime.fromisoformat(value), tz)


def render(notice: Notice, tz: tzinfo) -> str:
    f = notices.facts(notice.payload)

    def n(key: str) -> int:
        value = f.get(key)
        return value if isinstance(value, int) else 0
    match notice.kind:
        case notices.DAYS_CREDITED:
            return f"{days(n('days'))} credited; balance {n('balance'):,} days."
        case notices.DAYS_REFUNDED:
            return (
                f"A refund took {days(n('days'))} back (order #{n('order_id')}); "
                f"balance {n('balance'):,} days."
            )
        case notices.REFUND_OVERDRAWN:
            return (
                f"Support: a refund of order #{n('order_id')} took {days(n('days'))} back "
                f"from partner #{n('partner_id')}, whose balance is now {n('balance'):,} days "
                "(below zero). /account " + str(n("partner_id"))
            )
        case notices.PAYMENT_MISMATCH:
            return (
                f"Support: order #{n('order_id')} of partner #{n('partner_id')} was paid "
                f"{esc(str(f.get('paid')))} but the quote was {esc(str(f.get('expected')))}. "
                "No days were credited; please check it in Stripe."
            )
        case notices.INVOICE_ISSUED:
            period = f" for {esc(str(f['period']))}" if f.get("period") else ""
            pay = f"\nPay here: {esc(str(f['url']))}" if f.get("url") else "\n/invoices has it."
            return (
                f"New invoice #{n('order_id')}{period}: {n('channels')} channels × 30 = "
                f"{days(n('days'))}, {esc(str(f.get('amount')))}.{pay}"
            )
        case notices.SUBSCRIPTION_PAID:
            return (
                f"Subscription paid: <b>{esc(str(f.get('channel')))}</b> got {days(n('days'))}, "
                f"active until {_when(f.get('until'), tz)}."
            )
        case notices.SUBSCRIPTION_ENDED:
            return (
                f"The subscription of <b>{esc(str(f.get('channel')))}</b> ended. It runs until "
                f"{_when(f.get('until'), tz)}; then give it days with /allocate or /autorenew."
            )
    return _scheduled(notice.kind, f, n, tz) or f"Notice: {esc(notice.kind)}"


SHOWN = 20  # channels named in one message; the rest are counted


def _names(f: dict[str, str | int | None], tz: tzinfo, *, dated: bool = False) -> str:
    rows = [r for r in str(f.get("channels") or "").split("\n") if r]
    lines = []
    for row in rows[:SHOWN]:
        name, _, rest = row.partition("|")
        until, _, renew = rest.partition("|")
        when = f" ({_when(until, tz)})" if dated and until else ""
        auto = ", auto-renew on" if renew == "1" else ""
        lines.append(f"• <b>{esc(name)}</b>{when}{auto}")
    count = f.get("count")
    extra = count - len(lines) if isinstance(count, int) else 0
    if extra > 0:
        lines.append(f"… and {extra} more: /channels")
    return "\n".join(lines)


def _scheduled(
    kind: str, f: dict[str, str | int | None], n: Callable[[str], int], tz: tzinfo
) -> str | None:
    match kind:
        case notices.LOW_BALANCE:
            runway = f.get("runway")
            until = (
                f"At this rate the balance keeps your running channels going until "
                f"{_when(runway, tz)}." if runway else "No channel is drawing on it now."
            )
            return (
                f"Low balance: {n('balance'):,} days left, below your alert at "
                f"{days(n('threshold'))}. {until}\nBuy days: /topup"
            )
        case notices.EXPIRY:
            stage = n("stage")
            head = (
                f"{n('count')} channel(s) expired:" if stage == 0
                else f"{n('count')} channel(s) expire within {days(stage)}:"
            )
            return f"{head}\n{_names(f, tz, dated=True)}\nGive days: /allocate CHANNEL DAYS"
        case notices.RENEWED:
            return f"Auto-renew: {n('count')} channel(s) extended by 30 days.\n{_names(f, tz)}"
        case notices.RENEW_SHORT:
            return (
                f"Auto-renew could not extend {n('count')} channel(s): they need "
                f"{days(n('needed'))} and the balance has {n('balance'):,}.\n"
                f"{_names(f, tz)}\nBuy days: /topup"
            )
        case notices.INVOICE_REMINDER:
            pay = f"\nPay here: {esc(str(f['url']))}" if f.get("url") else ""
            return (
                f"Reminder: invoice #{n('order_id')} "
                f"({amount(n('amount'), str(f.get('currency')))}) is still unpaid.{pay}"
            )
        case notices.INVOICE_OVERDUE:
            return (
                f"Invoice #{n('order_id')} of partner #{n('partner_id')} "
                f"({amount(n('amount'), str(f.get('currency')))}) is overdue. /invoices"
            )
    return None
