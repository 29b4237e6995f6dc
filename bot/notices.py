"""How each queued notice reads (core queues facts; texts live here)."""

from __future__ import annotations

from datetime import datetime, tzinfo

from bot.render import date, days, esc
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
    return f"Notice: {esc(notice.kind)}"
