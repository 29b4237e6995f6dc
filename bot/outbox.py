"""Delivers queued notices to every recipient, durably.

Notices sit in the database from the moment the change that caused them committed; this
loop turns them into deliveries and sends each once. A delivery is marked sent only
after Telegram accepted it, so a crash in between may send one message twice, never
lose one; `stop()` lets the round in hand finish (for a while) so a clean restart sends
nothing twice.

Telegram's flood limits: the dispatcher paces itself below the overall limit (leaving
room for the bot's answers to people) and sends at most one message a second to a
chat; python-telegram-bot's AIORateLimiter is the backstop. A 429 that still comes
back is honoured: nothing is sent until its `retry_after` has passed, and the message
is tried again then (a 429 never makes a message give up). A user who blocked the bot
(403) is marked unreachable and the message is not retried; network trouble and 5xx
are retried with exponential backoff for up to GIVE_UP_AFTER. Backoff and retry
instants are on the store's clock (the tests' FakeClock moves them).

Several instances (partnerbot/cluster.py): only the leader runs a dispatcher. It claims
each round's deliveries under its leader epoch (none once a later leader has begun) and
asks `leading()` before each message, so a deposed leader sends nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, tzinfo

from telegram import Bot
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot.notices import render
from core.days import utc
from core.errors import StorageError
from core.model import Delivery
from core.notices import NoticeUndecodable
from core.partners import set_member_reachable
from core.ports import Clock, Store

log = logging.getLogger(__name__)
BATCH = 50
LOOKAHEAD = 4  # due deliveries read per round, in batches: room to skip busy chats
PER_SECOND = 28  # of Telegram's ~30 messages/s overall; the rest is for answers
PER_CHAT_INTERVAL = 1.0  # seconds between two messages to one chat
GIVE_UP_AFTER = timedelta(days=2)  # transient errors: retried until the notice is this old
STOP_GRACE = 5.0  # seconds stop() lets the round in hand finish
STORAGE_BACKOFF_CAP = 60.0  # seconds between rounds at most while the database fails


def _always() -> bool:
    return True


def _nothing() -> None:
    pass


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(5 * 2**attempts, 3600))


def storage_backoff(interval: float, failures: int) -> float:
    """Seconds before the next round after `failures` rounds in a row met a failing
    database: doubling from the usual interval up to STORAGE_BACKOFF_CAP."""
    return float(min(interval * 2 ** min(failures, 30), STORAGE_BACKOFF_CAP))


class _Pace:
    """Sends spaced evenly at `per_second` (real time), not in bursts.

    Telegram counts messages per second as they arrive; a burst that leaves together
    arrives spread out by connection set-up and scheduling, and the next second's burst
    then lands in the same window. Evenly spaced sends keep every window under the limit.
    """

    def __init__(self, per_second: int, monotonic: Callable[[], float]) -> None:
        self.gap = 1.0 / per_second
        self.monotonic = monotonic
        self.next_at = 0.0

    async def slot(self) -> None:
        now = self.monotonic()
        at = max(now, self.next_at)
        self.next_at = at + self.gap
        if at > now:
            await asyncio.sleep(at - now)


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
        per_second: int = PER_SECOND,
        per_chat_interval: float = PER_CHAT_INTERVAL,
        monotonic: Callable[[], float] = time.monotonic,
        leading: Callable[[], bool] = _always,
        on_fenced: Callable[[], None] = _nothing,
    ) -> None:
        """`leading`: whether this instance still leads, asked before each message;
        `on_fenced`: told when a round found a later leader epoch than `start`'s."""
        self.bot, self.store, self.clock, self.tz = bot, store, clock, tz
        self.leading, self.on_fenced = leading, on_fenced
        self.epoch: int | None = None  # the leader epoch rounds claim under (None: no fence)
        self.support_ids = list(support_ids)
        self.interval = interval
        self.per_chat_interval = per_chat_interval
        self.monotonic = monotonic
        self.wake = asyncio.Event()
        self._pace = _Pace(per_second, monotonic)
        self._last_to: dict[int, float] = {}  # chat -> monotonic time of the last send
        self._paused_until: datetime | None = None  # a 429's retry_after, on self.clock
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.storage_failures = 0  # rounds in a row that met a failing database

    async def _send(self, delivery: Delivery) -> None:
        try:
            text = render(delivery.notice, self.tz)
        except NoticeUndecodable as exc:
            # A payload no version wrote: retrying cannot help and guessing (say, a 0)
            # would tell people something false. Support finds it as a failed delivery.
            log.error(
                "outbox: notice %s (key %s) cannot be read, not sent: %s",
                delivery.notice.id, delivery.notice.key, exc,
            )
            await self._finish(delivery, sent=False, error=f"undecodable: {exc}")
            return
        await self._pace.slot()
        if not self.leading():
            return  # deposed while this round waited: the next leader sends it
        self._last_to[delivery.user_id] = self.monotonic()
        try:
            await self.bot.send_message(delivery.user_id, text)
        except Forbidden as exc:
            now = self.clock.now()
            await self._finish(delivery, sent=False, error=f"forbidden: {exc.message}")
            await self.store.write(lambda lg: set_member_reachable(
                lg, now, delivery.user_id, False, "system:outbox"
            ))
            return
        except BadRequest as exc:
            # Not going to work on a retry (e.g. chat not found): give up on it.
            await self._finish(delivery, sent=False, error=f"bad request: {exc.message}")
            return
        except RetryAfter as exc:
            # Flood control: honour retry_after for every chat, and try this one again then.
            wait = exc.retry_after
            seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
            retry = self.clock.now() + timedelta(seconds=max(seconds, 1.0))
            if self._paused_until is None or retry > self._paused_until:
                self._paused_until = retry
            await self._finish(delivery, sent=False, error=str(exc), retry_at=retry)
            return
        except (NetworkError, TelegramError) as exc:
            now = self.clock.now()
            if utc(now) - utc(delivery.notice.created_at) >= GIVE_UP_AFTER:
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

    def _pick(self, due: list[Delivery]) -> list[Delivery]:
        """At most BATCH, one per chat, none to a chat written to less than a second ago."""
        now = self.monotonic()
        chosen: list[Delivery] = []
        chats: set[int] = set()
        for d in due:
            last = self._last_to.get(d.user_id)
            if d.user_id in chats or (last is not None and now - last < self.per_chat_interval):
                continue
            chats.add(d.user_id)
            chosen.append(d)
            if len(chosen) == BATCH:
                break
        if len(self._last_to) > 10 * BATCH * LOOKAHEAD:  # forget chats long quiet
            self._last_to = {
                k: v for k, v in self._last_to.items() if now - v < self.per_chat_interval
            }
        return chosen

    async def run_once(self) -> int:
        """Expand new notices and send what is due; returns deliveries attempted."""
        if not self.leading():
            return 0
        now = self.clock.now()
        limit = BATCH * LOOKAHEAD
        if self._paused_until is not None:
            if now < self._paused_until:
                limit = 0  # a 429 pauses sending: notices are still expanded
            else:
                self._paused_until = None
        epoch = self.epoch
        due = await self.store.write(
            lambda lg: lg.claim_deliveries(epoch, self.support_ids, now, limit)
        )
        if due is None:
            log.warning(
                "outbox: leader epoch %s is over (a later leader has begun); this "
                "instance sends nothing more", epoch,
            )
            self._stopping.set()  # no round of this epoch can claim anything again
            self.on_fenced()
            return 0
        chosen = self._pick(due)
        # Different chats in parallel, paced within Telegram's limits.
        await asyncio.gather(*(self._send(d) for d in chosen))
        return len(chosen)

    async def _storage_failed(self, exc: StorageError) -> None:
        """The database failed a round: one WARNING when that starts (not a traceback a
        second), then wait longer and longer; what is queued stays queued."""
        self.storage_failures += 1
        if self.storage_failures == 1:
            log.warning(
                "outbox: the database is failing (%s); deliveries wait, retried with "
                "backoff up to %.0f s", exc, STORAGE_BACKOFF_CAP,
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self._stopping.wait(), storage_backoff(self.interval, self.storage_failures)
            )

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sent = await self.run_once()
            except StorageError as exc:
                await self._storage_failed(exc)
                continue
            except Exception:
                log.exception("outbox: a round failed; trying again")
                sent = 0
            else:
                if self.storage_failures:
                    log.warning(
                        "outbox: the database works again after %d failed rounds; "
                        "deliveries resume", self.storage_failures,
                    )
                    self.storage_failures = 0
            if self._stopping.is_set():
                break
            if sent >= BATCH:
                continue
            # Chats skipped for pacing are due again within a second.
            wait = min(self.interval, self.per_chat_interval) if sent else self.interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), wait)
            self.wake.clear()

    def start(self, epoch: int | None = None) -> None:
        """Run rounds in the background, claiming under leader `epoch` (None: no fence)."""
        self.epoch = epoch
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="outbox")

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Let the round in hand finish (up to `grace` seconds), then stop the loop."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        self.wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), grace)
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
