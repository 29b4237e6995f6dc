"""What handlers reach: the services created at start-up, kept in bot_data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from telegram import Bot
from telegram.ext import ContextTypes

from bot.gate import FloodGate, RawUpdates
from bot.limits import FloodLimiter
from core.payments import PaymentService
from core.service import BillingService

Context = ContextTypes.DEFAULT_TYPE
_KEY = "partnerbot.deps"


def count_no_update(command: str) -> None:
    """The default update hook: nothing counts updates."""


def count_no_error() -> None:
    """The default error hook: nothing counts errors."""


@dataclass(frozen=True)
class BotDeps:
    """Built once by bot.app.build_application; nothing is set on it afterwards."""

    billing: BillingService
    support_ids: frozenset[int]
    tz: tzinfo
    bot: Bot  # its username (for invite links) is known once the application is initialized
    payments: PaymentService | None = None  # None: Stripe is not configured
    menus_set: set[int] = field(default_factory=set)  # users whose menu is current
    # Metrics hooks: an update handled, by command; an unexpected error.
    on_update: Callable[[str], None] = count_no_update
    on_error: Callable[[], None] = count_no_error
    # The flood limits; handlers tell it who a user is once they have read it.
    flood: FloodLimiter | None = None
    # The last getUpdates answer as received, for the poller's inbox (bot/gate.py).
    raw_updates: RawUpdates | None = None
    # The flood gate itself: the webhook asks it before recording an update.
    gate: FloodGate | None = None

    def invite_link(self, code: str) -> str:
        return f"https://t.me/{self.bot.username}?start={code}"


def install(bot_data: dict[Any, Any], deps: BotDeps) -> None:
    bot_data[_KEY] = deps


def deps_of(context: Context) -> BotDeps:
    deps: BotDeps = context.bot_data[_KEY]
    return deps
