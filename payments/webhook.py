"""The Stripe webhook handler: `POST /stripe/webhook` (served by partnerbot/http.py).

A webhook is verified with Stripe's own code (`WebhookSignature.verify_header`, 300 s
tolerance) before anything is read from it, and its signed timestamp must not be more
than the tolerance ahead either (Stripe's code checks only the past); unsigned, badly
signed, stale, future-dated or malformed bodies get 400 and change nothing. Each event
id is handled once: the PaymentService records it in the same transaction as its
effect. A failure while handling answers 500, and nothing of the event is kept, so
Stripe delivers it again later.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import stripe
from aiohttp import web

from core.payments import EventHandled, EventResult, PaymentService, ProviderEvent
from payments.events import charge_refund, session_state, subscription_period, subscription_ref

log = logging.getLogger(__name__)
MAX_BODY = 512 * 1024  # Stripe events are a few kB; anything huge is not Stripe
TOLERANCE = 300
SESSION_EVENTS = {
    "checkout.session.completed": False,
    "checkout.session.async_payment_succeeded": False,
    "checkout.session.async_payment_failed": True,  # failed=True
    "checkout.session.expired": False,
}
HANDLED = (
    *SESSION_EVENTS,
    "invoice.paid",
    "customer.subscription.deleted",
    "charge.refunded",
)


class Refused(StrEnum):
    """Why a delivery was not handled (its value is the metrics label)."""

    TOO_LARGE = "body too large"
    BAD_SIGNATURE = "invalid signature"
    MALFORMED = "malformed event"
    FAILED = "error"  # handling raised: answered 500, Stripe delivers it again


WebhookResult = EventHandled | Refused
ResultHook = Callable[[WebhookResult], None]


class BadEvent(ValueError):
    """A signed body that is not an event we can read."""


def _event(payload: bytes) -> dict[str, Any]:
    try:
        event = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadEvent("body is not JSON") from exc
    if not isinstance(event, dict):
        raise BadEvent("event is not an object")
    data = event.get("data")
    if (
        not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
        or not isinstance(data, dict)
        or not isinstance(data.get("object"), dict)
    ):
        raise BadEvent("event lacks id, type or data.object")
    return event


class StripeWebhook:
    """The aiohttp handler for Stripe's events; `on_result` hears how each delivery ended
    (the composition root counts them), so nobody re-reads the JSON answer."""

    def __init__(
        self,
        service: PaymentService,
        secret: str,
        on_result: ResultHook = lambda result: None,
    ) -> None:
        self.service = service
        self._secret = secret
        self._on_result = on_result

    async def handle(self, request: web.Request) -> web.Response:
        result, response = await self._handle(request)
        self._on_result(result)
        return response

    async def _handle(self, request: web.Request) -> tuple[WebhookResult, web.Response]:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _refuse(Refused.TOO_LARGE)
        payload = await _read_body(request)
        if len(payload) > MAX_BODY:
            return _refuse(Refused.TOO_LARGE)
        header = request.headers.get("Stripe-Signature")
        try:
            stripe.WebhookSignature.verify_header(payload, header, self._secret, TOLERANCE)
        except (stripe.SignatureVerificationError, UnicodeDecodeError):
            return _refuse(Refused.BAD_SIGNATURE)
        if not _recent(header, time.time()):
            return _refuse(Refused.BAD_SIGNATURE)
        try:
            raw = _event(payload)
        except BadEvent as exc:
            return _refuse(Refused.MALFORMED, str(exc))
        event = ProviderEvent(raw["id"], raw["type"])
        if event.kind not in HANDLED:
            # Not recorded: an event type we never subscribed to changes nothing.
            return EventHandled(EventResult.IGNORED), _answer(200, "ignored")
        try:
            handled = await self.dispatch(event, raw["data"]["object"])
        except Exception:
            log.exception("webhook %s (%s) failed; Stripe will retry", event.id, event.kind)
            return _refuse(Refused.FAILED)
        if handled.duplicate:
            return handled, _answer(200, "duplicate", result=handled.result.value)
        log.info("webhook %s %s: %s", event.id, event.kind, handled.result.value)
        return handled, _answer(200, "ok", result=handled.result.value)

    async def dispatch(self, event: ProviderEvent, obj: dict[str, Any]) -> EventHandled:
        """The PaymentService use case for this kind of event, with the object parsed."""
        service, kind = self.service, event.kind
        if kind in SESSION_EVENTS:
            return await service.session_changed(
                event, session_state(obj, failed=SESSION_EVENTS[kind])
            )
        if kind == "invoice.paid":
            period = subscription_period(obj)
            if period is not None:
                return await service.period_paid(event, period)
        elif kind == "customer.subscription.deleted":
            ref = subscription_ref(obj)
            if ref is not None:
                return await service.subscription_deleted(event, ref)
        else:  # charge.refunded
            refund = charge_refund(obj)
            if refund is not None:
                return await service.charge_refunded(event, refund)
        return await service.event_ignored(event)  # not one of ours


def _recent(header: str | None, now: float) -> bool:
    """The signed timestamp is within TOLERANCE of now in the future too.

    stripe-python refuses only timestamps older than the tolerance; a signature dated
    ahead would stay replayable for as long as it is ahead. The header has already been
    verified (so a signed `t=` is there); every `t=` in it must be recent, so a header
    that repeats it cannot show this check one timestamp and stripe's another."""
    stamps = []
    for item in (header or "").split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            try:
                stamps.append(int(value))
            except ValueError:
                return False
    return bool(stamps) and max(stamps) <= now + TOLERANCE


async def _read_body(request: web.Request) -> bytes:
    """The whole body, or MAX_BODY + 1 bytes of it: `read(n)` returns what has arrived so
    far, and TCP may deliver a body in several pieces."""
    body = bytearray()
    while len(body) <= MAX_BODY:
        chunk = await request.content.read(MAX_BODY + 1 - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


def _answer(status: int, message: str, **extra: str) -> web.Response:
    return web.json_response({"status": message, **extra}, status=status)


def _refuse(why: Refused, message: str | None = None) -> tuple[Refused, web.Response]:
    status = 500 if why is Refused.FAILED else 400
    return why, _answer(status, message or why.value)
