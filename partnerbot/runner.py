"""`partnerbot run`: the bot (long polling), the HTTP server (Stripe webhook, health),
the notice dispatcher and the job scheduler, in one event loop until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import Application

from bot.app import ALLOWED_UPDATES, build_application, start_up
from bot.limits import FloodLimits
from bot.outbox import Dispatcher
from core.payments import EventHandled
from partnerbot.config import Settings
from partnerbot.http import HttpServer, build_http_app
from partnerbot.metrics import Metrics
from partnerbot.scheduler import build_scheduler
from partnerbot.wiring import Services, open_services
from payments.webhook import StripeWebhook, WebhookResult

log = logging.getLogger("partnerbot")


class StartupError(Exception):
    """The bot could not start; the message is one line for the operator."""


def webhook_label(result: WebhookResult) -> str:
    """The `result` label of partnerbot_webhooks_total for one delivery."""
    if isinstance(result, EventHandled):
        return "duplicate" if result.duplicate else result.result.value
    return result.value


def http_server(
    settings: Settings,
    services: Services,
    app: Application,  # type: ignore[type-arg]
    metrics: Metrics,
) -> HttpServer:
    webhook = None
    if services.payments is not None and settings.stripe.webhook_secret is not None:
        webhook = StripeWebhook(
            services.payments, settings.stripe.webhook_secret.get_secret_value(),
            on_result=lambda result: metrics.webhooks.labels(result=webhook_label(result)).inc(),
        )

    async def healthy() -> dict[str, bool]:
        updater = app.updater
        return {
            "database": await services.store.ping(),
            "bot": app.running and updater is not None and updater.running,
        }

    async def metrics_page() -> bytes:
        return await metrics.render(services.store, services.clock.now())

    http = build_http_app(webhook, healthy, metrics_page)
    return HttpServer(http, settings.server.host, settings.server.port)


class Runtime:
    """Everything `run` starts, started in order and stopped in reverse."""

    def __init__(self, settings: Settings, services: Services) -> None:
        settings.require("telegram.token")
        assert settings.telegram.token is not None
        self.settings, self.services = settings, services
        self.metrics = metrics = Metrics()
        self.app = build_application(
            token=settings.telegram.token.get_secret_value(),
            api_base_url=settings.telegram.api_base_url,
            billing=services.billing,
            support_ids=frozenset(settings.access.support_user_ids),
            tz=settings.telegram.tzinfo,
            payments=services.payments,
            on_update=lambda command: metrics.updates.labels(command=command).inc(),
            on_error=metrics.errors.inc,
            limits=FloodLimits(
                member_per_minute=settings.limits.member_per_minute,
                stranger_per_minute=settings.limits.stranger_per_minute,
                group_per_minute=settings.limits.group_per_minute,
            ),
        )
        self.server = http_server(settings, services, self.app, metrics)
        self.dispatcher = Dispatcher(
            self.app.bot, services.store, services.clock, settings.telegram.tzinfo,
            settings.access.support_user_ids,
        )
        self.scheduler: AsyncIOScheduler | None = None

    def bot_username(self) -> str | None:
        """The running bot's username (getMe), known once `start` has initialized it."""
        username: str = self.app.bot.username
        return username

    async def start(self) -> None:
        try:
            await self.app.initialize()  # asks getMe: checks the token and the API address
        except InvalidToken as exc:
            raise StartupError("telegram.token: Telegram refused the bot token") from exc
        except NetworkError as exc:
            raise StartupError(
                f"telegram.api_base_url: cannot reach the Bot API ({exc.message})"
            ) from exc
        await start_up(self.app)
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


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Open the services, run until `stop` (or SIGINT, SIGTERM), close them."""
    runtime: Runtime | None = None

    def bot_username() -> str | None:
        # Asked when a payment link is made: every one is made after start-up's getMe
        # (handlers, jobs and the webhook start after it), so the bot's own username.
        return runtime.bot_username() if runtime is not None else None

    services = await open_services(settings, bot_username)
    try:
        runtime = Runtime(settings, services)
        await _run(runtime, stop or asyncio.Event())
    finally:
        await services.close()


async def _run(runtime: Runtime, stop: asyncio.Event) -> None:
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
