"""Payments: money becomes days (rules 3, 6, 10, 11).

An order is recorded before any payment link exists; a link that cannot be made leaves
no payable order behind (a top-up is cancelled; an invoice keeps waiting for its link).
Fulfilment is one idempotent function, `apply_session`, used by the webhook and by
reconciliation alike: an order is credited once, whoever reports the payment first.

A provider event (a Stripe webhook) is handled by one `PaymentService` method per kind,
each one transaction: the duplicate check, the effect and the record of the event commit
together, so a crash can never leave an effect without its record or the reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from core import money, notices, orders
from core.channels import find_channel
from core.days import MAX_DAYS_PER_OPERATION
from core.errors import (
    InvalidInput,
    NothingToInvoice,
    OrderNotPayable,
    PaymentMismatch,
    PaymentUnavailable,
    SubscriptionExists,
)
from core.event_results import CLOSES, CREDITS, EventResult
from core.model import (
    CheckoutMode,
    CheckoutRequest,
    OrderKind,
    OrderStatus,
    PaymentOrder,
    SessionState,
)
from core.partners import get_partner
from core.policy import BillingPolicy
from core.ports import Clock, Ledger, PaymentGateway, Store
from core.subscriptions import (
    SUBSCRIPTION_DAYS,
    PeriodPaid,
    annual_price,
    apply_period,
    apply_subscription_session,
    end_subscription,
    existing_subscription,
)

# How long an order may wait for its payment link before reconcile takes it for one a
# crash left linkless (Stripe's own timeout and retries take well under this).
LINK_GRACE = timedelta(minutes=5)


def _invoice_label(order: PaymentOrder) -> str:
    """What the payer reads on Stripe's page, the same on every attempt at a link."""
    label = f"invoice {order.period}" if order.period else f"invoice {order.id}"
    return f"{label}: {order.channels} channels x 30 days"


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """One event the payment provider delivered; handled once per id."""

    id: str
    kind: str  # e.g. "invoice.paid"

    @property
    def actor(self) -> str:
        return f"stripe:{self.id}"


@dataclass(frozen=True, slots=True)
class EventHandled:
    """What handling a provider event did; for a duplicate, what its first delivery did."""

    result: EventResult
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class ChargeRefunded:
    """Money given back for a payment (Stripe charge.refunded), in minor units so far."""

    payment_ref: str  # the PaymentIntent id stored with the paid order
    refunded_amount: int


@dataclass(frozen=True, slots=True)
class Reconciled:
    checked: int = 0
    credited: int = 0
    closed: int = 0
    failed: int = 0
    relinked: int = 0  # open invoices given a new payment link


def apply_session(
    ledger: Ledger, now: datetime, state: SessionState, actor: str
) -> EventResult:
    """Bring the order behind a checkout session in line with what the provider says.

    Never raises for a session that is not ours: it is reported and ignored.
    """
    order = ledger.find_order_by_ref(state.provider_ref)
    if order is None:
        return EventResult.UNKNOWN  # not a session we made (or not for this deployment)
    if state.partner_id is not None and state.partner_id != order.partner_id:
        return EventResult.FOREIGN
    if state.order_id is not None and state.order_id != order.id:
        return EventResult.FOREIGN
    if order.kind is OrderKind.SUBSCRIPTION:
        return apply_subscription_session(ledger, now, order, state, actor)
    if state.failed:
        orders.close_order(ledger, now, order.id, OrderStatus.FAILED, actor)
        return EventResult.FAILED
    if state.status == "expired" and order.kind is OrderKind.INVOICE:
        if order.status is not OrderStatus.OPEN:
            return EventResult.ALREADY
        # An invoice stays payable for weeks (reminders, overdue: rule 6), a Checkout
        # Session for 24 h at most: only the lapsed link goes; a new one is made for it.
        ledger.update_order(replace(order, provider_ref=None, url=None))
        ledger.record_event(
            now, actor, "order.link_expired", order.partner_id,
            f"order={order.id} session={state.provider_ref}",
        )
        return EventResult.LINK_EXPIRED
    if state.status == "expired":
        closed = orders.close_order(ledger, now, order.id, OrderStatus.EXPIRED, actor)
        return EventResult.EXPIRED if closed.status is OrderStatus.EXPIRED else EventResult.ALREADY
    if state.status != "complete" or state.payment_status != "paid":
        return EventResult.PENDING
    if order.status is OrderStatus.PAID:
        return EventResult.ALREADY
    try:
        orders.credit_paid_order(
            ledger, now, order.id, state.amount_total, state.currency, actor,
            payment_ref=state.payment_ref,
        )
    except PaymentMismatch:
        orders.report_mismatch(
            ledger, now, order, state.provider_ref, state.amount_total, state.currency
        )
        return EventResult.MISMATCH
    except OrderNotPayable:
        return EventResult.ALREADY
    return EventResult.CREDITED


