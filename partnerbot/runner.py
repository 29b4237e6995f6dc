"""`partnerbot run`: the bot (long polling) in one event loop until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

from telegram.error import InvalidToken, NetworkError, TelegramError

from bot.app import ALLOWED_UPDATES, build_application
from partnerbot.config import Settings
from partnerbot.wiring import Services

log = logging.getLogger("partnerbot")


class StartupError(Exception):
    """The bot could not start; the message is one line for the operator."""


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
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await app.initialize()  # asks getMe: checks the token and the API address
        except InvalidToken as exc:
            raise StartupError("telegram.token: Telegram refused the bot token") from exc
        except NetworkError as exc:
            raise StartupError(
                f"telegram.api_base_url: cannot reach the Bot API ({exc.message})"
            ) from exc
        try:
            await app.start()
            assert app.updater is not None
            await app.updater.start_polling(allowed_updates=ALLOWED_UPDATES)
            log.info("bot @%s running; stop with SIGINT or SIGTERM", app.bot.username)
            await stop.wait()
            log.info("stopping: finishing the updates in hand")
        finally:
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
            if app.running:
                await app.stop()
            try:
                await app.shutdown()
            except TelegramError as exc:
                log.warning("shutdown: %s", exc)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
