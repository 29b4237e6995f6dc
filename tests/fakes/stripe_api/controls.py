"""The test-side API: inspection, fault injection, and the controls that play the
customer's part (complete, settle, expire, renew, cancel, refund, deliver webhooks).
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Mapping
from typing import Any, Literal

import aiohttp

from .billing import _period_boundary
from .records import JSON, RecordedRequest, _Fault, _new_id
from .server import StripeServer
from .webhooks import sign_webhook


class FakeStripe(StripeServer):
    """Fake Stripe API on 127.0.0.1 plus controls that play the customer's part.

    Use as ``async with FakeStripe() as fake`` or ``with FakeStripe() as fake``.
    All controls are thread-safe and return the main Stripe event dict they cause;
    every event is also appended to :attr:`events`.
    """

    # ----------------------------------------------------------- inspection
    def advance_time(self, seconds: int) -> int:
        """Move the fake clock forward (like a test clock); returns the new time."""
        with self._lock:
            self._clock_offset += seconds
            return self.now()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose path matches ``path`` (fnmatch pattern)."""
        with self._lock:
            return [
                r
                for r in self._requests
                if fnmatch.fnmatchcase(r.path, path)
                and (method is None or r.method == method.upper())
            ]

    def request_count(self, path: str = "*", method: str | None = None) -> int:
        return len(self.requests_to(path, method))

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    @property
    def api_versions_seen(self) -> set[str | None]:
        with self._lock:
            return {r.stripe_version for r in self._requests}

    @property
    def events(self) -> list[JSON]:
        """Every event "sent" so far, oldest first (deep copies)."""
        with self._lock:
            return copy.deepcopy(self._events)

    def events_of_type(self, event_type: str) -> list[JSON]:
        return [e for e in self.events if e["type"] == event_type]

    def get(self, object_id: str) -> JSON:
        """A deep copy of any stored object (session, pi, ch, sub, in, cus, ...)."""
        with self._lock:
            if object_id not in self._objects:
                raise KeyError(object_id)
            return copy.deepcopy(self._objects[object_id])

    # ------------------------------------------------------------- faults

    def fail_next(
        self, count: int = 1, *, path: str | None = None, method: str | None = None,
        status: int = 500,
    ) -> None:  # fmt: skip
        """The next ``count`` matching requests get ``status`` with a Stripe error body
        (``api_error``; ``rate_limit`` for 429) and are not executed. ``path`` is an
        fnmatch pattern such as ``"/v1/checkout/sessions*"``."""
        with self._lock:
            self._faults.append(_Fault("error", count, path, method, status=status))

    def hang_next(
        self, seconds: float, count: int = 1, *, path: str | None = None,
        method: str | None = None, process: Literal["never", "before", "after"] = "never",
    ) -> None:  # fmt: skip
        """Delay the next ``count`` matching responses by ``seconds``.

        ``process``: ``"never"`` -> the request is not executed and the connection is
        dropped after the delay; ``"before"`` -> executed first, response delayed (a
        lost response: retry with the same Idempotency-Key replays it); ``"after"``
        -> a slow request, executed after the delay even if the client gave up.
        """
        with self._lock:
            self._faults.append(
                _Fault("hang", count, path, method, seconds=seconds, process=process)
            )

    def drop_next(
        self, count: int = 1, *, path: str | None = None, method: str | None = None,
        process: bool = False,
    ) -> None:  # fmt: skip
        """Close the connection without a response (``process=True``: after executing)."""
        with self._lock:
            self._faults.append(
                _Fault("drop", count, path, method, process="before" if process else "never")
            )

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # ======================================================== test controls

    def complete_session(
        self, session_id: str, paid: bool = True, *,
        customer_email: str = "partner@example.com", customer_name: str | None = "Test Partner",
    ) -> JSON:  # fmt: skip
        """The customer finishes Checkout. Returns ``checkout.session.completed``.

        ``mode=payment``: creates the PaymentIntent and Charge (metadata from
        ``payment_intent_data[metadata]`` only; session metadata does not reach them);
        ``paid=False`` leaves ``payment_status="unpaid"`` with the PaymentIntent
        ``processing`` (delayed notification method) until :meth:`async_payment_result`.
        ``mode=subscription``: creates customer, subscription (items with
        ``current_period_start/end``), its first paid invoice, PaymentIntent and Charge.
        """
        with self._lock:
            session = self._find(session_id, "checkout.session", "session")
            if session["status"] != "open":
                raise ValueError(f"{session_id} is {session['status']}, not open")
            if session["mode"] == "subscription" and not paid:
                raise NotImplementedError("async payment methods for subscriptions")
            pending = self._pending_data[session_id]
            email = session["customer_email"] or customer_email
            customer: str | None = session["customer"]
            if customer is None and (
                session["mode"] == "subscription" or session["customer_creation"] == "always"
            ):
                cus = self._customer(email, customer_name)
                self._event("customer.created", cus)
                customer = cus["id"]
            session.update({
                "status": "complete", "url": None, "customer": customer,
                "customer_details": {
                    "address": {"city": None, "country": "US", "line1": None, "line2": None,
                                "postal_code": "94107", "state": None},
                    "business_name": None, "email": email, "individual_name": None,
                    "name": customer_name, "phone": None, "tax_exempt": "none", "tax_ids": [],
                },
                "collected_information": {"business_name": None, "individual_name": None,
                                          "shipping_details": None},
            })  # fmt: skip
            if session["mode"] == "payment":
                pid_data = pending["payment_intent_data"]
                pi = self._payment_intent(
                    amount=session["amount_total"], currency=session["currency"],
                    customer=customer, metadata=pid_data.get("metadata") or {},
                    description=pid_data.get("description"),
                    status="succeeded" if paid else "processing",
                    receipt_email=pid_data.get("receipt_email"),
                )  # fmt: skip
                self._event("payment_intent.created", pi)
                charge = self._charge(pi, "succeeded" if paid else "pending", email,
                                      customer_name)  # fmt: skip
                session["payment_intent"] = pi["id"]
                session["payment_status"] = "paid" if paid else "unpaid"
                if paid:
                    self._event("charge.succeeded", charge)
                    self._event("payment_intent.succeeded", pi)
                else:
                    self._event("charge.pending", charge)
                    self._event("payment_intent.processing", pi)
            else:
                self._start_subscription(session, customer, email, customer_name)
            return self._event("checkout.session.completed", session)

    def async_payment_result(self, session_id: str, succeeded: bool) -> JSON:
        """Settle a ``complete_session(paid=False)`` payment. Returns
        ``checkout.session.async_payment_succeeded`` or ``..._failed``."""
        with self._lock:
            session = self._find(session_id, "checkout.session", "session")
            pi_id = session.get("payment_intent")
            if session["status"] != "complete" or pi_id is None:
                raise ValueError(f"{session_id} has no pending async payment")
            pi = self._objects[pi_id]
            if pi["status"] != "processing":
                raise ValueError(f"{pi_id} is {pi['status']}, not processing")
            charge = self._objects[pi["latest_charge"]]
            if succeeded:
                pi.update({"status": "succeeded", "amount_received": pi["amount"]})
                charge.update({"status": "succeeded", "paid": True, "captured": True,
                               "amount_captured": charge["amount"]})  # fmt: skip
                session["payment_status"] = "paid"
                self._event("charge.succeeded", charge)
                self._event("payment_intent.succeeded", pi)
                return self._event("checkout.session.async_payment_succeeded", session)
            err = {"code": "payment_intent_payment_attempt_failed", "decline_code": None,
                   "message": "The payment failed.", "type": "invalid_request_error",
                   "payment_method": {"id": pi["payment_method"]}}  # fmt: skip
            pi.update({"status": "requires_payment_method", "last_payment_error": err})
            charge.update({"status": "failed", "failure_code": "payment_failed",
                           "failure_message": "The payment failed."})  # fmt: skip
            self._event("charge.failed", charge)
            self._event("payment_intent.payment_failed", pi)
            return self._event("checkout.session.async_payment_failed", session)

    def expire_session(self, session_id: str) -> JSON:
        """Let an open session time out. Returns ``checkout.session.expired``."""
        with self._lock:
            session = self._find(session_id, "checkout.session", "session")
            if session["status"] != "open":
                raise ValueError(f"{session_id} is {session['status']}, not open")
            return self._do_expire(session, None)

    def expire_due_sessions(self) -> list[JSON]:
        """Expire every open session whose ``expires_at`` passed on the fake clock."""
        with self._lock:
            now = self.now()
            due = [
                o for o in self._objects.values()
                if o["object"] == "checkout.session" and o["status"] == "open"
                and o["expires_at"] <= now
            ]  # fmt: skip
            return [self._do_expire(s, None) for s in due]
    def renew_subscription(self, subscription_id: str, *, paid: bool = True) -> JSON:
        """Bill the next period (advancing the fake clock to the period boundary, like
        a test clock). Returns ``invoice.paid`` (``invoice.payment_failed`` when
        ``paid=False``; ``customer.subscription.deleted`` if it was set to cancel)."""
        with self._lock:
            sub = self._find(subscription_id, "subscription", "subscription")
            if sub["status"] == "canceled":
                raise ValueError(f"{subscription_id} is canceled")
            state = self._subs[subscription_id]
            start = _period_boundary(state.anchor, state.interval, state.interval_count,
                                     state.periods)  # fmt: skip
            end = _period_boundary(state.anchor, state.interval, state.interval_count,
                                   state.periods + 1)  # fmt: skip
            if self.now() < start:
                self._clock_offset += start - self.now()
            if sub["cancel_at"] is not None and sub["cancel_at"] <= start:
                return self._end_subscription(sub, reason="cancellation_requested")
            prev_start = sub["items"]["data"][0]["current_period_start"]
            before = copy.deepcopy(sub)
            state.periods += 1
            for item in sub["items"]["data"]:
                item["current_period_start"], item["current_period_end"] = start, end
            invoice = self._invoice(
                sub, billing_reason="subscription_cycle", period_start=prev_start,
                period_end=start, lines=[
                    (item, item["price"]["unit_amount"] * item["quantity"], start, end)
                    for item in sub["items"]["data"]
                ], paid=paid,
            )  # fmt: skip
            sub["latest_invoice"] = invoice["id"]
            if not paid:
                sub["status"] = "past_due"
            self._event(
                "customer.subscription.updated", sub,
                previous={k: before[k] for k in sub if sub[k] != before[k]},
            )  # fmt: skip
            return self._invoice_events(invoice, paid)

    def cancel_subscription(
        self, subscription_id: str, *, at_period_end: bool = False,
        feedback: str | None = None, comment: str | None = None,
    ) -> JSON:  # fmt: skip
        """Cancel (e.g. from the customer portal or the Dashboard). Returns
        ``customer.subscription.deleted``, or ``customer.subscription.updated`` with
        ``at_period_end=True`` (the deletion then happens at :meth:`renew_subscription`)."""
        with self._lock:
            sub = self._find(subscription_id, "subscription", "subscription")
            if sub["status"] == "canceled":
                raise ValueError(f"{subscription_id} is already canceled")
            if not at_period_end:
                return self._end_subscription(
                    sub, reason="cancellation_requested", comment=comment, feedback=feedback
                )
            before = copy.deepcopy(sub)
            sub["cancel_at_period_end"] = True
            sub["cancel_at"] = sub["items"]["data"][0]["current_period_end"]
            sub["canceled_at"] = self.now()
            sub["cancellation_details"].update(
                {"reason": "cancellation_requested", "comment": comment, "feedback": feedback}
            )
            return self._event(
                "customer.subscription.updated", sub,
                previous={k: before[k] for k in sub if sub[k] != before[k]},
            )  # fmt: skip

    def refund(
        self, payment_intent_or_charge: str, amount: int | None = None, *,
        reason: str | None = None,
    ) -> JSON:  # fmt: skip
        """Refund a charge (full by default). Returns ``charge.refunded`` whose
        ``data.object`` is the Charge (with ``payment_intent``, ``amount_refunded``)."""
        with self._lock:
            obj = self._objects.get(payment_intent_or_charge)
            if obj is not None and obj["object"] == "payment_intent":
                obj = self._objects.get(obj["latest_charge"] or "")
            if obj is None or obj["object"] != "charge":
                raise KeyError(payment_intent_or_charge)
            charge = obj
            if charge["status"] != "succeeded":
                raise ValueError(f"{charge['id']} is {charge['status']}; cannot refund")
            remaining = charge["amount"] - charge["amount_refunded"]
            amount = remaining if amount is None else amount
            if not 0 < amount <= remaining:
                raise ValueError(
                    f"Refund amount ({amount}) is greater than unrefunded amount ({remaining})"
                )
            refund = self._store({
                "id": _new_id("re_"), "object": "refund", "amount": amount,
                "balance_transaction": _new_id("txn_"), "charge": charge["id"],
                "created": self.now(), "currency": charge["currency"],
                "destination_details": {"card": {"reference": None,
                                                 "reference_status": "pending",
                                                 "reference_type": "acquirer_reference_number",
                                                 "type": "refund"}, "type": "card"},
                "metadata": {}, "payment_intent": charge["payment_intent"],
                "reason": reason, "receipt_number": None, "source_transfer_reversal": None,
                "status": "succeeded", "transfer_reversal": None,
            })  # fmt: skip
            self._charge_refunds.setdefault(charge["id"], []).append(refund["id"])
            previous = {"amount_refunded": charge["amount_refunded"], "refunded": False}
            charge["amount_refunded"] += amount
            charge["refunded"] = charge["amount_refunded"] == charge["amount"]
            if not charge["refunded"]:
                del previous["refunded"]
            self._event("refund.created", refund)
            return self._event("charge.refunded", charge, previous=previous)

    # ---------------------------------------------------------------- webhooks

    @staticmethod
    def signed_webhook(
        event: Mapping[str, Any] | str | bytes, secret: str, timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """``(body, headers)`` of the delivery, ``Stripe-Signature: t=...,v1=...``."""
        return sign_webhook(event, secret, timestamp)

    @staticmethod
    async def deliver_webhook(
        event: Mapping[str, Any], url: str, secret: str, *, timestamp: int | None = None,
        total_seconds: float = 10.0,
    ) -> tuple[int, str]:  # fmt: skip
        """POST the signed event to ``url`` like Stripe does; returns (status, body)."""
        body, headers = sign_webhook(event, secret, timestamp)
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=total_seconds)
        ) as session, session.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.text()
