"""`partnerbot run`: the bot (long polling), the HTTP server (Stripe webhook, health),
the notice dispatcher and the job scheduler, in one event loop until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import json
import logging
import signal

from aiohttp import web
from aiohttp.typedefs import Handler
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import Application

from bot.app import ALLOWED_UPDATES, build_application, deps_of_app
from bot.outbox import Dispatcher
from partnerbot.config import Settings
from partnerbot.metrics import CONTENT_TYPE, Metrics
from partnerbot.scheduler import build_scheduler
from partnerbot.wiring import Services
from payments.webhook import HttpServer, StripeWebhook, build_http_app

log = logging.getLogger("partnerbot")


class StartupError(Exception):
    """The bot could not start; the message is one line for the operator."""


def http_server(
    settings: Settings,
    services: Services,
    app: Application,  # type: ignore[type-arg]
    metrics: Metrics,
) -> HttpServer:
    webhook = None
    if services.payments is not None and settings.stripe.webhook_secret is not None:
        webhook = StripeWebhook(
            services.payments, services.store, services.billing.clock,
            settings.stripe.webhook_secret.get_secret_value(),
        )

    async def healthy() -> dict[str, bool]:
        updater = app.updater
        return {
            "database": await services.store.ping(),
            "bot": app.running and updater is not None and updater.running,
        }

    http = build_http_app(webhook, healthy)

    async def serve_metrics(request: web.Request) -> web.Response:
        body = await metrics.render(services.store, services.billing.clock.now())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    @web.middleware
    async def count_webhooks(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.path == "/stripe/webhook" and isinstance(response, web.Response):
            try:
                answer = json.loads(response.body or b"{}")  # type: ignore[arg-type]
            except ValueError:
                answer = {}
            metrics.webhooks.labels(result=answer.get("result") or answer.get("status", "?")).inc()
        return response

    http.router.add_get("/metrics", serve_metrics)
    http.middlewares.append(count_webhooks)
    return HttpServer(http, settings.server.host, settings.server.port)


class Runtime:
    """Everything `run` starts, started in order and stopped in reverse."""

    def __init__(self, settings: Settings, services: Services) -> None:
        settings.require("telegram.token")
        assert settings.telegram.token is not None
        self.settings, self.services = settings, services
        self.app = build_application(
            token=settings.telegram.token.get_secret_value(),
            api_base_url=settings.telegram.api_base_url,
            billing=services.billing,
            support_ids=frozenset(settings.access.support_user_ids),
            tz=settings.telegram.tzinfo,
        )
        self.metrics = Metrics()
        deps = deps_of_app(self.app)
        deps.payments = services.payments
        deps.on_update = lambda command: self.metrics.updates.labels(command=command).inc()
        deps.on_error = self.metrics.errors.inc
        self.server = http_server(settings, services, self.app, self.metrics)
        self.dispatcher = Dispatcher(
            self.app.bot, services.store, services.billing.clock, settings.telegram.tzinfo,
            settings.access.support_user_ids,
        )
        self.scheduler: AsyncIOScheduler | None = None

    async def start(self) -> None:
        try:
            await self.app.initialize()  # asks getMe: checks the token and the API address
        except InvalidToken as exc:
            raise StartupError("telegram.token: Telegram refused the bot token") from exc
        except NetworkError as exc:
            raise StartupError(
                f"telegram.api_base_url: cannot reach the Bot API ({exc.message})"
            ) from exc
        gateway = self.services.gateway
        if gateway is not None and not self.settings.stripe.success_url:
            gateway.success_url = f"https://t.me/{self.app.bot.username}"
        try:
            await self.server.start()
        except OSError as exc:
            s = self.settings.server
            raise StartupError(
                f"server.port: cannot listen on {s.host}:{s.port} ({exc.strerror})"
            ) from exc
        await self.app.start()
        assert self.app.updater is not None
        await self.app.updater.start_polling(allowed_updates=ALLOWED_UPDATES)
        self.dispatcher.start()
        self.scheduler = build_scheduler(self.services, self.dispatcher.wake.set)
        self.scheduler.start()
        log.info("bot @%s running; stop with SIGINT or SIGTERM", self.app.bot.username)

    async def stop(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await self.dispatcher.stop()
        app = self.app
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()  # finishes the updates in hand
        await self.server.stop()
        try:
            await app.shutdown()
        except TelegramError as exc:
            log.warning("shutdown: %s", exc)


async def serve(settings: Settings, services: Services, stop: asyncio.Event | None = None) -> None:
    runtime = Runtime(settings, services)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await runtime.start()
            await stop.wait()
            log.info("stopping: finishing the updates in hand")
        finally:
            await runtime.stop()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
