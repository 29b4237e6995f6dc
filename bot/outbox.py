"""Delivers queued notices to every recipient, durably.

Notices sit in the database from the moment the change that caused them committed; this
loop turns them into deliveries and sends each once. A delivery is marked sent only
after Telegram accepted it, so a crash in between may send one message twice, never
lose one. Flood limits are python-telegram-bot's AIORateLimiter's job; a user who
blocked the bot (403) is marked unreachable; network trouble is retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo

from telegram import Bot
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot.notices import render
from core.model import Delivery
from core.partners import set_member_reachable
from core.ports import Clock, Store

log = logging.getLogger(__name__)
BATCH = 50
MAX_ATTEMPTS = 8


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(5 * 2**attempts, 3600))


class Dispatcher:
    def __init__(
        self,
        bot: Bot,
        store: Store,
        clock: Clock,
        tz: tzinfo,
        support_ids: Sequence[int],
        *,
        interval: float = 1.0,
    ) -> None:
        self.bot, self.store, self.clock, self.tz = bot, store, clock, tz
        self.support_ids = list(support_ids)
        self.interval = interval
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _send(self, delivery: Delivery) -> None:
        now = self.clock.now()
        try:
            await self.bot.send_message(delivery.user_id, render(delivery.notice, self.tz))
        except Forbidden as exc:
            await self._finish(delivery, sent=False, error=f"forbidden: {exc.message}")
            await self.store.write(lambda lg: set_member_reachable(
                lg, now, delivery.user_id, False, "system:outbox"
            ))
            return
        except BadRequest as exc:
            # Not going to work on a retry (e.g. chat not found): give up on it.
            await self._finish(delivery, sent=False, error=f"bad request: {exc.message}")
            return
        except (RetryAfter, NetworkError, TelegramError) as exc:
            if delivery.attempts + 1 >= MAX_ATTEMPTS:
                await self._finish(delivery, sent=False, error=f"gave up: {exc}")
            else:
                retry = now + backoff(delivery.attempts)
                await self._finish(delivery, sent=False, error=str(exc), retry_at=retry)
            return
        await self._finish(delivery, sent=True)

    async def _finish(
        self, delivery: Delivery, *, sent: bool, error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        now = self.clock.now()
        await self.store.write(lambda lg: lg.finish_delivery(
            delivery.id, sent=sent, at=now, error=error, retry_at=retry_at
        ))

    async def run_once(self) -> int:
        """Expand new notices and send what is due; returns deliveries attempted."""
        now = self.clock.now()
        await self.store.write(lambda lg: lg.expand_notices(self.support_ids, now))
        due = await self.store.read(lambda lg: lg.due_deliveries(now, BATCH))
        # Different chats in parallel; the rate limiter keeps us within Telegram's limits.
        await asyncio.gather(*(self._send(d) for d in due))
        return len(due)

    async def _loop(self) -> None:
        while True:
            try:
                sent = await self.run_once()
            except Exception:
                log.exception("outbox: a round failed; trying again")
                sent = 0
            if sent >= BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.interval)
            self.wake.clear()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

