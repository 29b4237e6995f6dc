"""Per-channel Stripe subscriptions (rule 10): at most one per channel, pending or
active; each paid period extends its channel, only when paid at the subscription's price.

Synchronous use cases inside one transaction, used by core.payments' PaymentService.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from core import channels, notices, orders
from core.days import utc
from core.errors import SubscriptionExists
from core.event_results import EventResult
from core.model import (
    Channel,
    ChannelBilling,
    OrderKind,
    OrderStatus,
    PaymentOrder,
    SessionState,
)
from core.ports import Ledger

SUBSCRIPTION_DAYS = {"month": 30, "year": 365}


def annual_price(monthly_price: int, discount_percent: int) -> int:
    """12 months less the discount, rounded half up to a minor unit."""
    gross = 12 * monthly_price * (100 - discount_percent)
    return (2 * gross + 100) // 200


@dataclass(frozen=True, slots=True)
class PeriodPaid:
    """A subscription's invoice paid (Stripe invoice.paid): its metadata and its money."""

    invoice_ref: str
    subscription_ref: str
    partner_id: int
    channel_id: int
    interval: str  # "month" or "year"
    amount_paid: int  # minor units (Stripe's amount_paid); must be the subscription's price
    currency: str
    order_id: int | None = None  # the subscription's order, from the metadata we set


def existing_subscription(ledger: Ledger, channel: Channel, session_ttl: timedelta) -> None:
    """At most one subscription per channel, pending or active (rule 10): raise
    SubscriptionExists naming the one there is. Checked inside the write transaction that
    would open the next order (writes are serialized, and the database refuses a second
    open subscription order of a channel besides), so two /subscribe at once cannot
    both pass."""
    if channel.subscription_ref is not None:
        paid = ledger.find_order_by_payment(channel.subscription_ref)
        interval = "month"
        since = channel.created_at
        if paid is not None:
            interval = "year" if paid.days == SUBSCRIPTION_DAYS["year"] else "month"
            since = paid.paid_at or paid.created_at
        raise SubscriptionExists(channel.name, interval, since, pending=False)
    pending = next((
        o for o in ledger.list_orders(channel.partner_id, statuses=(OrderStatus.OPEN,))
        if o.kind is OrderKind.SUBSCRIPTION and o.channel_id == channel.id
    ), None)
    if pending is not None:
        raise SubscriptionExists(
            channel.name,
            "year" if pending.days == SUBSCRIPTION_DAYS["year"] else "month",
            pending.created_at, pending=True, url=pending.url,
            # The link is made right after the order, with this lifetime.
            expires_at=pending.created_at + session_ttl, order_id=pending.id,
        )


def apply_subscription_session(
    ledger: Ledger, now: datetime, order: PaymentOrder, state: SessionState, actor: str
) -> EventResult:
    if state.status == "expired":
        orders.close_order(ledger, now, order.id, OrderStatus.EXPIRED, actor)
        return EventResult.EXPIRED
    if state.status != "complete" or state.subscription_ref is None:
        return EventResult.PENDING
    if order.status is OrderStatus.PAID:
        return EventResult.ALREADY
    if state.amount_total != order.amount or state.currency.lower() != order.currency:
        # Not the subscription that was ordered (its first period is the session's total):
        # it does not become the channel's; support checks it in Stripe. The order is
        # closed so that the channel is free for a correct one.
        orders.close_order(ledger, now, order.id, OrderStatus.FAILED, actor)
        orders.report_mismatch(
            ledger, now, order, state.provider_ref, state.amount_total, state.currency
        )
        return EventResult.MISMATCH
    # The days of each period arrive with its paid Stripe invoice (apply_period); here
    # the channel only learns which subscription pays for it.
    ledger.update_order(replace(order, status=OrderStatus.PAID, paid_at=utc(now),
                                payment_ref=state.subscription_ref))
    channel = ledger.get_channel(order.channel_id) if order.channel_id else None
    if channel is not None and channel.live:
        ledger.update_channel(replace(
            channel, billing=ChannelBilling.SUBSCRIPTION,
            subscription_ref=state.subscription_ref,
        ))
    ledger.record_event(
        now, actor, "subscription.started", order.partner_id,
        f"order={order.id} subscription={state.subscription_ref}",
    )
    return EventResult.SUBSCRIBED


