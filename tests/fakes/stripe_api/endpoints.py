"""Endpoints: Checkout Sessions (create with Stripe's business rules, retrieve, list,
line items, expire), events, invoice payments, subscription update and cancel.
"""

from __future__ import annotations

import copy
import decimal
import fnmatch
import re

from .billing import StripeBilling
from .currencies import _CURRENCIES, MAX_CHARGE, MIN_CHARGE, _fmt_amount
from .errors import StripeHTTPError, _exclusive, _missing, _no_such, _unsupported
from .records import _DAY, JSON, _Ctx, _new_id
from .validation import _check_metadata


class StripeEndpoints(StripeBilling):
    """The API endpoints the fake implements, one ``_h_*`` method each (see ``server._ROUTES``)."""

    def _h_create_session(self, p: JSON, _: dict[str, str], ctx: _Ctx) -> JSON:
        mode = p.get("mode")
        if mode is None:
            raise _missing("mode")
        if mode == "setup":
            raise _unsupported("mode", "mode=setup")
        unmodelled = ("discounts", "optional_items", "shipping_options",
                      "shipping_address_collection")  # fmt: skip
        for name in unmodelled:
            if name in p:
                raise _unsupported(name)
        if p.get("automatic_tax", {}).get("enabled"):
            raise _unsupported("automatic_tax[enabled]")
        if p.get("invoice_creation", {}).get("enabled"):
            raise _unsupported("invoice_creation[enabled]")
        for name in ("trial_period_days", "trial_end", "billing_cycle_anchor", "trial_settings"):
            if name in p.get("subscription_data", {}):
                raise _unsupported(f"subscription_data[{name}]")
        if mode != "payment" and "payment_intent_data" in p:
            raise StripeHTTPError(
                f"You can not pass `payment_intent_data` in `{mode}` mode.",
                param="payment_intent_data",
            )
        if mode != "subscription" and "subscription_data" in p:
            raise StripeHTTPError(
                "You can only pass `subscription_data` in `subscription` mode.",
                param="subscription_data",
            )
        if mode != "payment" and "customer_creation" in p:
            raise StripeHTTPError(
                "`customer_creation` can only be used in `payment` mode.",
                param="customer_creation",
            )
        if "customer" in p and "customer_email" in p:
            raise _exclusive("", "customer", "customer_email")
        if "customer" in p:
            self._find(p["customer"], "customer", "customer", status=400)
        for path, meta in (
            ("metadata", p.get("metadata")),
            ("payment_intent_data[metadata]", p.get("payment_intent_data", {}).get("metadata")),
            ("subscription_data[metadata]", p.get("subscription_data", {}).get("metadata")),
        ):
            _check_metadata(meta, path)
        if len(p.get("client_reference_id", "")) > 200:
            raise StripeHTTPError(
                "client_reference_id must be at most 200 characters.",
                param="client_reference_id",
            )

        line_items: list[JSON] = p.get("line_items") or []
        if not line_items:
            raise _missing("line_items")
        currency: str | None = None
        total = 0
        intervals: set[tuple[str, int]] = set()
        prepared: list[tuple[JSON, int, int]] = []
        for i, li in enumerate(line_items):
            base = f"line_items[{i}]"
            if "price" in li and "price_data" in li:
                raise _exclusive(base, "price", "price_data")
            if "price" in li:
                raise _no_such("price", li["price"], f"{base}[price]", status=400)
            pd = li.get("price_data")
            if pd is None:
                raise _missing(f"{base}[price_data]")
            pbase = f"{base}[price_data]"
            if "unit_amount" in pd and "unit_amount_decimal" in pd:
                raise _exclusive(pbase, "unit_amount", "unit_amount_decimal")
            if "unit_amount" not in pd and "unit_amount_decimal" not in pd:
                raise _missing(f"{pbase}[unit_amount]")
            if "product" in pd and "product_data" in pd:
                raise _exclusive(pbase, "product", "product_data")
            if "product" in pd:
                raise _no_such("product", pd["product"], f"{pbase}[product]", status=400)
            if "product_data" not in pd:
                raise _missing(f"{pbase}[product_data]")
            unit = pd.get("unit_amount", pd.get("unit_amount_decimal"))
            if unit < 0:
                unit_name = "unit_amount" if "unit_amount" in pd else "unit_amount_decimal"
                raise StripeHTTPError(
                    "This value must be greater than or equal to 0.",
                    param=f"{pbase}[{unit_name}]",
                    code="parameter_invalid_integer",
                )
            if "quantity" not in li:
                raise _missing(f"{base}[quantity]")
            quantity = li["quantity"]
            if quantity < 1:
                raise StripeHTTPError(
                    "This value must be greater than or equal to 1.",
                    param=f"{base}[quantity]", code="parameter_invalid_integer",
                )  # fmt: skip
            cur = pd["currency"].lower()
            if not re.fullmatch(r"[a-z]{3}", cur) or cur not in _CURRENCIES:
                raise StripeHTTPError(
                    f"Invalid currency: {pd['currency']}. Stripe currently supports these "
                    f"currencies: {', '.join(sorted(_CURRENCIES))}",
                    param=f"{pbase}[currency]",
                )
            if currency is not None and cur != currency:
                raise StripeHTTPError(
                    "Checkout does not support multiple currencies on one Checkout Session; "
                    f"line items use both {currency} and {cur}.",
                    param=f"{pbase}[currency]",
                )
            currency = cur
            rec = pd.get("recurring")
            if rec is not None:
                if mode == "payment":
                    raise StripeHTTPError(
                        "You specified `payment` mode but passed a recurring price. Either "
                        "switch to `subscription` mode or use only one-time prices.",
                        param=f"{pbase}[recurring]",
                    )
                intervals.add((rec["interval"], rec.get("interval_count", 1)))
            amount = int(
                (decimal.Decimal(unit) * quantity).to_integral_value(decimal.ROUND_HALF_EVEN)
            )
            total += amount
            prepared.append((li, amount, quantity))
        assert currency is not None
        if mode == "subscription" and not intervals:
            raise StripeHTTPError(
                "You must provide at least one recurring price in `subscription` mode when "
                "using prices.",
                param="line_items",
            )
        if len(intervals) > 1:
            raise StripeHTTPError(
                "Checkout does not support multiple prices with different billing intervals.",
                param="line_items",
            )
        if mode == "payment":
            minimum = MIN_CHARGE.get(currency, 0)
            if total < minimum:
                raise StripeHTTPError(
                    "The Checkout Session's total amount due must add up to at least "
                    f"{_fmt_amount(minimum, currency)}",
                    code="amount_too_small",
                )
            if total > MAX_CHARGE:
                raise StripeHTTPError(
                    "The Checkout Session's total amount due must be no more than "
                    f"{_fmt_amount(MAX_CHARGE, currency)}",
                    code="amount_too_large",
                )
        now = self.now()
        expires_at = p.get("expires_at", now + _DAY)
        if expires_at < now + 1800:
            raise StripeHTTPError(
                "The `expires_at` timestamp must be at least 30 minutes from Checkout "
                "Session creation.",
                param="expires_at",
            )
        if expires_at > now + _DAY:
            raise StripeHTTPError(
                "The `expires_at` timestamp must be less than 24 hours from Checkout "
                "Session creation.",
                param="expires_at",
            )

        sid = _new_id("cs_test_", 58)
        items: list[JSON] = []
        for li, amount, quantity in prepared:
            price = self._price_from(li["price_data"])
            product = self._objects[price["product"]]
            items.append({
                "id": _new_id("li_"), "object": "item", "adjustable_quantity": None,
                "amount_discount": 0, "amount_subtotal": amount, "amount_tax": 0,
                "amount_total": amount, "currency": currency,
                "description": product["name"], "metadata": dict(li.get("metadata") or {}),
                "price": copy.deepcopy(price), "quantity": quantity,
            })  # fmt: skip
        self._session_items[sid] = items
        ui_mode = p.get("ui_mode", "hosted_page")
        hosted = ui_mode in ("hosted_page", "hosted")
        session: JSON = {
            "id": sid, "object": "checkout.session",
            "adaptive_pricing": {"enabled": bool(p.get("adaptive_pricing", {}).get("enabled"))},
            "after_expiration": None,
            "allow_promotion_codes": p.get("allow_promotion_codes"),
            "allowed_payment_method_types": p.get("allowed_payment_method_types"),
            "amount_subtotal": total, "amount_total": total,
            "automatic_tax": {"enabled": False, "liability": None, "provider": None,
                              "status": None},
            "billing_address_collection": p.get("billing_address_collection"),
            "branding_settings": None,
            "cancel_url": p.get("cancel_url"),
            "client_reference_id": p.get("client_reference_id"),
            "client_secret": None if hosted else f"{sid}_secret_{_new_id('', 30)}",
            "collected_information": None, "consent": None,
            "consent_collection": None, "created": now, "currency": currency,
            "currency_conversion": None, "custom_fields": [],
            "custom_text": {"after_submit": None, "shipping_address": None, "submit": None,
                            "terms_of_service_acceptance": None},
            "customer": p.get("customer"), "customer_account": None,
            "customer_creation": (p.get("customer_creation", "if_required")
                                  if mode == "payment" else None),
            "customer_details": None, "customer_email": p.get("customer_email"),
            "discounts": [], "excluded_payment_method_types": p.get(
                "excluded_payment_method_types"),
            "expires_at": expires_at,
            "integration_identifier": p.get("integration_identifier"),
            "invoice": None,
            "invoice_creation": ({"enabled": False, "invoice_data": {
                "account_tax_ids": None, "custom_fields": None, "description": None,
                "footer": None, "issuer": None, "metadata": {}, "rendering_options": None,
            }} if mode == "payment" else None),
            "livemode": False, "locale": p.get("locale"), "managed_payments": None,
            "metadata": dict(p.get("metadata") or {}), "mode": mode,
            "name_collection": None, "optional_items": None,
            "origin_context": p.get("origin_context"), "payment_intent": None,
            "payment_link": None,
            "payment_method_collection": p.get(
                "payment_method_collection", "always" if mode == "subscription"
                else "if_required"),
            "payment_method_configuration_details": None,
            "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
            "payment_method_types": list(p.get("allowed_payment_method_types", ["card"])),
            "payment_status": "unpaid", "permissions": None,
            "phone_number_collection": {"enabled": bool(
                p.get("phone_number_collection", {}).get("enabled"))},
            "presentment_details": None, "recovered_from": None,
            "redirect_on_completion": None if hosted else p.get(
                "redirect_on_completion", "always"),
            "return_url": p.get("return_url"), "saved_payment_method_options": None,
            "setup_intent": None, "shipping_address_collection": None,
            "shipping_cost": None, "shipping_options": [], "status": "open",
            "submit_type": p.get("submit_type"), "subscription": None,
            "success_url": p.get("success_url"),
            "tax_id_collection": {"enabled": bool(
                p.get("tax_id_collection", {}).get("enabled")), "required": "never"},
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": ui_mode,
            "url": (f"https://checkout.stripe.com/c/pay/{sid}#fid{_new_id('', 40)}"
                    if hosted else None),
            "wallet_options": None,
        }  # fmt: skip
        self._store(session)
        self._pending_data[sid] = {
            "payment_intent_data": p.get("payment_intent_data", {}),
            "subscription_data": p.get("subscription_data", {}),
        }
        return session

    def _h_retrieve_session(self, p: JSON, a: dict[str, str], ctx: _Ctx) -> JSON:
        return self._find(a["id"], "checkout.session", "session")

    def _h_session_line_items(self, p: JSON, a: dict[str, str], ctx: _Ctx) -> JSON:
        self._find(a["id"], "checkout.session", "session")
        items = self._session_items.get(a["id"], [])
        limit = p.get("limit", 10)
        start = 0
        if "starting_after" in p:
            ids = [i["id"] for i in items]
            if p["starting_after"] not in ids:
                raise _no_such("line_item", p["starting_after"], "starting_after", status=400)
            start = ids.index(p["starting_after"]) + 1
        page = items[start : start + limit]
        return {
            "object": "list", "data": copy.deepcopy(page),
            "has_more": start + limit < len(items),
            "url": f"/v1/checkout/sessions/{a['id']}/line_items",
        }  # fmt: skip

    def _h_list_sessions(self, p: JSON, a: dict[str, str], ctx: _Ctx) -> JSON:
        sessions = [o for o in self._objects.values() if o["object"] == "checkout.session"]
        for name in ("status", "customer", "payment_intent", "subscription", "payment_link"):
            if name in p:
                sessions = [s for s in sessions if s.get(name) == p[name]]
        if "customer_details" in p:
            email = p["customer_details"]["email"]
            sessions = [
                s for s in sessions if (s.get("customer_details") or {}).get("email") == email
            ]
        sessions = [s for s in sessions if self._created_ok(s["created"], p.get("created"))]
        return self._list("/v1/checkout/sessions", sessions, p)

    def _h_expire_session(self, p: JSON, a: dict[str, str], ctx: _Ctx) -> JSON:
        session = self._find(a["id"], "checkout.session", "session")
        if session["status"] != "open":
            raise StripeHTTPError(
                f"Only Checkout Sessions with a status in [\"open\"] can be expired. This "
                f"Checkout Session has a status of \"{session['status']}\".",
                param="session",
            )
        self._do_expire(session, ctx)
        return session

    def _h_list_events(self, p: JSON, a: dict[str, str], ctx: _Ctx) -> JSON:
        events = list(self._events)
        if "type" in p:
            pattern = p["type"]
            events = [e for e in events if fnmatch.fnmatchcase(e["type"], pattern)]
        if "types" in p:
            events = [e for e in events if e["type"] in p["types"]]
        events = [e for e in events if self._created_ok(e["created"], p.get("created"))]
        return self._list("/v1/events", events, p)

    def _h_retrieve_event(self, p: JSON, a: dict[str, str], ctx: _Ctx) -> JSON:
        for event in self._events:
            if event["id"] == a["id"]:
                return event
        raise _no_such("event", a["id"], "id")

    def _h_list_invoice_payments(self, p: JSON, a: dict[str, str], ctx: _Ctx) -> JSON:
        pays = [o for o in self._objects.values() if o["object"] == "invoice_payment"]
        if "invoice" in p:
            pays = [x for x in pays if x["invoice"] == p["invoice"]]
        if "status" in p:
            pays = [x for x in pays if x["status"] == p["status"]]
        if "payment" in p:
            want = p["payment"]
            pays = [
                x for x in pays
                if x["payment"]["type"] == want["type"]
                and ("payment_intent" not in want
                     or x["payment"].get("payment_intent") == want["payment_intent"])
            ]  # fmt: skip
        pays = [x for x in pays if self._created_ok(x["created"], p.get("created"))]
        return self._list("/v1/invoice_payments", pays, p)

    def _h_cancel_subscription(self, p: JSON, a: dict[str, str], ctx: _Ctx) -> JSON:
        sub = self._find(a["id"], "subscription", "subscription_exposed_id")
        if sub["status"] == "canceled":
            raise StripeHTTPError(
                "A canceled subscription can only update its cancellation_details and "
                "metadata.", param="subscription_exposed_id",
            )  # fmt: skip
        if p.get("invoice_now") or p.get("prorate"):
            raise _unsupported("invoice_now" if p.get("invoice_now") else "prorate")
        details = p.get("cancellation_details", {})
        self._end_subscription(
            sub, reason="cancellation_requested", comment=details.get("comment") or None,
            feedback=details.get("feedback") or None, ctx=ctx,
        )  # fmt: skip
        return sub

    def _h_update_subscription(self, p: JSON, a: dict[str, str], ctx: _Ctx) -> JSON:
        sub = self._find(a["id"], "subscription", "subscription_exposed_id")
        supported = {"metadata", "cancel_at_period_end", "cancel_at", "cancellation_details",
                     "description", "proration_behavior"}  # fmt: skip
        for name in p:
            if name not in supported:
                raise _unsupported(name)
        if sub["status"] == "canceled" and set(p) - {"metadata", "cancellation_details"}:
            raise StripeHTTPError(
                "A canceled subscription can only update its cancellation_details and "
                "metadata.",
            )
        if "cancel_at_period_end" in p and "cancel_at" in p:
            raise _exclusive("", "cancel_at", "cancel_at_period_end")
        _check_metadata(p.get("metadata"), "metadata")
        before = copy.deepcopy(sub)
        if "metadata" in p:
            if p["metadata"] == "":
                sub["metadata"] = {}
            else:
                for k, v in p["metadata"].items():
                    if v == "":
                        sub["metadata"].pop(k, None)
                    else:
                        sub["metadata"][k] = v
        if "description" in p:
            sub["description"] = p["description"] or None
        period_end = sub["items"]["data"][0]["current_period_end"]
        if "cancel_at_period_end" in p:
            sub["cancel_at_period_end"] = p["cancel_at_period_end"]
            sub["cancel_at"] = period_end if p["cancel_at_period_end"] else None
        if "cancel_at" in p:
            value = p["cancel_at"]
            if value in ("max_period_end", "min_period_end"):
                value = period_end
            sub["cancel_at"] = value or None
            sub["cancel_at_period_end"] = False
        if "cancellation_details" in p:
            cd = p["cancellation_details"]
            for k in ("comment", "feedback"):
                if k in cd:
                    sub["cancellation_details"][k] = cd[k] or None
        if sub["cancel_at"] is not None and before["cancel_at"] is None:
            sub["cancellation_details"]["reason"] = "cancellation_requested"
            sub["canceled_at"] = self.now()
        elif sub["cancel_at"] is None and sub["status"] != "canceled":
            sub["cancellation_details"]["reason"] = None
            sub["canceled_at"] = None
        previous = {k: before[k] for k in sub if sub[k] != before[k]}
        if previous:
            self._event("customer.subscription.updated", sub, previous=previous, ctx=ctx)
        return sub

    def _do_expire(self, session: JSON, ctx: _Ctx | None) -> JSON:
        session.update({"status": "expired", "url": None})
        return self._event("checkout.session.expired", session, ctx=ctx)
