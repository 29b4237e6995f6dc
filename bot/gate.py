"""The flood gate: PerUserOrder asks it about each update before the update is queued.

It runs before any database work or Bot API call for the update: an update over its
sender's allowance is dropped here (counted as `limited`), and the sender is told once a
minute at most.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from telegram import Update
from telegram.constants import ChatType
from telegram.error import TelegramError

from bot import texts
from bot.limits import FloodLimiter, Sender, Verdict

log = logging.getLogger("bot.flood")


class FloodGate:
    def __init__(
        self,
        limiter: FloodLimiter,
        support_ids: frozenset[int],
        on_update: Callable[[str], None],
    ) -> None:
        self.limiter = limiter
        self.support_ids = support_ids
        self.on_update = on_update

    async def admit(self, update: object) -> bool:
        """True: handle the update. False: it was dropped (and counted)."""
        if not isinstance(update, Update):
            return True
        user = update.effective_user
        if user is None or user.id in self.support_ids:
            return True  # support staff are not limited (their queue is still bounded)
        chat = update.effective_chat
        if chat is not None and chat.type != ChatType.PRIVATE:
            key, sender = chat.id, Sender.GROUP
        else:
            key, sender = user.id, self.limiter.known(user.id) or Sender.UNKNOWN
        verdict = self.limiter.check(key, sender)
        if verdict is Verdict.ADMIT:
            return True
        self.on_update("limited")
        if verdict is Verdict.TELL:
            # Once a minute per flooder at most, like the answer: the log cannot flood.
            log.warning(
                "flood: over the %s limit of %d updates a minute; dropping until it refills",
                sender.value, self.limiter.limits.per_minute(sender),
                extra={"user_id": user.id, "chat_id": chat.id if chat else None,
                       "update_id": update.update_id},
            )
            await self.tell(update)
        return False

    def overflow(self, update: object) -> None:
        """PerUserOrder dropped this update: its sender's queue was full."""
        self.on_update("queue_full")

    async def tell(self, update: Update) -> None:
        try:
            if update.callback_query is not None:
                await update.callback_query.answer(texts.TOO_MANY)
            elif update.effective_message is not None:
                await update.effective_message.reply_text(texts.TOO_MANY)
        except TelegramError as exc:
            log.warning("flood: could not send the too-many answer: %s", exc)
