"""The HTTP server in the bot's process: `POST /stripe/webhook` and `GET /healthz`.

A webhook is verified with Stripe's own code (`WebhookSignature.verify_header`, 300 s
tolerance) before anything is read from it; unsigned, badly signed, stale or malformed
bodies get 400 and change nothing. Each event id is handled once. A failure while
handling answers 500, so Stripe delivers the event again later.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import stripe
from aiohttp import web

from core import payments
from core.payments import PaymentService
from core.ports import Clock, Store
from payments.events import session_state, subscription_period

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
    def __init__(self, service: PaymentService, store: Store, clock: Clock, secret: str) -> None:
        self.service = service
        self.store = store
        self.clock = clock
        self._secret = secret

    async def handle(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _answer(400, "body too large")
        payload = await _read_body(request)
        if len(payload) > MAX_BODY:
            return _answer(400, "body too large")
        try:
            stripe.WebhookSignature.verify_header(
                payload, request.headers.get("Stripe-Signature"), self._secret, TOLERANCE
            )
        except (stripe.SignatureVerificationError, UnicodeDecodeError):
            return _answer(400, "invalid signature")
        try:
            event = _event(payload)
        except BadEvent as exc:
            return _answer(400, str(exc))
        event_id, kind = event["id"], event["type"]
        seen = await self.store.read(lambda lg: lg.find_provider_event(event_id))
        if seen is not None:
            return _answer(200, "duplicate", result=seen)
        if kind not in HANDLED:
            return _answer(200, "ignored")
        try:
            result = await self.dispatch(kind, event["data"]["object"], f"stripe:{event_id}")
        except Exception:
            log.exception("webhook %s (%s) failed; Stripe will retry", event_id, kind)
            return _answer(500, "error")
        now = self.clock.now()
        await self.store.write(
            lambda lg: lg.record_provider_event(event_id, kind, now, result)
        )
        log.info("webhook %s %s: %s", event_id, kind, result)
        return _answer(200, "ok", result=result)

    async def dispatch(self, kind: str, obj: dict[str, Any], actor: str) -> str:
        now = self.clock.now()
        if kind in SESSION_EVENTS:
            return await self.service.apply(session_state(obj, failed=SESSION_EVENTS[kind]), actor)
        if kind == "invoice.paid":
            period = subscription_period(obj)
            if period is None:
                return "ignored"
            return await self.store.write(
                lambda lg: payments.apply_period(lg, now, actor=actor, **period)
            )
        if kind == "customer.subscription.deleted":
            sub_id = obj.get("id")
            if not isinstance(sub_id, str):
                return "ignored"
            return await self.store.write(
                lambda lg: payments.end_subscription(lg, now, sub_id, actor)
            )
        # charge.refunded: the charge knows its PaymentIntent, which we stored on payment.
        pi, refunded = obj.get("payment_intent"), obj.get("amount_refunded")
        if isinstance(pi, dict):
            pi = pi.get("id")
        if not isinstance(pi, str) or not isinstance(refunded, int) or refunded <= 0:
            return "ignored"
        return await self.store.write(
            lambda lg: payments.apply_refund(lg, now, pi, refunded, actor)
        )


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


def build_http_app(
    webhook: StripeWebhook | None, healthy: Callable[[], Awaitable[dict[str, bool]]]
) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        try:
            checks = await healthy()
        except Exception:  # a check that cannot even answer is a failing check
            log.exception("health check failed")
            return web.json_response({"health": "failing"}, status=503)
        ok = all(checks.values())
        body = {k: "ok" if v else "failing" for k, v in checks.items()}
        return web.json_response(body, status=200 if ok else 503)

    async def payments_off(request: web.Request) -> web.Response:
        return _answer(503, "payments are not configured")

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/stripe/webhook", webhook.handle if webhook else payments_off)
    return app


class HttpServer:
    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.runner = web.AppRunner(app, access_log=None)
        self.host, self.port = host, port
        self._set_up = False

    async def start(self) -> None:
        await self.runner.setup()
        self._set_up = True
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        log.info("HTTP server on %s:%s", self.host, self.port)

    async def stop(self) -> None:
        if self._set_up:
            await self.runner.cleanup()
            self._set_up = False
