"""Per-user command menus: each user sees only the commands they may use."""

from __future__ import annotations

import logging

from telegram import Bot, BotCommand, BotCommandScopeChat, BotCommandScopeDefault
from telegram.error import TelegramError

from bot.commands import visible

log = logging.getLogger(__name__)


def _commands(*, member: bool, owner: bool, support: bool) -> list[BotCommand]:
    return [
        BotCommand(c.name, c.summary)
        for c in visible(member=member, owner=owner, support=support)
    ]


async def set_default_menu(bot: Bot) -> None:
    """What everyone sees before being linked: /start and /help."""
    await bot.set_my_commands(
        _commands(member=False, owner=False, support=False), scope=BotCommandScopeDefault()
    )


async def set_user_menu(
    bot: Bot, user_id: int, *, member: bool, owner: bool, support: bool
) -> bool:
    """Set one user's menu; only possible once they have written to the bot."""
    try:
        await bot.set_my_commands(
            _commands(member=member, owner=owner, support=support),
            scope=BotCommandScopeChat(chat_id=user_id),
        )
    except TelegramError as exc:
        log.warning("could not set the command menu: %s", exc, extra={"user_id": user_id})
        return False
    return True
