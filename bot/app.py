"""The composition root of the bot: builds the Application and registers handlers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import tzinfo

from telegram import LinkPreviewOptions, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    Defaults,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot import menus
from bot.api_request import bot_api_request
from bot.deps import BotDeps, count_no_error, count_no_update, deps_of, install
from bot.gate import FloodGate, RawUpdates, UpdatesRequest
from bot.handlers import buttons, common, errors, partner, payments, support
from bot.limits import FloodLimiter, FloodLimits
from bot.ordering import MAX_QUEUED_PER_USER, PerUserOrder
from core.payments import PaymentService
from core.service import BillingService

log = logging.getLogger(__name__)

COMMAND_HANDLERS = {
    "start": common.start,
    "help": common.help_,
    "balance": partner.balance,
    "channels": partner.channels,
    "newchannel": partner.newchannel,
    "allocate": partner.allocate,
    "delete": partner.delete,
    "topup": payments.topup,
    "autorenew": partner.autorenew,
    "subscribe": payments.subscribe,
    "history": partner.history,
    "invoices": payments.invoices,
    "alerts": partner.alerts,
    "invite": partner.invite,
    "partners": support.partners,
    "account": support.account,
    "newpartner": support.newpartner,
    "credit": support.credit,
    "setprice": support.setprice,
    "invoice": payments.invoice,
}
ALLOWED_UPDATES = ["message", "callback_query"]


def file_base_url(api_base_url: str) -> str:
    """https://host/bot -> https://host/file/bot, as Telegram lays out file downloads."""
    if api_base_url.endswith("/bot"):
        return api_base_url[: -len("bot")] + "file/bot"
    return api_base_url.rstrip("/") + "/file/bot"


async def start_up(app: Application) -> None:  # type: ignore[type-arg]
    """The start-up step, run once right after `await app.initialize()` (which asks getMe).

    python-telegram-bot calls `post_init` only from run_polling/run_webhook; partnerbot's
    runner (and the tests) start the application step by step, as PTB's custom webhook
    example does, so they call this explicitly.
    """
    try:
        await menus.set_default_menu(app.bot)
    except TelegramError as exc:
        log.warning("could not set the default command menu: %s", exc)


def deps_of_app(app: Application) -> BotDeps:  # type: ignore[type-arg]
    deps: BotDeps = app.bot_data["partnerbot.deps"]
    return deps


def build_application(
    *,
    token: str,
    api_base_url: str,
    billing: BillingService,
    support_ids: frozenset[int],
    tz: tzinfo,
    payments: PaymentService | None = None,
    on_update: Callable[[str], None] = count_no_update,
    on_error: Callable[[], None] = count_no_error,
    limits: FloodLimits | None = None,
) -> Application:  # type: ignore[type-arg]
    """The Application with every handler and what they reach; start it with
    `initialize()`, then `start_up(app)`, then `start()` and the updater.

    `limits`: the per-user flood limits (default: FloodLimits(), as `[limits]` defaults)."""
    defaults = Defaults(
        parse_mode=ParseMode.HTML,
        tzinfo=tz,
        link_preview_options=LinkPreviewOptions(is_disabled=True),
        do_quote=False,
    )
    limits = limits or FloodLimits()
    flood = FloodLimiter(billing.clock, limits)
    gate = FloodGate(flood, support_ids, on_update)
    raw = RawUpdates()
    order = PerUserOrder(
        gate=gate,
        max_queued_per_user=max(
            MAX_QUEUED_PER_USER, limits.member_per_minute, limits.stranger_per_minute,
            limits.group_per_minute,
        ),
    )
    app = (
        ApplicationBuilder()
        .token(token)
        .base_url(api_base_url)
        .base_file_url(file_base_url(api_base_url))
        .request(bot_api_request())
        # As the builder's own (one connection), and a flood is dropped before it is parsed.
        .get_updates_request(UpdatesRequest(gate, raw, connection_pool_size=1))
        .defaults(defaults)
        .rate_limiter(AIORateLimiter(max_retries=3))
        .concurrent_updates(order)
        .build()
    )
    install(app.bot_data, BotDeps(
        billing=billing, support_ids=support_ids, tz=tz, bot=app.bot, payments=payments,
        on_update=on_update, on_error=on_error, flood=flood, raw_updates=raw, gate=gate,
    ))
    register(app)
    return app


def register(app: Application) -> None:  # type: ignore[type-arg]
    # New messages only: an edited "/allocate x 30" must not allocate again.
    new = filters.UpdateType.MESSAGE
    private = filters.ChatType.PRIVATE
    for name, callback in COMMAND_HANDLERS.items():
        app.add_handler(CommandHandler(name, callback, filters=new))
    app.add_handler(CallbackQueryHandler(buttons.on_button))
    app.add_handler(MessageHandler(new & private & filters.COMMAND, common.unknown))
    app.add_handler(MessageHandler(new & private & ~filters.COMMAND, common.not_a_command))
    app.add_handler(TypeHandler(Update, common.other))  # last: whatever nothing else took
    app.add_error_handler(errors.on_error)


__all__ = ["build_application", "deps_of", "file_base_url", "start_up"]
