"""The HTTP server in the bot's process: `POST /stripe/webhook`, `GET /healthz` and
`GET /metrics` on `server.host:server.port` (aiohttp).

The routes are the composition root's; what answers them is not: the webhook handler is
the Stripe adapter's (payments/webhook.py), the figures are partnerbot/metrics.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from partnerbot.metrics import CONTENT_TYPE
from payments.webhook import MAX_BODY, StripeWebhook

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """One part of /healthz: a failing part may name its cause ("disk full")."""

    ok: bool
    cause: str | None = None


Healthy = Callable[[], Awaitable[Mapping[str, bool | Check]]]
MetricsPage = Callable[[], Awaitable[bytes]]


def build_http_app(
    webhook: StripeWebhook | None,
    healthy: Healthy,
    metrics: MetricsPage | None = None,
) -> web.Application:
    """The route table. Without a webhook (payments not configured) Stripe's deliveries
    get 503, so Stripe keeps them until payments are set up."""

    async def healthz(request: web.Request) -> web.Response:
        try:
            checks = await healthy()
        except Exception:  # a check that cannot even answer is a failing check
            log.exception("health check failed")
            return web.json_response({"health": "failing"}, status=503)
        parts = {k: v if isinstance(v, Check) else Check(v) for k, v in checks.items()}
        body = {k: "ok" if v.ok else "failing" for k, v in parts.items()}
        causes = [v.cause for v in parts.values() if not v.ok and v.cause]
        if causes:
            body["cause"] = causes[0]
        ok = all(v.ok for v in parts.values())
        return web.json_response(body, status=200 if ok else 503)

    async def payments_off(request: web.Request) -> web.Response:
        return web.json_response({"status": "payments are not configured"}, status=503)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/stripe/webhook", webhook.handle if webhook else payments_off)
    if metrics is not None:
        page = metrics

        async def serve_metrics(request: web.Request) -> web.Response:
            return web.Response(body=await page(), headers={"Content-Type": CONTENT_TYPE})

        app.router.add_get("/metrics", serve_metrics)
    return app


class HttpServer:
    """Started after the bot's token is checked, stopped after the bot stops taking
    updates (partnerbot/runner.py)."""

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
