"""Use cases that bring days in or take them out: payment orders (rules 3 and 6),
support grants and removals, and refunds (rule 11). Synchronous, in one transaction."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from core import money, notices
from core.days import MAX_DAYS_PER_OPERATION, check_days, utc
from core.errors import (
    InsufficientBalance,
    InvalidInput,
    OrderNotFound,
    OrderNotPayable,
    PaymentMismatch,
)
from core.idempotency import once
from core.ledger import move
from core.model import (
    GRANTS,
    PURCHASES,
    OrderKind,
    OrderStatus,
    PaymentOrder,
    TransferKind,
    partner_account,
)
from core.names import clean_reason
from core.outcomes import DaysGranted, OrderCredited, OrderRefunded
from core.partners import get_partner
from core.ports import Ledger

CLOSED_UNPAID = (OrderStatus.EXPIRED, OrderStatus.FAILED, OrderStatus.CANCELED)


def grant_days(
    ledger: Ledger,
    now: datetime,
    partner_id: int,
    days: int,
    reason: str,
    actor: str,
    key: str,
) -> DaysGranted:
    """Support grants (days > 0) or removes (days < 0) days, with a reason (rule 11)."""

    def body() -> DaysGranted:
        if days == 0:
            raise InvalidInput("days", "must not be 0")
        check_days(abs(days))
        why = clean_reason(reason)
        get_partner(ledger, partner_id)
        account = partner_account(partner_id)
        balance = ledger.balance(account)
        if days > 0:
            transfer = move(
                ledger, key=key, debit=GRANTS, credit=account, days=days,
                kind=TransferKind.GRANT, actor=actor, at=now, reason=why,
            )
        else:
            if -days > balance:
                raise InsufficientBalance(needed=-days, available=balance)
            transfer = move(
                ledger, key=key, debit=account, credit=GRANTS, days=-days,
                kind=TransferKind.REMOVAL, actor=actor, at=now, reason=why,
            )
        # Members did not make this change: they are told, with support's reason (the
        # one who made it has the answer in the chat, and is not a member).
        notices.notify(
            ledger, now, f"corrected:{key}", partner_id,
            notices.BalanceCorrected(days=days, balance=balance + days, reason=why),
        )
        return DaysGranted(partner_id, days, balance + days, why, transfer.id)

    return once(ledger, key, now, DaysGranted, body)


def open_order(
    ledger: Ledger,
    now: datetime,
    partner_id: int,
    kind: OrderKind,
    days: int,
    actor: str,
    *,
    period: str | None = None,
    channels: int | None = None,
    channel_id: int | None = None,
    max_days: int = MAX_DAYS_PER_OPERATION,
    amount: int | None = None,
) -> PaymentOrder:
    """Record an order at the partner's agreed price, before any payment link exists.

    A monthly invoice is unique per partner and period: asking again returns it.
    """
    partner = get_partner(ledger, partner_id)
    if period is not None:
        existing = ledger.find_invoice(partner_id, period)
        if existing is not None:
            return existing
    check_days(days)
    if days > max_days:
        raise InvalidInput("days", f"must be at most {max_days:,}")
    if amount is None:
        amount = money.amount_for_days(days, partner.monthly_price)
    minimum = money.MINIMUM_CHARGE[partner.currency]
    if amount < minimum:
        least = money.minimum_days(partner.monthly_price, partner.currency)
        raise InvalidInput(
            "days",
            f"must be at least {least} (the smallest payment is "
            f"{money.format_amount(minimum, partner.currency)})",
        )
    if amount > money.MAX_AMOUNT:
        raise InvalidInput("days", "make the amount too large for one payment")
    order = ledger.add_order(
        partner_id, kind, days, amount, partner.currency, utc(now), actor,
        period=period, channels=channels, channel_id=channel_id,
    )
    ledger.record_event(
        now, actor, "order.opened", partner_id,
        f"order={order.id} kind={kind.value} days={days} amount={amount}",
    )
    return order


def get_order(ledger: Ledger, order_id: int) -> PaymentOrder:
    order = ledger.get_order(order_id)
    if order is None:
        raise OrderNotFound(order_id)
    return order


def attach_payment_link(
    ledger: Ledger, order_id: int, provider_ref: str, url: str
) -> PaymentOrder:
    order = get_order(ledger, order_id)
    updated = replace(order, provider_ref=provider_ref, url=url)
    ledger.update_order(updated)
    return updated


def close_order(
    ledger: Ledger, now: datetime, order_id: int, status: OrderStatus, actor: str
) -> PaymentOrder:
    """Expire, fail or cancel an open order; a paid or closed order stays as it is."""
    if status not in CLOSED_UNPAID:
        raise ValueError(f"{status} does not close an order")
    order = get_order(ledger, order_id)
    if order.status is not OrderStatus.OPEN:
        return order
    updated = replace(order, status=status, closed_at=utc(now))
    ledger.update_order(updated)
    ledger.record_event(
        now, actor, f"order.{status.value}", order.partner_id, f"order={order.id}"
    )
    return updated


def credit_paid_order(
    ledger: Ledger,
    now: datetime,
    order_id: int,
    paid_amount: int,
    paid_currency: str,
    actor: str,
    *,
    payment_ref: str | None = None,
) -> OrderCredited:
    """Credit a paid order's days exactly once, if the payment matches the quote.

    Keyed by the order, not by the event that reports it, so a webhook delivered three
    times and a reconciliation of the same payment credit once between them. A payment
    that arrives after the order was closed unpaid is still credited: the money is real.
    """

    def body() -> OrderCredited:
        order = get_order(ledger, order_id)
        if order.kind is OrderKind.SUBSCRIPTION or order.status is OrderStatus.PAID:
            raise OrderNotPayable(order.id, order.status.value)
        if paid_amount != order.amount or paid_currency.lower() != order.currency:
            raise PaymentMismatch(
                order.id, order.amount, order.currency, paid_amount, paid_currency.lower()
            )
        transfer = move(
            ledger, key=f"order:{order.id}:credit", debit=PURCHASES,
            credit=partner_account(order.partner_id), days=order.days,
            kind=TransferKind.PURCHASE, actor=actor, at=now, order_id=order.id,
            reason=f"{order.kind.value} {order.id}",
        )
        ledger.update_order(
            replace(order, status=OrderStatus.PAID, paid_at=utc(now), payment_ref=payment_ref)
        )
        balance = ledger.balance(partner_account(order.partner_id))
        notices.notify(
            ledger, now, f"credited:{order.id}", order.partner_id, notices.DaysCredited(
                order_id=order.id, order_kind=order.kind, days=order.days, balance=balance,
            ),
        )
        return OrderCredited(order.partner_id, order.id, order.days, balance, transfer.id)

    return once(ledger, f"order:{order_id}:credit", now, OrderCredited, body)


def refund_order(
    ledger: Ledger,
    now: datetime,
    order_id: int,
    refunded_amount: int,
    actor: str,
) -> OrderRefunded:
    """Take back the days a refund paid for (rule 11).

    `refunded_amount` is the total refunded so far (Stripe's amount_refunded), so each
    refund event is idempotent by itself. The balance may go negative: the only way.
    """
    order = get_order(ledger, order_id)
    if order.status is not OrderStatus.PAID:
        raise OrderNotPayable(order.id, order.status.value)
    if refunded_amount <= 0:
        raise InvalidInput("refunded amount", "must be positive")
    share = min(refunded_amount, order.amount)
    # Days in proportion to the money, half up; a full refund takes every day back.
    due = (2 * order.days * share + order.amount) // (2 * order.amount)
    key = f"order:{order.id}:refund:{due}"

    def body() -> OrderRefunded:
        take = due - order.refunded_days
        account = partner_account(order.partner_id)
        if take <= 0:
            return OrderRefunded(order.partner_id, order.id, 0, ledger.balance(account), None)
        transfer = move(
            ledger, key=key, debit=account, credit=PURCHASES, days=take,
            kind=TransferKind.REFUND, actor=actor, at=now, order_id=order.id,
            reason=f"refund of {order.kind.value} {order.id}",
        )
        ledger.update_order(replace(order, refunded_days=due))
        balance = ledger.balance(account)
        notices.notify(
            ledger, now, f"refunded:{order.id}:{due}", order.partner_id,
            notices.DaysRefunded(order_id=order.id, days=take, balance=balance),
        )
        if balance < 0:
            notices.notify(
                ledger, now, f"overdrawn:{order.id}:{due}", None, notices.RefundOverdrawn(
                    partner_id=order.partner_id, order_id=order.id, days=take, balance=balance,
                ),
            )
        return OrderRefunded(order.partner_id, order.id, take, balance, transfer.id)

    return once(ledger, key, now, OrderRefunded, body)


def report_mismatch(
    ledger: Ledger, now: datetime, order: PaymentOrder, ref: str, paid: int, currency: str
) -> None:
    """Support is told: `order` was paid `paid` `currency` (as the provider reported it),
    not its quote; nothing was credited."""
    notices.notify(
        ledger, now, f"mismatch:{order.id}:{ref}", None,
        notices.PaymentMismatched(
            partner_id=order.partner_id, order_id=order.id,
            expected_amount=order.amount, expected_currency=order.currency,
            paid_amount=paid, paid_currency=currency,
        ),
    )
