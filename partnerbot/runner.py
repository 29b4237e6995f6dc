"""`partnerbot run`: the bot (long polling), the HTTP server (Stripe webhook, health) and
the notice dispatcher, in one event loop until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import Application

from bot.app import ALLOWED_UPDATES, build_application, deps_of_app
from bot.outbox import Dispatcher
from partnerbot.config import Settings
from partnerbot.wiring import Services
from payments.webhook import HttpServer, StripeWebhook, build_http_app

log = logging.getLogger("partnerbot")


class StartupError(Exception):
    """The bot could not start; the message is one line for the operator."""


def http_server(
    settings: Settings, services: Services, app: Application  # type: ignore[type-arg]
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

    return HttpServer(build_http_app(webhook, healthy), settings.server.host, settings.server.port)


async def serve(settings: Settings, services: Services, stop: asyncio.Event | None = None) -> None:
    settings.require("telegram.token")
    assert settings.telegram.token is not None
    app = build_application(
        token=settings.telegram.token.get_secret_value(),
        api_base_url=settings.telegram.api_base_url,
        billing=services.billing,
        support_ids=frozenset(settings.access.support_user_ids),
        tz=settings.telegram.tzinfo,
    )
    deps_of_app(app).payments = services.payments
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = http_server(settings, services, app)
    dispatcher = Dispatcher(
        app.bot, services.store, services.billing.clock, settings.telegram.tzinfo,
        settings.access.support_user_ids,
    )
    try:
        try:
            await app.initialize()  # asks getMe: checks the token and the API address
        except InvalidToken as exc:
            raise StartupError("telegram.token: Telegram refused the bot token") from exc
        except NetworkError as exc:
            raise StartupError(
                f"telegram.api_base_url: cannot reach the Bot API ({exc.message})"
            ) from exc
        if services.gateway is not None and not settings.stripe.success_url:
            services.gateway.success_url = f"https://t.me/{app.bot.username}"
        try:
            try:
                await server.start()
            except OSError as exc:
                raise StartupError(
                    f"server.port: cannot listen on {settings.server.host}:"
                    f"{settings.server.port} ({exc.strerror})"
                ) from exc
            await app.start()
            assert app.updater is not None
            await app.updater.start_polling(allowed_updates=ALLOWED_UPDATES)
            dispatcher.start()
            log.info("bot @%s running; stop with SIGINT or SIGTERM", app.bot.username)
            await stop.wait()
            log.info("stopping: finishing the updates in hand")
        finally:
            await dispatcher.stop()
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
            if app.running:
                await app.stop()
            await server.stop()
            try:
                await app.shutdown()
            except TelegramError as exc:
                log.warning("shutdown: %s", exc)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
