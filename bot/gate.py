"""The flood gate: each update meets its sender's allowance before any work is done for it.

Two places ask it, the first one that sees an update decides:

- `UpdatesRequest`, the client of getUpdates, as soon as Telegram's answer is decoded:
  python-telegram-bot turns each update into objects at about a millisecond apiece, more
  than everything else a dropped update costs, so a flood is dropped before that;
- PerUserOrder (bot/ordering.py), for an update the first did not decide (the last of
  each batch, which python-telegram-bot needs to confirm the batch; any update that
  reaches the application another way).

An update over its sender's allowance is dropped (counted as `limited`); the sender is
told, and the log says so, once a minute at most.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from telegram import Update
from telegram.constants import ChatType
from telegram.error import TelegramError
from telegram.request import HTTPXRequest

from bot import texts
from bot.limits import FloodLimiter, Sender, Verdict

log = logging.getLogger("bot.flood")

# Decisions taken on getUpdates' answer, kept until the update reaches PerUserOrder (a batch
# of 100 at a time); bounded in case the application stops with updates still queued.
MAX_DECIDED = 10_000


@dataclass(frozen=True)
class Origin:
    """Who sent an update, as far as the limits care."""

    user_id: int
    chat_id: int | None
    group: bool  # from a group chat: the chat's allowance applies


def origin_of(update: Update) -> Origin | None:
    user = update.effective_user
    if user is None:
        return None
    chat = update.effective_chat
    group = chat is not None and chat.type != ChatType.PRIVATE
    return Origin(user.id, chat.id if chat is not None else None, group)


def origin_of_raw(raw: Mapping[str, Any]) -> Origin | None:
    """The same, read from the JSON of an update (a message or a callback query)."""
    for key, value in raw.items():
        if key == "update_id" or not isinstance(value, dict):
            continue
        user, chat = value.get("from"), value.get("chat")
        message = value.get("message")
        if chat is None and isinstance(message, dict):
            chat = message.get("chat")  # a button press: the chat of the message pressed
        if not isinstance(user, dict) or not isinstance(user.get("id"), int):
            return None
        if not isinstance(chat, dict) or not isinstance(chat.get("id"), int):
            return Origin(user["id"], None, group=False)
        return Origin(user["id"], chat["id"], group=chat.get("type") != ChatType.PRIVATE)
    return None


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
        self._decided: OrderedDict[int, Verdict] = OrderedDict()

    def decide(self, origin: Origin | None, update_id: int) -> Verdict:
        """Spend one update of the sender's allowance (support: not limited)."""
        if origin is None or origin.user_id in self.support_ids:
            return Verdict.ADMIT
        if origin.group and origin.chat_id is not None:
            key, sender = origin.chat_id, Sender.GROUP
        else:
            key, sender = origin.user_id, self.limiter.known(origin.user_id) or Sender.UNKNOWN
        verdict = self.limiter.check(key, sender)
        if verdict is not Verdict.ADMIT:
            self.on_update("limited")
        if verdict is Verdict.TELL:
            # Once a minute per flooder at most, like the answer: the log cannot flood.
            log.warning(
                "flood: over the %s limit of %d updates a minute; dropping until it refills",
                sender.value, self.limiter.limits.per_minute(sender),
                extra={"user_id": origin.user_id, "chat_id": origin.chat_id,
                       "update_id": update_id},
            )
        return verdict

    def keep_raw(self, raw: Mapping[str, Any]) -> bool:
        """Decide on an update from getUpdates' answer: False drops it unparsed. One to be
        answered "too many" is kept, and the decision remembered for PerUserOrder."""
        update_id = raw.get("update_id")
        if not isinstance(update_id, int):
            return True
        verdict = self.decide(origin_of_raw(raw), update_id)
        if verdict is Verdict.DROP:
            return False
        self._decided[update_id] = verdict
        if len(self._decided) > MAX_DECIDED:
            self._decided.popitem(last=False)
        return True

    def admitted(self, update_id: int) -> None:
        """The update passed the gate where it was received (the webhook, maybe on another
        instance): PerUserOrder lets it through without spending the allowance again."""
        self._decided[update_id] = Verdict.ADMIT
        if len(self._decided) > MAX_DECIDED:
            self._decided.popitem(last=False)

    async def admit(self, update: object) -> bool:
        """PerUserOrder's question: True handles the update; False drops it (counted)."""
        if not isinstance(update, Update):
            return True
        verdict = self._decided.pop(update.update_id, None)
        if verdict is None:
            verdict = self.decide(origin_of(update), update.update_id)
        if verdict is Verdict.TELL:
            await self.tell(update)
        return verdict is Verdict.ADMIT

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


class RawUpdates:
    """The updates of the last getUpdates answer as Telegram sent them, by update id.

    The poller records each update in the inbox before it confirms it: the text Telegram
    sent, dumped from the decoded answer (C code, a few µs), costs far less than turning
    python-telegram-bot's objects back into JSON (`Update.to_json` walks every attribute:
    the largest cost the inbox added per update in bench/e2e.py)."""

    def __init__(self) -> None:
        self.latest: dict[int, str] = {}

    def keep(self, result: list[Any]) -> None:
        self.latest = {
            raw["update_id"]: json.dumps(raw, ensure_ascii=False, separators=(",", ":"))
            for raw in result
            if isinstance(raw, dict) and isinstance(raw.get("update_id"), int)
        }

    def payload(self, update: Update) -> str:
        """The update as received when it came in the last answer, else re-encoded."""
        text = self.latest.get(update.update_id)
        return text if text is not None else update.to_json()


class UpdatesRequest(HTTPXRequest):
    """The HTTP client of getUpdates (ApplicationBuilder.get_updates_request; the bot makes
    no other call with it): the updates of each answer pass the flood gate before
    python-telegram-bot parses them into objects. The last one always goes on:
    python-telegram-bot confirms the batch by its id (the gate decides on it in
    PerUserOrder instead)."""

    def __init__(self, gate: FloodGate, raw: RawUpdates | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate
        self.raw = raw

    def parse_json_payload(self, payload: bytes) -> dict[str, Any]:  # type: ignore[override]
        # BaseRequest documents this as the hook to customize decoding; a static method
        # there, called on the instance.
        answer = HTTPXRequest.parse_json_payload(payload)
        result = answer.get("result")
        if answer.get("ok") is True and isinstance(result, list) and len(result) > 1:
            *batch, last = result
            kept = [raw for raw in batch if not isinstance(raw, dict) or self.gate.keep_raw(raw)]
            answer["result"] = [*kept, last]
        if self.raw is not None and answer.get("ok") is True and isinstance(result, list):
            self.raw.keep(answer["result"])
        return answer
