"""Handing a recorded update to the application: what the poller (bot/poller.py) and the
webhook's claims (bot/claims.py) both do with an update once the inbox holds it."""

from __future__ import annotations

import json
import logging

from telegram import Update
from telegram.ext import Application

from core.inbox import InboxUpdate

log = logging.getLogger(__name__)

def parse_recorded(
    app: Application,  # type: ignore[type-arg]
    recorded: InboxUpdate,
) -> Update | None:
    """The update as python-telegram-bot objects; None (logged) when it cannot be read,
    so an unreadable row is marked handled instead of being replayed forever."""
    try:
        return Update.de_json(json.loads(recorded.payload), app.bot)
    except Exception:
        log.exception("update %d in the inbox cannot be read; skipped", recorded.update_id)
        return None


async def process(app: Application, update: Update) -> None:  # type: ignore[type-arg]
    """Through the application's update processor, as its own fetcher does: the flood
    gate and each user's order (bot/ordering.py) apply."""
    await app.update_processor.process_update(update, app.process_update(update))


def sender_of(update: Update) -> int | None:
    """The inbox's sender key: the user the update comes from (None: nobody)."""
    user = update.effective_user
    return None if user is None else user.id


__all__ = ["parse_recorded", "process", "sender_of"]
