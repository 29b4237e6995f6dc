"""The HTTP servers in the bot's process (aiohttp): the public one on
`server.host:server.port` (`POST /stripe/webhook`, `GET /healthz`, and in webhook mode
`POST /telegram/webhook`) and the metrics one on
`metrics.host:metrics.port` (`GET /metrics`, loopback by default: payment counts are not
for the internet).

The routes are the composition root's; what answers them is not: Stripe's webhook handler
is the Stripe adapter's (payments/webhook.py), Telegram's the bot's (bot/webhook.py), the
figures are partnerbot/metrics.py's. How connections are capped and timed out is
partnerbot/http_guard.py's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from partnerbot.cluster import Role
from partnerbot.http_guard import ConnectionGuard, Dropped, HttpLimits, OnDrop
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
RoleOf = Callable[[], Role]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

BACKLOG = 128  # connections the kernel queues before we accept them
MAX_HEADERS = 32  # Stripe sends about ten; a proxy adds a few (aiohttp's default: 128)
LINGER = 2.0  # s an unread body is drained after the answer, so the client reads it


def build_http_app(
    webhook: StripeWebhook | None,
    healthy: Healthy,
    role: RoleOf | None = None,
    telegram: Handler | None = None,
) -> web.Application:
    """The public route table. Without a webhook (payments not configured) Stripe's
    deliveries get 503, so Stripe keeps them until payments are set up. `role`: this
    instance's part among several (/healthz says it; a standby is healthy). `telegram`:
    the handler of POST /telegram/webhook (webhook mode; polling mode has no such
    route). Every route's body is bounded by MAX_BODY (`client_max_size`, chunked
    bodies included)."""

    async def healthz(request: web.Request) -> web.Response:
        try:
            checks = await healthy()
        except Exception:  # a check that cannot even answer is a failing check
            log.exception("health check failed")
            return web.json_response({"health": "failing"}, status=503)
        parts = {k: v if isinstance(v, Check) else Check(v) for k, v in checks.items()}
        body = {k: "ok" if v.ok else "failing" for k, v in parts.items()}
        if role is not None:
            body["role"] = role().value
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
    if telegram is not None:
        app.router.add_post("/telegram/webhook", telegram)
    return app


def build_metrics_app(page: MetricsPage) -> web.Application:
    """The metrics listener's one route."""

    async def serve_metrics(request: web.Request) -> web.Response:
        return web.Response(body=await page(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_get("/metrics", serve_metrics)
    return app


def _ignore(why: Dropped) -> None:
    pass


class HttpServer:
    """One listener. The public one is started after the bot's token is checked and
    stopped after the bot stops taking updates (partnerbot/runner.py)."""

    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        limits: HttpLimits | None = None,
        on_drop: OnDrop = _ignore,
    ) -> None:
        self.limits = limits or HttpLimits()
        self.guard = ConnectionGuard(self.limits, on_drop)
        guard = self.guard

        @web.middleware
        async def guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
            guard.request_started(request)
            try:
                return await handler(request)
            except (ConnectionResetError, RuntimeError):
                # Reading the body of a connection that is gone (aiohttp raises either):
                # the client left, or the guard closed a body too slow to wait for. There
                # is nobody to answer, and aiohttp would log a traceback per connection;
                # an HTTP error on a closed connection is dropped quietly.
                transport = request.transport
                if transport is not None and not transport.is_closing():
                    raise
                raise web.HTTPRequestTimeout() from None
            finally:
                guard.request_finished(request)

        app.middlewares.append(guarded)
        self.runner = web.AppRunner(
            app,
            access_log=None,
            keepalive_timeout=self.limits.keepalive_timeout,
            max_headers=MAX_HEADERS,
            lingering_time=LINGER,
        )
        self.host, self.port = host, port
        self.listener: asyncio.Server | None = None
        self._set_up = False

    @property
    def addresses(self) -> list[Any]:
        """(host, port, ...) of each listening socket, once started."""
        return [s.getsockname() for s in self.listener.sockets] if self.listener else []

    async def start(self) -> None:
        await self.runner.setup()
        self._set_up = True
        server = self.runner.server
        assert server is not None  # set up above
        # Our own listening socket instead of web.TCPSite: its protocol factory is the
        # runner's, wrapped by the guard (partnerbot/http_guard.py says why).
        self.listener = await asyncio.get_running_loop().create_server(
            self.guard.factory(server), self.host, self.port,
            backlog=BACKLOG, reuse_address=True,
        )
        log.info("HTTP server on %s:%s", self.host, self.port)

    async def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()  # no new connections; the runner ends the open ones
        if self._set_up:
            await self.runner.cleanup()
            self._set_up = False
        if self.listener is not None:
            await self.listener.wait_closed()
            self.listener = None
