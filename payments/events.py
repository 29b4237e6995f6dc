"""Stripe objects (as plain JSON dicts) turned into what the use cases understand.

Webhook payloads are parsed with json after Stripe's own signature check, so everything
here reads plain dicts, never StripeObjects.
"""

from __future__ import annotations

from typing import Any

from core.model import SessionState
from core.payments import ChargeRefunded, PeriodPaid


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        return int(value)
    return None


def _id(value: Any) -> str | None:
    """An expandable field: an id string, or an object carrying its id."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def metadata(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def session_state(session: dict[str, Any], *, failed: bool = False) -> SessionState:
    meta = metadata(session)
    amount = session.get("amount_total")
    return SessionState(
        provider_ref=str(session.get("id", "")),
        status=str(session.get("status") or ""),
        payment_status=str(session.get("payment_status") or ""),
        amount_total=amount if isinstance(amount, int) else -1,
        currency=str(session.get("currency") or ""),
        order_id=_int(meta.get("order_id")),
        partner_id=_int(meta.get("partner_id")),
        payment_ref=_id(session.get("payment_intent")),
        subscription_ref=_id(session.get("subscription")),
        failed=failed,
    )


def subscription_period(invoice: dict[str, Any]) -> PeriodPaid | None:
    """The facts of a paid subscription invoice, or None if it is not one of ours.

    In this API version an invoice has no `subscription` field: the subscription and
    its metadata sit under parent.subscription_details.
    """
    parent = invoice.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, dict) else None
    if not isinstance(details, dict):
        return None
    meta = details.get("metadata") if isinstance(details.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    partner_id, channel_id = _int(meta.get("partner_id")), _int(meta.get("channel_id"))
    subscription = _id(details.get("subscription"))
    invoice_id = invoice.get("id")
    if partner_id is None or channel_id is None or subscription is None:
        return None
    if not isinstance(invoice_id, str):
        return None
    paid = invoice.get("amount_paid")
    return PeriodPaid(
        invoice_ref=invoice_id,
        subscription_ref=subscription,
        partner_id=partner_id,
        channel_id=channel_id,
        interval=str(meta.get("interval") or "month"),
        # Checked against the subscription's price in core: missing reads as no money.
        amount_paid=paid if isinstance(paid, int) and not isinstance(paid, bool) else -1,
        currency=str(invoice.get("currency") or ""),
        order_id=_int(meta.get("order_id")),
    )


def subscription_ref(subscription: dict[str, Any]) -> str | None:
    """The id of a deleted subscription (customer.subscription.deleted)."""
    ref = subscription.get("id")
    return ref if isinstance(ref, str) else None


def charge_refund(charge: dict[str, Any]) -> ChargeRefunded | None:
    """A refunded charge: it knows its PaymentIntent, which we stored on payment."""
    payment_ref, refunded = _id(charge.get("payment_intent")), charge.get("amount_refunded")
    if payment_ref is None or not isinstance(refunded, int) or refunded <= 0:
        return None
    return ChargeRefunded(payment_ref, refunded)
