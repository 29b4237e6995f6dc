"""Objects: the fake's state, storage, lists, ``expand``, and the resources it builds
(customers, prices, PaymentIntents, Charges).
"""

from __future__ import annotations

import asyncio
import copy
import secrets
import string
import threading
import time
from collections.abc import Callable
from typing import Any

import stripe

from .errors import StripeHTTPError, _exclusive, _no_such
from .records import API_VERSION, JSON, RecordedRequest, _Ctx, _Fault, _new_id, _Response, _SubState


class StripeObjects:
    """The fake's state and the Stripe resources it stores, lists, expands and builds.

    The bottom layer of :class:`~tests.fakes.stripe_api.FakeStripe`; every other layer
    (billing, endpoints, server, controls) works on the state set up here.
    """

    def __init__(
        self,
        api_key: str = "sk_test_fake_partnerbot_0123456789",
        *,
        account_id: str = "acct_1FakePartnerbot00",
        account_name: str = "Partnerbot Test",
    ) -> None:
        self.api_key = api_key
        self.account_id = account_id
        self.account_name = account_name
        self._lock = threading.RLock()
        self._objects: dict[str, JSON] = {}
        self._seq: dict[str, int] = {}
        self._next_seq = 0
        self._session_items: dict[str, list[JSON]] = {}
        self._charge_refunds: dict[str, list[str]] = {}
        self._invoice_payments: dict[str, list[str]] = {}
        self._subs: dict[str, _SubState] = {}
        self._pending_data: dict[str, JSON] = {}  # per session: what completion needs
        self._events: list[JSON] = []
        self._idempotency: dict[tuple[str, str], tuple[str, str, str, _Response]] = {}
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._clock_offset = 0
        self._invoice_prefix = "".join(secrets.choice(string.ascii_uppercase) for _ in range(8))
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self._port: int | None = None
        self._http_clients: list[stripe.HTTPXClient] = []
        self.internal_errors: list[Exception] = []
        """Exceptions raised inside the fake's handlers (answered as 500 api_error)."""

    # --------------------------------------------------------------- clock

    def now(self) -> int:
        """The fake's clock (real time plus :meth:`advance_time` offsets)."""
        return int(time.time()) + self._clock_offset

    # ------------------------------------------------------------ storage

    def _store(self, obj: JSON) -> JSON:
        self._objects[obj["id"]] = obj
        self._seq[obj["id"]] = self._next_seq
        self._next_seq += 1
        return obj

    def _find(self, obj_id: str, object_name: str, param: str, status: int = 404) -> JSON:
        obj = self._objects.get(obj_id)
        if obj is None or obj.get("object") != object_name:
            raise _no_such(object_name, obj_id, param, status)
        return obj

    def _event(
        self, event_type: str, obj: JSON, *, previous: JSON | None = None,
        ctx: _Ctx | None = None,
    ) -> JSON:  # fmt: skip
        data: JSON = {"object": copy.deepcopy(obj)}
        if previous is not None:
            data["previous_attributes"] = copy.deepcopy(previous)
        event: JSON = {
            "id": _new_id("evt_"),
            "object": "event",
            "api_version": API_VERSION,
            "created": self.now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {
                "id": ctx.request_id if ctx else None,
                "idempotency_key": ctx.idempotency_key if ctx else None,
            },
            "type": event_type,
        }
        self._events.append(event)
        self._seq[event["id"]] = self._next_seq
        self._next_seq += 1
        return copy.deepcopy(event)

    def _list(self, url: str, items: list[JSON], params: JSON) -> JSON:
        limit = params.get("limit", 10)
        if not 1 <= limit <= 100:
            raise StripeHTTPError(
                f"Invalid limit: must be between 1 and 100 (got {limit})", param="limit",
                code="parameter_invalid_integer",
            )  # fmt: skip
        after, before = params.get("starting_after"), params.get("ending_before")
        if after and before:
            raise _exclusive("", "starting_after", "ending_before")

        def key(o: JSON) -> tuple[int, int]:
            return (int(o.get("created", 0)), self._seq.get(o["id"], 0))

        ordered = sorted(items, key=key, reverse=True)
        cursor_id = after or before
        if cursor_id:
            cursor = self._objects.get(cursor_id) or next(
                (e for e in self._events if e["id"] == cursor_id), None
            )
            if cursor is None:
                raise _no_such(
                    items[0]["object"] if items else "object", cursor_id,
                    "starting_after" if after else "ending_before", status=400,
                )  # fmt: skip
            ckey = key(cursor)
            if after:
                ordered = [o for o in ordered if key(o) < ckey]
            else:
                newer = [o for o in ordered if key(o) > ckey]
                page = newer[-limit:]
                return {
                    "object": "list", "data": [copy.deepcopy(o) for o in page],
                    "has_more": len(newer) > limit, "url": url,
                }  # fmt: skip
        page = ordered[:limit]
        return {
            "object": "list",
            "data": [copy.deepcopy(o) for o in page],
            "has_more": len(ordered) > limit,
            "url": url,
        }

    @staticmethod
    def _created_ok(created: int, flt: Any) -> bool:
        if flt is None:
            return True
        if isinstance(flt, int):
            return created == flt
        ops: dict[str, Callable[[int, int], bool]] = {
            "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b,
            "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b,
        }  # fmt: skip
        return all(ops[k](created, int(v)) for k, v in flt.items())

    # ------------------------------------------------------------- expand

    def _includable(self, obj: JSON, name: str) -> JSON | None:
        kind, oid = obj.get("object"), obj.get("id", "")
        if kind == "checkout.session" and name == "line_items":
            items = self._session_items.get(oid, [])
            return {
                "object": "list", "data": copy.deepcopy(items), "has_more": False,
                "url": f"/v1/checkout/sessions/{oid}/line_items",
            }  # fmt: skip
        if kind == "charge" and name == "refunds":
            refunds = [self._objects[r] for r in self._charge_refunds.get(oid, [])]
            return {
                "object": "list", "data": copy.deepcopy(refunds[::-1]), "has_more": False,
                "url": f"/v1/charges/{oid}/refunds",
            }  # fmt: skip
        if kind == "invoice" and name == "payments":
            pays = [self._objects[p] for p in self._invoice_payments.get(oid, [])]
            return {
                "object": "list", "data": copy.deepcopy(pays), "has_more": False,
                "url": f"/v1/invoices/{oid}/payments",
            }  # fmt: skip
        return None

    def _expand(self, result: JSON, paths: list[str]) -> JSON:
        result = copy.deepcopy(result)
        for path in paths:
            if len(path.split(".")) > 4:
                raise StripeHTTPError(
                    f"You cannot expand more than 4 levels of a property. Property: {path}",
                    param="expand",
                )
            self._expand_at(result, path.split("."), path)
        return result

    def _expand_at(self, obj: Any, segs: list[str], full: str) -> None:
        if not isinstance(obj, dict):
            raise StripeHTTPError(f"This property cannot be expanded ({full}).", param="expand")
        if obj.get("object") == "list" and segs[0] == "data":
            for item in obj["data"]:
                if len(segs) > 1:
                    self._expand_at(item, segs[1:], full)
            return
        name = segs[0]
        included = self._includable(obj, name)
        if included is not None:
            obj[name] = included
        elif name not in obj:
            raise StripeHTTPError(f"This property cannot be expanded ({full}).", param="expand")
        else:
            value = obj[name]
            if isinstance(value, str) and value in self._objects:
                obj[name] = copy.deepcopy(self._objects[value])
            elif value is None or (isinstance(value, dict) and ("id" in value or len(segs) > 1)):
                pass  # null expandable field, already-expanded object, or a path through a hash
            else:
                raise StripeHTTPError(
                    f"This property cannot be expanded ({full}).", param="expand"
                )
        if len(segs) > 1 and obj[name] is not None:
            self._expand_at(obj[name], segs[1:], full)

    # ================================================== object construction

    def _customer(self, email: str | None, name: str | None) -> JSON:
        now = self.now()
        prefix = "".join(secrets.choice(string.ascii_uppercase) for _ in range(8))
        return self._store({
            "id": _new_id("cus_", 14), "object": "customer", "address": None, "balance": 0,
            "business_name": None, "created": now, "currency": None,
            "customer_account": None, "default_source": None, "delinquent": False,
            "description": None, "discount": None, "email": email, "individual_name": None,
            "invoice_prefix": prefix,
            "invoice_settings": {"custom_fields": None, "default_payment_method": None,
                                 "footer": None, "rendering_options": None},
            "livemode": False, "metadata": {}, "name": name, "next_invoice_sequence": 1,
            "phone": None, "preferred_locales": [], "shipping": None, "tax_exempt": "none",
            "test_clock": None,
        })  # fmt: skip

    def _price_from(self, pd: JSON) -> JSON:
        now = self.now()
        pdata = pd["product_data"]
        product = self._store({
            "id": _new_id("prod_", 14), "object": "product", "active": False,
            "created": now, "default_price": None, "description": pdata.get("description"),
            "images": list(pdata.get("images", [])), "livemode": False,
            "marketing_features": [], "metadata": dict(pdata.get("metadata") or {}),
            "name": pdata["name"], "package_dimensions": None, "shippable": None,
            "statement_descriptor": None, "tax_code": pdata.get("tax_code"),
            "type": "service", "unit_label": pdata.get("unit_label"), "updated": now,
            "url": None,
        })  # fmt: skip
        unit: int = pd["unit_amount"] if "unit_amount" in pd else int(pd["unit_amount_decimal"])
        unit_decimal = pd.get("unit_amount_decimal", unit)
        rec = pd.get("recurring")
        return self._store({
            "id": _new_id("price_"), "object": "price", "active": False,
            "billing_scheme": "per_unit", "created": now, "currency": pd["currency"].lower(),
            "custom_unit_amount": None, "livemode": False, "lookup_key": None,
            "metadata": {}, "nickname": None, "product": product["id"],
            "recurring": None if rec is None else {
                "interval": rec["interval"], "interval_count": rec.get("interval_count", 1),
                "meter": None, "trial_period_days": None, "usage_type": "licensed",
            },
            "tax_behavior": pd.get("tax_behavior", "unspecified"), "tiers_mode": None,
            "transform_quantity": None, "type": "one_time" if rec is None else "recurring",
            "unit_amount": unit, "unit_amount_decimal": str(unit_decimal),
        })  # fmt: skip

    def _payment_intent(
        self, *, amount: int, currency: str, customer: str | None, metadata: JSON,
        description: str | None, status: str, receipt_email: str | None = None,
    ) -> JSON:  # fmt: skip
        pid = _new_id("pi_")
        return self._store({
            "id": pid, "object": "payment_intent", "allowed_payment_method_types": None,
            "amount": amount, "amount_capturable": 0, "amount_details": {"tip": {}},
            "amount_received": amount if status == "succeeded" else 0,
            "application": None, "application_fee_amount": None,
            "automatic_payment_methods": None, "canceled_at": None,
            "cancellation_reason": None, "capture_method": "automatic_async",
            "client_secret": f"{pid}_secret_{_new_id('', 25)}",
            "confirmation_method": "automatic", "created": self.now(), "currency": currency,
            "customer": customer, "customer_account": None, "description": description,
            "excluded_payment_method_types": None, "last_payment_error": None,
            "latest_charge": None, "livemode": False, "managed_payments": None,
            "metadata": dict(metadata), "next_action": None, "on_behalf_of": None,
            "payment_details": None, "payment_method": _new_id("pm_"),
            "payment_method_configuration_details": None,
            "payment_method_options": {"card": {"installments": None, "mandate_options": None,
                                                "network": None,
                                                "request_three_d_secure": "automatic"}},
            "payment_method_types": ["card"], "presentment_details": None,
            "processing": None, "receipt_email": receipt_email, "review": None,
            "setup_future_usage": None, "shipping": None, "source": None,
            "statement_descriptor": None, "statement_descriptor_suffix": None,
            "status": status, "transfer_data": None, "transfer_group": None,
        })  # fmt: skip

    def _charge(self, pi: JSON, status: str, email: str | None, name: str | None) -> JSON:
        charge = self._store({
            "id": _new_id("ch_"), "object": "charge", "amount": pi["amount"],
            "amount_captured": pi["amount"] if status == "succeeded" else 0,
            "amount_refunded": 0, "application": None, "application_fee": None,
            "application_fee_amount": None, "balance_transaction": _new_id("txn_"),
            "billing_details": {
                "address": {"city": None, "country": "US", "line1": None, "line2": None,
                            "postal_code": "94107", "state": None},
                "email": email, "name": name, "phone": None, "tax_id": None,
            },
            "calculated_statement_descriptor": self.account_name.upper()[:22],
            "captured": status == "succeeded", "created": self.now(),
            "currency": pi["currency"], "customer": pi["customer"],
            "description": pi["description"], "disputed": False,
            "failure_balance_transaction": None,
            "failure_code": "card_declined" if status == "failed" else None,
            "failure_message": "Your card was declined." if status == "failed" else None,
            "fraud_details": {}, "livemode": False, "metadata": dict(pi["metadata"]),
            "on_behalf_of": None,
            "outcome": {
                "advice_code": None, "network_advice_code": None,
                "network_decline_code": None, "network_status": "approved_by_network"
                if status != "failed" else "declined_by_network",
                "reason": None, "risk_level": "normal", "risk_score": 20,
                "seller_message": "Payment complete." if status != "failed"
                else "The bank did not return any further details with this decline.",
                "type": "authorized" if status != "failed" else "issuer_declined",
            },
            "paid": status == "succeeded", "payment_intent": pi["id"],
            "payment_method": pi["payment_method"],
            "payment_method_details": {"type": "card", "card": {
                "brand": "visa", "country": "US", "exp_month": 12, "exp_year": 2034,
                "funding": "credit", "last4": "4242", "network": "visa",
            }},
            "presentment_details": None, "radar_options": {},
            "receipt_email": pi["receipt_email"], "receipt_number": None,
            "receipt_url": f"https://pay.stripe.com/receipts/payment/{_new_id('', 40)}",
            "refunded": False, "review": None, "shipping": None, "source": None,
            "source_transfer": None, "statement_descriptor": None,
            "statement_descriptor_suffix": None, "status": status, "transfer_data": None,
            "transfer_group": None,
        })  # fmt: skip
        pi["latest_charge"] = charge["id"]
        return charge
