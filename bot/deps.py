"""What handlers reach: the services created at start-up, kept in bot_data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from telegram.ext import ContextTypes

from core.payments import PaymentService
from core.service import BillingService

Context = ContextTypes.DEFAULT_TYPE
_KEY = "partnerbot.deps"


@dataclass
class BotDeps:
    billing: BillingService
    support_ids: frozenset[int]
    tz: tzinfo
    payments: PaymentService | None = None  # None: Stripe is not configured
    bot_username: str = ""  # filled in from getMe at start-up
    menus_set: set[int] = field(default_factory=set)  # users whose menu is current
    # Metrics hooks (set by the runner): an update handled, by command; an unexpected error.
    on_update: Callable[[str], None] = lambda command: None
    on_error: Callable[[], None] = lambda: None

    def invite_link(self, code: str) -> str:
        return f"https://t.me/{self.bot_username}?start={code}"


def install(bot_data: dict[Any, Any], deps: BotDeps) -> None:
    bot_data[_KEY] = deps


def deps_of(context: Context) -> BotDeps:
    deps: BotDeps = context.bot_data[_KEY]
    return deps