def apply_refund(
    ledger: Ledger, now: datetime, refund: ChargeRefunded, actor: str
) -> EventResult:
    """Rule 11: a refund of a top-up or invoice takes its days back (maybe below zero)."""
    order = ledger.find_order_by_payment(refund.payment_ref)
    if order is None or order.kind is OrderKind.SUBSCRIPTION:
        return EventResult.UNKNOWN
    try:
        done = orders.refund_order(ledger, now, order.id, refund.refunded_amount, actor)
    except OrderNotPayable:
        return EventResult.UNKNOWN
    return EventResult.REFUNDED if done.days and not done.replayed else EventResult.ALREADY


class PaymentService:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        gateway: PaymentGateway,
        *,
        policy: BillingPolicy | None = None,
        session_ttl: timedelta = timedelta(hours=1),
        annual_discount_percent: int = 15,
    ) -> None:
        self.store = store
        self.clock = clock
        self.gateway = gateway
        self.policy = policy or BillingPolicy()
        self.session_ttl = session_ttl
        self.annual_discount_percent = annual_discount_percent

    async def _link(
        self, order: PaymentOrder, mode: CheckoutMode, description: str,
        interval: str | None = None,
    ) -> PaymentOrder:
        request = CheckoutRequest(
            order, mode, description, self.clock.now() + self.session_ttl, interval
        )
        link = await self.gateway.create_checkout(request)

        def attach(ledger: Ledger) -> PaymentOrder:
            current = orders.get_order(ledger, order.id)
            if current.provider_ref is not None:
                # Another attempt (a concurrent run) linked it first: keep that link, the
                # one people may already have; this session is never shown and expires.
                return current
            return orders.attach_payment_link(ledger, order.id, link.provider_ref, link.url)

        return await self.store.write(attach)

    async def _cancel(self, order: PaymentOrder) -> None:
        now = self.clock.now()
        await self.store.write(lambda lg: orders.close_order(
            lg, now, order.id, OrderStatus.CANCELED, "system:payments"
        ))

    async def start_topup(self, partner_id: int, days: int, actor: str) -> PaymentOrder:
        """Rule 3: quote D days and make the payment link."""
        now = self.clock.now()
        order = await self.store.write(lambda lg: orders.open_order(
            lg, now, partner_id, OrderKind.TOPUP, days, actor,
            max_days=self.policy.max_topup_days,
        ))
        try:
            return await self._link(order, CheckoutMode.PAYMENT, f"{days:,} days")
        except PaymentUnavailable:
            await self._cancel(order)  # no half-made order may look payable
            raise

    async def issue_invoice(
        self,
        partner_id: int,
        actor: str,
        *,
        channel_count: int | None = None,
        period: str | None = None,
    ) -> PaymentOrder:
        """Rule 6: N channels x 30 days, monthly (one per period) or on request.

        Without channel_count, N is the partner's live channels. If the link cannot be
        made now, the invoice stays open without one and a later run makes it.
        """
        order, _ = await self.invoice_for_period(
            partner_id, actor, channel_count=channel_count, period=period
        )
        return order

    async def invoice_for_period(
        self,
        partner_id: int,
        actor: str,
        *,
        channel_count: int | None = None,
        period: str | None = None,
    ) -> tuple[PaymentOrder, bool]:
        """issue_invoice, also telling whether this call made the invoice (True) or found
        the one already made for the period (False)."""
        now = self.clock.now()

        def work(ledger: Ledger) -> tuple[PaymentOrder, bool]:
            get_partner(ledger, partner_id)
            if period is not None:
                existing = ledger.find_invoice(partner_id, period)
                if existing is not None:
                    return existing, False
            count = (
                len(ledger.list_channels(partner_id)) if channel_count is None else channel_count
            )
            if count <= 0:
                raise NothingToInvoice(partner_id)
            if count > MAX_DAYS_PER_OPERATION:
                raise InvalidInput("channels", f"must be at most {MAX_DAYS_PER_OPERATION:,}")
            order = orders.open_order(
                ledger, now, partner_id, OrderKind.INVOICE, count * money.DAYS_PER_MONTH, actor,
                period=period, channels=count,
            )
            return order, True

        order, new = await self.store.write(work)
        linked = False
        if order.url is None and order.status is OrderStatus.OPEN:
            try:
                order = await self._link(order, CheckoutMode.PAYMENT, _invoice_label(order))
            except PaymentUnavailable:
                if new:
                    await self._announce_invoice(order)
                raise
            linked = True
        if new or linked:
            await self._announce_invoice(order)
        return order, new

    async def _announce_invoice(self, order: PaymentOrder) -> None:
        """Tell the members of an invoice: once with its link, and beforehand once without
        if Stripe failed to make it. Keyed so that runs racing, or a run that died between
        the order and its link followed by one that links it, tell each once."""
        now = self.clock.now()
        key = f"invoice:{order.id}" + ("" if order.url is not None else ":unlinked")
        assert order.channels is not None  # an invoice is sized by its channel count
        issued = notices.InvoiceIssued(
            order_id=order.id, days=order.days, channels=order.channels,
            amount=order.amount, currency=order.currency, period=order.period, url=order.url,
        )
        await self.store.write(
            lambda lg: notices.notify(lg, now, key, order.partner_id, issued)
        )

    async def ensure_link(self, order: PaymentOrder) -> PaymentOrder:
        """An open invoice whose link could not be made before: try again."""
        if order.url is not None or order.status is not OrderStatus.OPEN:
            return order
        linked = await self._link(order, CheckoutMode.PAYMENT, _invoice_label(order))
        await self._announce_invoice(linked)
        return linked

    async def start_subscription(
        self, partner_id: int, channel_name: str, interval: str, actor: str
    ) -> PaymentOrder:
        """Rule 10: a Stripe subscription paying one channel, monthly or annual."""
        if interval not in SUBSCRIPTION_DAYS:
            raise InvalidInput("period", "must be monthly or annual")
        now = self.clock.now()

        def work(ledger: Ledger) -> PaymentOrder:
            partner = get_partner(ledger, partner_id)
            channel = find_channel(ledger, partner_id, channel_name)
            existing_subscription(ledger, channel, self.session_ttl)
            price = (
                partner.monthly_price
                if interval == "month"
                else annual_price(partner.monthly_price, self.annual_discount_percent)
            )
            return orders.open_order(
                ledger, now, partner_id, OrderKind.SUBSCRIPTION, SUBSCRIPTION_DAYS[interval],
                actor, channel_id=channel.id, amount=price,
            )

        try:
            order = await self.store.write(work)
        except SubscriptionExists as exc:
            if not await self._lapsed(exc, now):
                raise
            order = await self.store.write(work)  # that checkout is closed now
        try:
            return await self._link(
                order, CheckoutMode.SUBSCRIPTION, f"channel {channel_name}", interval
            )
        except PaymentUnavailable:
            await self._cancel(order)
            raise

    async def _lapsed(self, exists: SubscriptionExists, now: datetime) -> bool:
        """A pending subscription past its link's lifetime whose `expired` webhook has not
        come (yet): ask the provider, as reconcile would, rather than refuse with a link
        that no longer works. True if the order got closed."""
        if not exists.pending or exists.order_id is None or exists.expires_at is None:
            return False
        if exists.expires_at > now:
            return False
        order_id = exists.order_id
        order = await self.store.read(lambda lg: lg.get_order(order_id))
        if order is None or order.provider_ref is None:
            return False
        try:
            state = await self.gateway.session_state(order.provider_ref)
        except PaymentUnavailable:
            return False  # the refusal stands; reconcile will ask again
        return await self.apply(state, "stripe:subscribe") in CLOSES

    async def apply(self, state: SessionState, actor: str) -> EventResult:
        """A session's state asked of the provider (reconcile): no provider event to record."""
        now = self.clock.now()
        return await self.store.write(lambda lg: apply_session(lg, now, state, actor))

    # One method per kind of provider event. Each is one write transaction: the duplicate
    # check, the effect and the record of the event commit together or not at all.

    async def session_changed(self, event: ProviderEvent, state: SessionState) -> EventHandled:
        """checkout.session.completed / async_payment_succeeded / _failed / expired."""
        return await self._once(event, lambda lg, now: apply_session(lg, now, state, event.actor))

    async def period_paid(self, event: ProviderEvent, period: PeriodPaid) -> EventHandled:
        """invoice.paid for a subscription of ours."""
        return await self._once(event, lambda lg, now: apply_period(lg, now, period, event.actor))

    async def subscription_deleted(
        self, event: ProviderEvent, subscription_ref: str
    ) -> EventHandled:
        """customer.subscription.deleted."""
        return await self._once(
            event, lambda lg, now: end_subscription(lg, now, subscription_ref, event.actor)
        )

    async def charge_refunded(self, event: ProviderEvent, refund: ChargeRefunded) -> EventHandled:
        """charge.refunded."""
        return await self._once(event, lambda lg, now: apply_refund(lg, now, refund, event.actor))

    async def event_ignored(self, event: ProviderEvent) -> EventHandled:
        """An event of a handled kind about something that is not ours to act on: recorded,
        so that its redeliveries answer as duplicates."""
        return await self._once(event, lambda lg, now: EventResult.IGNORED)

    async def _once(
        self, event: ProviderEvent, effect: Callable[[Ledger, datetime], EventResult]
    ) -> EventHandled:
        now = self.clock.now()

        def work(ledger: Ledger) -> EventHandled:
            seen = ledger.find_provider_event(event.id)
            if seen is not None:
                return EventHandled(EventResult(seen), duplicate=True)
            result = effect(ledger, now)
            ledger.record_provider_event(event.id, event.kind, now, result.value)
            return EventHandled(result)

        return await self.store.write(work)

    async def reconcile(self, older_than: timedelta, actor: str = "stripe:reconcile") -> Reconciled:
        """Ask the provider about orders still open after a while (lost webhooks).

        `older_than` 0 (a hand run) asks about every open order; one still without a link
        is left alone for LINK_GRACE even then: its link may be being made right now."""
        now = self.clock.now()
        cutoff = now - older_than
        linkless_cutoff = now - max(older_than, LINK_GRACE)
        pending = await self.store.read(lambda lg: [
            o for o in lg.list_orders(statuses=(OrderStatus.OPEN,))
            if o.created_at <= (cutoff if o.provider_ref is not None else linkless_cutoff)
        ])
        checked = credited = closed = failed = relinked = 0
        for found in pending:
            order = found
            if order.provider_ref is not None:
                try:
                    state = await self.gateway.session_state(order.provider_ref)
                except PaymentUnavailable:
                    failed += 1
                    continue
                checked += 1
                result = await self.apply(state, actor)
                credited += result in CREDITS
                closed += result in CLOSES
                if result is not EventResult.LINK_EXPIRED:
                    continue
                order = replace(order, provider_ref=None, url=None)
            if order.kind is not OrderKind.INVOICE:
                await self._cancel(order)  # a crash between the order and its link
                closed += 1
                continue
            try:  # an invoice whose link failed or lapsed: a new one
                await self.ensure_link(order)
            except PaymentUnavailable:
                failed += 1
            else:
                relinked += 1
        return Reconciled(checked, credited, closed, failed, relinked)


# What the rest of the code takes from here; the subscription rules and the event results
# live in their own modules (core.subscriptions, core.event_results).
__all__ = [
    "CLOSES",
    "CREDITS",
    "SUBSCRIPTION_DAYS",
    "ChargeRefunded",
    "EventHandled",
    "EventResult",
    "PaymentService",
    "PeriodPaid",
    "ProviderEvent",
    "Reconciled",
    "annual_price",
    "apply_period",
    "apply_refund",
    "apply_session",
    "end_subscription",
]
