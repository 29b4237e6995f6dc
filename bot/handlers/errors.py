"""The one error handler: log with context (never a secret), apologise with a reference."""

from __future__ import annotations

import logging
import secrets

from telegram import Update
from telegram.error import BadRequest, NetworkError, TelegramError

from bot.deps import Context, deps_of
from core.errors import StorageError

log = logging.getLogger("bot.errors")


async def on_error(update: object, context: Context) -> None:
    """Unexpected exception in a handler: the bot keeps serving."""
    ref = secrets.token_hex(4).upper()
    extra: dict[str, object] = {"ref": ref}
    if isinstance(update, Update):
        extra["update_id"] = update.update_id
        if update.effective_user is not None:
            extra["user_id"] = update.effective_user.id
    # The token may sit in a URL inside the exception: the log filter scrubs it.
    if isinstance(context.error, StorageError):
        # The database failed (full, read-only, corrupt): the cause is the news, and a
        # traceback per update would bury it while the fault lasts.
        log.error("update failed (ref %s): %s", ref, context.error, extra=extra)
    else:
        log.error("unhandled error in an update", exc_info=context.error, extra=extra)
    deps_of(context).on_error()
    if not isinstance(update, Update) or update.effective_chat is None:
        return
    if isinstance(context.error, NetworkError) and not isinstance(context.error, BadRequest):
        # Telegram itself failed (the answer was already tried again): an apology would
        # most likely fail as well, and where it got through, "please try again" would
        # invite repeating work that is done.
        return
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(f"Sorry, something went wrong (ref {ref}).")
        else:
            await context.bot.send_message(
                update.effective_chat.id,
                f"Sorry, something went wrong on my side (ref {ref}). Please try again; "
                "if it keeps happening, tell support this reference.",
            )
    except TelegramError:
        log.warning("could not send the apology", extra=extra)