def apply_period(ledger: Ledger, now: datetime, period: PeriodPaid, actor: str) -> EventResult:
    """A paid subscription period (Stripe invoice.paid) extends its channel once."""
    days = SUBSCRIPTION_DAYS.get(period.interval)
    channel_id, partner_id = period.channel_id, period.partner_id
    subscription_ref, invoice_ref = period.subscription_ref, period.invoice_ref
    channel = ledger.get_channel(channel_id)
    if days is None or channel is None or channel.partner_id != partner_id:
        return EventResult.UNKNOWN
    if not channel.live:
        # Deleted while Stripe still bills its subscription: a deleted channel holds no
        # days (ledger invariant), so nothing is credited; the trace is for support.
        ledger.record_event(
            now, actor, "subscription.period_for_deleted_channel", partner_id,
            f"channel={channel_id} subscription={subscription_ref} invoice={invoice_ref}",
        )
        return EventResult.CHANNEL_DELETED
    order = _subscription_order(ledger, period)
    if order is None:
        # No subscription of ours pays this channel: no price to check it against.
        ledger.record_event(
            now, actor, "subscription.period_without_order", partner_id,
            f"channel={channel_id} subscription={subscription_ref} invoice={invoice_ref}",
        )
        return EventResult.UNKNOWN
    if period.amount_paid != order.amount or period.currency.lower() != order.currency:
        # A $0 invoice, a coupon, another price or currency: not the price the channel's
        # days were sold at. Nothing is credited; support is told, once per invoice.
        notices.notify(
            ledger, now, f"period-mismatch:{invoice_ref}", None, notices.PeriodMismatched(
                partner_id=partner_id, channel=channel.name, invoice_ref=invoice_ref,
                expected_amount=order.amount, expected_currency=order.currency,
                paid_amount=period.amount_paid, paid_currency=period.currency.lower(),
            ),
        )
        ledger.record_event(
            now, actor, "subscription.period_mismatch", partner_id,
            f"channel={channel_id} subscription={subscription_ref} invoice={invoice_ref} "
            f"paid={period.amount_paid} {period.currency.lower()}",
        )
        return EventResult.MISMATCH
    if channel.subscription_ref is None:
        ledger.update_channel(replace(
            channel, billing=ChannelBilling.SUBSCRIPTION, subscription_ref=subscription_ref
        ))
    paid = channels.credit_subscription_period(ledger, now, channel_id, days, invoice_ref, actor)
    return EventResult.ALREADY if paid.replayed else EventResult.EXTENDED


def _subscription_order(ledger: Ledger, period: PeriodPaid) -> PaymentOrder | None:
    """The order a subscription was made from, which holds its price: named by the
    metadata, else the one its checkout completed, else the channel's newest one open or
    paid (an invoice may arrive before its checkout's event)."""
    def ours(order: PaymentOrder | None) -> bool:
        return (
            order is not None and order.kind is OrderKind.SUBSCRIPTION
            and order.partner_id == period.partner_id and order.channel_id == period.channel_id
        )

    if period.order_id is not None:
        named = ledger.get_order(period.order_id)
        return named if ours(named) else None
    by_payment = ledger.find_order_by_payment(period.subscription_ref)
    if ours(by_payment):
        return by_payment
    candidates = ledger.list_orders(
        period.partner_id, statuses=(OrderStatus.OPEN, OrderStatus.PAID)
    )
    return next((o for o in candidates if ours(o)), None)  # newest first


def end_subscription(
    ledger: Ledger, now: datetime, subscription_ref: str, actor: str
) -> EventResult:
    """Rule 10: the channel keeps running until active_until, then needs days again."""
    channel = ledger.find_channel_by_subscription(subscription_ref)
    if channel is None:
        return EventResult.UNKNOWN
    ledger.update_channel(replace(channel, billing=ChannelBilling.BALANCE, subscription_ref=None))
    ledger.record_event(
        now, actor, "subscription.ended", channel.partner_id,
        f"channel={channel.id} subscription={subscription_ref}",
    )
    notices.notify(
        ledger, now, f"sub-ended:{subscription_ref}", channel.partner_id,
        notices.SubscriptionEnded(channel=channel.name, until=channel.active_until),
    )
    return EventResult.ENDED
