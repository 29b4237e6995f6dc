"""`POST /telegram/webhook` (telegram.mode = webhook; the route is partnerbot/http.py's).

Telegram posts each update with the secret set by `partnerbot webhook set` in
`X-Telegram-Bot-Api-Secret-Token`; anything else is refused before the body is read.
Then, in order, each step refusing without storing anything:

1. the secret, compared in constant time: missing 401, wrong 403 (`refused`);
2. the body: at most MAX_BODY, a JSON object with an integer `update_id`, else 400/413
   (`bad`);
3. the sender's flood allowance (bot/gate.py), before any database work: over it, 200
   and dropped (`limited`; the sender is told once a minute), as with polling;
4. the inbox (bot/claims.py): 200 only once the update is committed (`recorded`), or
   found there already (`duplicate`: handled once); the store failing answers 503 and
   Telegram delivers it again later (`failed`).

Handling happens after the answer, in each sender's order across instances (claims).
Telegram reads a JSON answer as a Bot API call to make: answers carry no JSON body.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from aiohttp import web
from telegram import Bot, Update

from bot.claims import ClaimedUpdates, Recorded
from bot.gate import FloodGate, Origin, origin_of_raw
from bot.limits import Sender, Verdict
from core.errors import StorageError

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
# Telegram's updates are a few kB (a message is at most 4096 characters); the HTTP app's
# client_max_size is the same bound for every route.
MAX_BODY = 512 * 1024


class WebhookResult(StrEnum):
    """How one delivery ended: the `result` label of partnerbot_telegram_webhook_total."""

    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    REFUSED = "refused"  # missing or wrong secret
    BAD = "bad"  # too large, not JSON, not an update
    LIMITED = "limited"  # over the sender's flood allowance: dropped
    FAILED = "failed"  # the store could not record it: Telegram delivers it again


ResultHook = Callable[[WebhookResult], None]


class BadUpdate(ValueError):
    """A body that is not an update we can record."""


def read_update(body: bytes) -> tuple[int, str, dict[str, Any]]:
    """The update id, the text and the update of a body: a JSON object, in UTF-8 as
    Telegram sends it (json.loads alone would take UTF-16 too), with an integer
    update_id."""
    try:
        text = body.decode("utf-8")
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadUpdate("body is not JSON") from exc
    if not isinstance(raw, dict):
        raise BadUpdate("body is not a JSON object")
    update_id = raw.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool) or update_id < 0:
        raise BadUpdate("no integer update_id")
    if update_id >= 2**63:
        raise BadUpdate("update_id out of range")
    return update_id, text, raw


class TelegramWebhook:
    """The aiohttp handler; `on_result` hears how each delivery ended (for the metric)."""

    def __init__(
        self,
        claims: ClaimedUpdates,
        secret: str,
        bot: Bot,
        gate: FloodGate | None = None,
        on_result: ResultHook = lambda result: None,
    ) -> None:
        self.claims = claims
        self._secret = secret.encode()
        self.bot = bot
        self.gate = gate
        self._on_result = on_result
        self._telling: set[asyncio.Task[None]] = set()

    async def handle(self, request: web.Request) -> web.Response:
        result, response = await self._handle(request)
        self._on_result(result)
        return response

    async def _handle(self, request: web.Request) -> tuple[WebhookResult, web.Response]:
        given = request.headers.get(SECRET_HEADER)
        if given is None or not hmac.compare_digest(given.encode(), self._secret):
            # Rate-limited logger (partnerbot/logs.py): a stranger cannot flood the log.
            log.warning(
                "telegram webhook: %s secret token from %s; refused",
                "no" if given is None else "wrong", request.remote,
            )
            return WebhookResult.REFUSED, _answer(401 if given is None else 403)
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _bad(413, "body too large")
        try:
            body = await request.read()  # bounded by the app's client_max_size
        except web.HTTPRequestEntityTooLarge:
            return _bad(413, "body too large")
        try:
            update_id, text, raw = read_update(body)
        except BadUpdate as exc:
            return _bad(400, str(exc))
        origin = origin_of_raw(raw)
        if self.gate is not None:
            await self._identify(self.gate, origin)
            verdict = self.gate.decide(origin, update_id)
            if verdict is not Verdict.ADMIT:
                if verdict is Verdict.TELL:
                    self._tell(raw)
                return WebhookResult.LIMITED, _answer(200)
        try:
            recorded = await self.claims.record(
                update_id, text, None if origin is None else origin.user_id
            )
        except StorageError as exc:
            log.warning("telegram webhook: update %d not recorded (%s); Telegram will"
                        " deliver it again", update_id, exc)
            return WebhookResult.FAILED, _answer(503)
        if recorded is Recorded.DUPLICATE:
            return WebhookResult.DUPLICATE, _answer(200)
        return WebhookResult.RECORDED, _answer(200)

    async def _identify(self, gate: FloodGate, origin: Origin | None) -> None:
        """Read whether a sender the gate does not know is a member, once (then the gate
        remembers, up to its bound). Polling learns it from the handler that answers;
        with several instances the one that records an update is often not the one that
        handles it, and a member would be held to a stranger's allowance here. One
        indexed read per new sender, none per update; a failing read leaves them unknown
        (limited as a stranger) rather than refusing the update."""
        if origin is None or origin.group or origin.user_id in gate.support_ids:
            return
        if gate.limiter.known(origin.user_id) is not None:
            return
        user_id = origin.user_id
        try:
            member = await self.claims.store.lookup(lambda lg: lg.get_member(user_id))
        except StorageError:
            return
        gate.limiter.introduce(user_id, Sender.STRANGER if member is None else Sender.MEMBER)

    def _tell(self, raw: dict[str, Any]) -> None:
        """Say "too many" (once a minute per flooder) after answering Telegram."""
        gate = self.gate
        if gate is None:
            return
        try:
            update = Update.de_json(raw, self.bot)
        except Exception:
            return  # nothing to answer to
        task = asyncio.create_task(gate.tell(update), name="partnerbot:too-many")
        self._telling.add(task)
        task.add_done_callback(self._telling.discard)


def _answer(status: int) -> web.Response:
    return web.Response(status=status)


def _bad(status: int, why: str) -> tuple[WebhookResult, web.Response]:
    log.warning("telegram webhook: %s; refused", why)
    return WebhookResult.BAD, web.Response(status=status, text=why)


__all__ = ["SECRET_HEADER", "BadUpdate", "TelegramWebhook", "WebhookResult", "read_update"]
