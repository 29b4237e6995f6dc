"""Billing: subscriptions started by Checkout, their periods, invoices and endings."""

from __future__ import annotations

import calendar
import copy
import datetime as dt

from .currencies import _fmt_amount
from .objects import StripeObjects
from .records import _DAY, JSON, _Ctx, _new_id, _SubState


def _add_months(ts: int, months: int) -> int:
    d = dt.datetime.fromtimestamp(ts, dt.UTC)
    month0 = d.month - 1 + months
    year, month = d.year + month0 // 12, month0 % 12 + 1
    day = min(d.day, calendar.monthrange(year, month)[1])
    return int(d.replace(year=year, month=month, day=day).timestamp())


def _period_boundary(anchor: int, interval: str, count: int, k: int) -> int:
    """Start of period ``k`` (0-based) of a subscription anchored at ``anchor``."""
    if interval == "month":
        return _add_months(anchor, count * k)
    if interval == "year":
        return _add_months(anchor, 12 * count * k)
    if interval == "week":
        return anchor + 7 * _DAY * count * k
    return anchor + _DAY * count * k


class StripeBilling(StripeObjects):
    """Subscriptions and their invoices (with PaymentIntent, Charge and InvoicePayment)."""

    def _start_subscription(
        self, session: JSON, customer: str | None, email: str, name: str | None
    ) -> None:
        sdata = self._pending_data[session["id"]]["subscription_data"]
        now = self.now()
        sub_id = _new_id("sub_")
        recurring = [li for li in self._session_items[session["id"]] if li["price"]["recurring"]]
        one_time = [li for li in self._session_items[session["id"]]
                    if not li["price"]["recurring"]]  # fmt: skip
        rec = recurring[0]["price"]["recurring"]
        state = _SubState(rec["interval"], rec["interval_count"], now)
        end = _period_boundary(now, state.interval, state.interval_count, 1)
        items = []
        for li in recurring:
            price = li["price"]
            items.append({
                "id": _new_id("si_", 14), "object": "subscription_item",
                "billing_thresholds": None, "created": now, "current_period_end": end,
                "current_period_start": now, "discounts": [], "metadata": {},
                "plan": {
                    "id": price["id"], "object": "plan", "active": False,
                    "amount": price["unit_amount"], "amount_decimal": price["unit_amount_decimal"],
                    "billing_scheme": "per_unit", "created": price["created"],
                    "currency": price["currency"], "interval": rec["interval"],
                    "interval_count": rec["interval_count"], "livemode": False, "metadata": {},
                    "meter": None, "nickname": None, "product": price["product"],
                    "tiers_mode": None, "transform_usage": None, "trial_period_days": None,
                    "usage_type": "licensed",
                },
                "price": copy.deepcopy(price), "quantity": li["quantity"],
                "subscription": sub_id, "tax_rates": [],
            })  # fmt: skip
        sub = self._store({
            "id": sub_id, "object": "subscription", "application": None,
            "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": now, "billing_cycle_anchor_config": None,
            "billing_mode": {"flexible": {"proration_discounts": "included"},
                             "type": "flexible", "updated_at": now},
            "billing_thresholds": None, "cancel_at": None, "cancel_at_period_end": False,
            "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "charge_automatically", "created": now,
            "currency": session["currency"], "customer": customer, "customer_account": None,
            "days_until_due": None, "default_payment_method": _new_id("pm_"),
            "default_source": None, "default_tax_rates": [],
            "description": sdata.get("description"), "discounts": [], "ended_at": None,
            "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            "items": {"object": "list", "data": items, "has_more": False,
                      "total_count": len(items),
                      "url": f"/v1/subscription_items?subscription={sub_id}"},
            "latest_invoice": None, "livemode": False, "managed_payments": None,
            "metadata": dict(sdata.get("metadata") or {}),
            "next_pending_invoice_item_invoice": None, "on_behalf_of": None,
            "pause_collection": None,
            "payment_settings": {"payment_method_options": None, "payment_method_types": None,
                                 "save_default_payment_method": "off"},
            "pending_invoice_item_interval": None, "pending_setup_intent": None,
            "pending_update": None, "presentment_details": None, "schedule": None,
            "start_date": now, "status": "active", "test_clock": None, "transfer_data": None,
            "trial_end": None,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": None,
        })  # fmt: skip
        self._subs[sub_id] = state
        lines = [(item, item["price"]["unit_amount"] * item["quantity"], now, end)
                 for item in items]  # fmt: skip
        lines += [(li, li["amount_total"], now, now) for li in one_time]
        invoice = self._invoice(
            sub, billing_reason="subscription_create", period_start=now, period_end=now,
            lines=lines, paid=True, email=email, name=name,
        )  # fmt: skip
        sub["latest_invoice"] = invoice["id"]
        session.update({"subscription": sub_id, "invoice": invoice["id"],
                        "payment_status": "paid"})  # fmt: skip
        self._event("customer.subscription.created", sub)
        self._invoice_events(invoice, True)

    def _invoice(
        self, sub: JSON, *, billing_reason: str, period_start: int, period_end: int,
        lines: list[tuple[JSON, int, int, int]], paid: bool, email: str | None = None,
        name: str | None = None,
    ) -> JSON:  # fmt: skip
        now = self.now()
        inv_id = _new_id("in_")
        state = self._subs[sub["id"]]
        state.invoice_seq += 1
        customer = self._objects.get(sub["customer"] or "", {})
        email = email or customer.get("email")
        name = name or customer.get("name")
        total = sum(amount for _, amount, _, _ in lines)
        line_objs = []
        for src, amount, start, end in lines:
            is_sub_item = src.get("object") == "subscription_item"
            price = src["price"]
            product = self._objects[price["product"]]
            line_objs.append({
                "id": _new_id("il_"), "object": "line_item", "amount": amount,
                "currency": sub["currency"],
                "description": f"{src['quantity']} × {product['name']}"
                + (f" (at {_fmt_amount(price['unit_amount'], price['currency'])} / "
                   f"{price['recurring']['interval']})" if is_sub_item else ""),
                "discount_amounts": [], "discountable": True, "discounts": [],
                "invoice": inv_id, "livemode": False,
                "metadata": dict(sub["metadata"]) if is_sub_item else {},
                "parent": {
                    "invoice_item_details": None if is_sub_item else {
                        "invoice_item": _new_id("ii_"), "proration": False,
                        "proration_details": {"credited_items": None},
                        "subscription": sub["id"],
                    },
                    "subscription_item_details": {
                        "invoice_item": None, "proration": False,
                        "proration_details": {"credited_items": None},
                        "subscription": sub["id"], "subscription_item": src["id"],
                    } if is_sub_item else None,
                    "type": "subscription_item_details" if is_sub_item
                    else "invoice_item_details",
                },
                "period": {"end": end, "start": start},
                "pretax_credit_amounts": [],
                "pricing": {"price_details": {"price": price["id"], "product": product["id"]},
                            "type": "price_details",
                            "unit_amount_decimal": price["unit_amount_decimal"]},
                "quantity": src["quantity"], "quantity_decimal": str(src["quantity"]),
                "subscription": sub["id"], "subtotal": amount, "taxes": [],
            })  # fmt: skip
        invoice = self._store({
            "id": inv_id, "object": "invoice", "account_country": "US",
            "account_name": self.account_name, "account_tax_ids": None,
            "amount_due": total, "amount_overpaid": 0,
            "amount_paid": total if paid else 0, "amount_paid_off_stripe": 0,
            "amount_remaining": 0 if paid else total, "amount_shipping": 0,
            "application": None, "attempt_count": 1 if total else 0, "attempted": True,
            "auto_advance": not paid,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None,
                              "provider": None, "status": None},
            "automatically_finalizes_at": None, "billing_reason": billing_reason,
            "collection_method": "charge_automatically", "confirmation_secret": None,
            "created": now, "currency": sub["currency"], "custom_fields": None,
            "customer": sub["customer"], "customer_account": None, "customer_address": None,
            "customer_email": email, "customer_name": name, "customer_phone": None,
            "customer_shipping": None, "customer_tax_exempt": "none", "customer_tax_ids": [],
            "default_payment_method": None, "default_source": None, "default_tax_rates": [],
            "description": None, "discounts": [], "due_date": None, "effective_at": now,
            "ending_balance": 0, "footer": None, "from_invoice": None,
            "hosted_invoice_url":
                f"https://invoice.stripe.com/i/{self.account_id}/test_{_new_id('', 40)}",
            "invoice_pdf":
                f"https://pay.stripe.com/invoice/{self.account_id}/test_{_new_id('', 40)}/pdf",
            "issuer": {"type": "self"}, "last_finalization_error": None,
            "latest_revision": None,
            "lines": {"object": "list", "data": line_objs, "has_more": False,
                      "total_count": len(line_objs), "url": f"/v1/invoices/{inv_id}/lines"},
            "livemode": False, "metadata": {},
            "next_payment_attempt": None if paid else now + 3 * _DAY,
            "number": f"{self._invoice_prefix}-{state.invoice_seq:04d}",
            "on_behalf_of": None,
            "parent": {
                "quote_details": None,
                "subscription_details": {
                    "metadata": dict(sub["metadata"]), "subscription": sub["id"],
                    "subscription_proration_date": None,
                },
                "type": "subscription_details",
            },
            "payment_settings": {"default_mandate": None, "payment_method_options": None,
                                 "payment_method_types": None},
            "period_end": period_end, "period_start": period_start,
            "post_payment_credit_notes_amount": 0, "pre_payment_credit_notes_amount": 0,
            "receipt_number": None, "rendering": None, "shipping_cost": None,
            "shipping_details": None, "starting_balance": 0, "statement_descriptor": None,
            "status": "paid" if paid else "open",
            "status_transitions": {"finalized_at": now, "marked_uncollectible_at": None,
                                   "paid_at": now if paid else None, "voided_at": None},
            "subtotal": total, "subtotal_excluding_tax": total, "test_clock": None,
            "threshold_reason": None, "total": total, "total_discount_amounts": [],
            "total_excluding_tax": total, "total_pretax_credit_amounts": [],
            "total_taxes": [], "webhooks_delivered_at": now,
        })  # fmt: skip
        if total > 0:
            pi = self._payment_intent(
                amount=total, currency=sub["currency"], customer=sub["customer"],
                metadata={}, description="Subscription creation"
                if billing_reason == "subscription_create" else "Subscription update",
                status="succeeded" if paid else "requires_payment_method",
            )  # fmt: skip
            charge = self._charge(pi, "succeeded" if paid else "failed", email, name)
            if not paid:
                pi["last_payment_error"] = {
                    "charge": charge["id"], "code": "card_declined",
                    "decline_code": "generic_decline", "message": "Your card was declined.",
                    "type": "card_error",
                }  # fmt: skip
            payment = self._store({
                "id": _new_id("inpay_"), "object": "invoice_payment",
                "amount_paid": total if paid else None, "amount_requested": total,
                "created": now, "currency": sub["currency"], "invoice": inv_id,
                "is_default": True, "livemode": False,
                "payment": {"type": "payment_intent", "payment_intent": pi["id"]},
                "status": "paid" if paid else "open",
                "status_transitions": {"canceled_at": None, "paid_at": now if paid else None},
            })  # fmt: skip
            self._invoice_payments[inv_id] = [payment["id"]]
            self._event("payment_intent.created", pi)
            if paid:
                self._event("charge.succeeded", charge)
                self._event("payment_intent.succeeded", pi)
            else:
                self._event("charge.failed", charge)
                self._event("payment_intent.payment_failed", pi)
        return invoice

    def _invoice_events(self, invoice: JSON, paid: bool) -> JSON:
        self._event("invoice.created", invoice)
        self._event("invoice.finalized", invoice)
        if not paid:
            return self._event("invoice.payment_failed", invoice)
        paid_event = self._event("invoice.paid", invoice)
        self._event("invoice.payment_succeeded", invoice)
        return paid_event

    def _end_subscription(
        self, sub: JSON, *, reason: str, comment: str | None = None,
        feedback: str | None = None, ctx: _Ctx | None = None,
    ) -> JSON:  # fmt: skip
        now = self.now()
        sub.update({"status": "canceled", "ended_at": now,
                    "canceled_at": sub["canceled_at"] or now})  # fmt: skip
        details = sub["cancellation_details"]
        details["reason"] = reason
        if comment is not None:
            details["comment"] = comment
        if feedback is not None:
            details["feedback"] = feedback
        return self._event("customer.subscription.deleted", sub, ctx=ctx)
