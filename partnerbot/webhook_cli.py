"""`partnerbot webhook set|info|delete`: the webhook as Telegram holds it (no database).

- set: setWebhook(url=telegram.webhook_url, secret_token=telegram.webhook_secret,
  allowed_updates=the bot's, max_connections, drop_pending_updates=False): updates waiting
  with Telegram are delivered to the webhook, none dropped;
- info: getWebhookInfo, printed (url, pending updates, last error, connections, types);
- delete: deleteWebhook(drop_pending_updates=False), back to polling.

Each failure is one line (exit 1): the token refused, the Bot API out of reach, Telegram
refusing the call (its own words).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from telegram import Bot, WebhookInfo
from telegram.error import BadRequest, InvalidToken, NetworkError, TelegramError

from bot.app import ALLOWED_UPDATES
from partnerbot.config import Settings

DEFAULT_MAX_CONNECTIONS = 40  # Telegram's default


class WebhookCliError(Exception):
    """A refusal to print as one line (exit 1)."""


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """`webhook set|info|delete` under the main parser's subcommands (`sub`: what
    ArgumentParser.add_subparsers returned)."""
    webhook = sub.add_parser("webhook", parents=[common], help="the Telegram webhook")
    wsub = webhook.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = wsub.add_parser(
        "set", parents=[common],
        help="have Telegram post updates to telegram.webhook_url (with the secret)",
    )
    p.add_argument(
        "--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS, metavar="N",
        help=f"connections Telegram opens at once, 1-100 (default {DEFAULT_MAX_CONNECTIONS})",
    )
    p.set_defaults(handler=run_webhook_command, webhook_action=webhook_set)
    p = wsub.add_parser("info", parents=[common], help="what Telegram holds: url, backlog, errors")
    p.set_defaults(handler=run_webhook_command, webhook_action=webhook_info)
    p = wsub.add_parser("delete", parents=[common], help="remove the webhook (back to polling)")
    p.set_defaults(handler=run_webhook_command, webhook_action=webhook_delete)


Action = Callable[[argparse.Namespace, Settings, Bot], Awaitable[int]]


async def run_webhook_command(args: argparse.Namespace, settings: Settings) -> int:
    """Check the keys the action needs, then talk to the Bot API."""
    action: Action = args.webhook_action
    settings.require("telegram.token")
    if action is webhook_set:
        settings.require("telegram.webhook_url", "telegram.webhook_secret")
        if not 1 <= args.max_connections <= 100:
            raise WebhookCliError("--max-connections: must be between 1 and 100")
    assert settings.telegram.token is not None
    bot = Bot(settings.telegram.token.get_secret_value(), base_url=settings.telegram.api_base_url)
    try:
        async with bot:  # getMe: the token and the address are checked first
            return await action(args, settings, bot)
    except InvalidToken as exc:
        raise WebhookCliError("telegram.token: Telegram refused the bot token") from exc
    except BadRequest as exc:  # before NetworkError: python-telegram-bot derives it from it
        raise WebhookCliError(f"Telegram refused: {exc.message}") from exc
    except NetworkError as exc:
        raise WebhookCliError(
            f"telegram.api_base_url: cannot reach the Bot API ({exc.message})"
        ) from exc
    except TelegramError as exc:
        raise WebhookCliError(f"Telegram refused: {exc.message}") from exc


async def webhook_set(args: argparse.Namespace, settings: Settings, bot: Bot) -> int:
    t = settings.telegram
    assert t.webhook_url is not None and t.webhook_secret is not None  # required above
    await bot.set_webhook(
        url=t.webhook_url,
        secret_token=t.webhook_secret.get_secret_value(),
        allowed_updates=ALLOWED_UPDATES,
        max_connections=args.max_connections,
        drop_pending_updates=False,
    )
    out(f"webhook set: Telegram posts updates ({', '.join(ALLOWED_UPDATES)}) to {t.webhook_url}"
        f" with the secret token, up to {args.max_connections} connections at once")
    if t.mode != "webhook":
        out("note: telegram.mode is polling: `partnerbot run` refuses to poll while a webhook"
            " is set; set telegram.mode = webhook")
    return 0


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def describe(info: WebhookInfo) -> list[str]:
    """getWebhookInfo as lines for the operator."""
    if not info.url:
        return [
            "url: none (no webhook set: updates wait for getUpdates, telegram.mode = polling)",
            f"pending updates: {info.pending_update_count}",
        ]
    lines = [
        f"url: {info.url}",
        f"pending updates: {info.pending_update_count}",
        f"max connections: {info.max_connections if info.max_connections else '-'}",
        "allowed updates: " + (", ".join(info.allowed_updates) if info.allowed_updates
                               else "all but chat_member, message_reaction(_count)"),
    ]
    if info.last_error_date is not None or info.last_error_message:
        lines.append(f"last error: {_when(info.last_error_date)}: {info.last_error_message}")
    else:
        lines.append("last error: none")
    if info.ip_address:
        lines.append(f"ip address: {info.ip_address}")
    return lines


async def webhook_info(args: argparse.Namespace, settings: Settings, bot: Bot) -> int:
    info = await bot.get_webhook_info()
    for line in describe(info):
        out(line)
    wanted = settings.telegram.webhook_url
    if info.url and wanted and info.url != wanted:
        out(f"note: telegram.webhook_url is {wanted}: `partnerbot webhook set` to use it")
    return 0


async def webhook_delete(args: argparse.Namespace, settings: Settings, bot: Bot) -> int:
    await bot.delete_webhook(drop_pending_updates=False)
    out("webhook deleted: updates wait for getUpdates (telegram.mode = polling); none dropped")
    return 0


__all__ = ["WebhookCliError", "add_parser", "describe", "run_webhook_command"]
