"""Long polling that records each update durably before Telegram is told it arrived.

python-telegram-bot's Updater confirms a batch (the next getUpdates carries offset = last
id + 1, and Telegram forgets everything below it) while the batch still waits in memory:
a crash loses it. This poller, for each batch:

1. records the batch's updates in the store's inbox, in one transaction (which also
   carries the "handled" marks gathered since the last one: no extra sync per update);
2. hands the newly recorded ones to the application (a redelivered update, already in the
   inbox, is not handled twice);
3. only then asks for the next batch, which confirms this one.

Each update is marked handled once the application has finished with it; the marks are
written with the next batch or, when none comes, after MARK_DELAY. At start the updates
left unhandled by the last run are handled first, in update-id order (the application's
update processor keeps each user's order). An update handled but not yet marked when the
process dies is handled again: write commands are idempotent under `tg:<update_id>`, so
the second run answers from the stored outcome and moves nothing.

Errors as python-telegram-bot's polling loop treats them: network errors and a failing
store are retried with backoff (the offset is not confirmed meanwhile, so Telegram keeps
the updates); RetryAfter is honoured; a refused token stops polling at once, a Conflict
(another process polls the same token) once it persists, each with an error line.
A store that keeps failing for another reason than a
lock (disk full, read-only) stops holding the chat up after UNRECORDED_AFTER attempts: the
batch is then handled unrecorded, and members get the apology those commands earn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from telegram import Update
from telegram.error import Conflict, InvalidToken, RetryAfter, TelegramError, TimedOut
from telegram.ext import Application

from bot.gate import RawUpdates
from bot.handling import parse_recorded, process, sender_of
from core.errors import StorageError, StoreBusy
from core.inbox import InboxUpdate
from core.ports import Clock, Ledger, Store

log = logging.getLogger(__name__)

POLL_TIMEOUT = 10  # s a long poll waits (PTB's default; the Bot API takes an integer)
MARK_DELAY = 1.0  # s between an update handled and its mark written, when no batch comes
FIRST_BACKOFF = 1.0  # s before the first retry after a failure (then 1.5 times more)
MAX_BACKOFF = 30.0  # s between attempts while Telegram or the store fails
CONFLICTS_TO_STOP = 3  # consecutive 409s: another process really polls this token
KEEP_HANDLED = timedelta(days=1)  # Telegram keeps an unconfirmed update for 24 hours
PRUNE_EVERY = 3600.0  # s between two prunes of the inbox
# Failed attempts to record a batch (about 5 s of backoff) after which a store that fails
# for a reason other than a passing lock (disk full, read-only, corrupt) no longer holds
# the chat up: the batch is handled without being recorded. Those updates would fail on
# the same store anyway, so members get the apology with its reference (logged once per
# update) instead of silence until the disk is fixed; only a crash during that spell can
# lose an update, one that could not have been carried out.
UNRECORDED_AFTER = 4


def _backoff(current: float) -> float:
    return FIRST_BACKOFF if current == 0 else min(MAX_BACKOFF, current * 1.5)


WEBHOOK_SET = "a webhook is set: partnerbot webhook delete, or telegram.mode = webhook"


class WebhookIsSet(Exception):
    """Telegram holds a webhook for this bot, so it refuses getUpdates (409)."""


def _seconds(wait: int | timedelta) -> float:
    return wait.total_seconds() if isinstance(wait, timedelta) else float(wait)


class DurablePoller:
    """Feeds `app` from getUpdates through the store's inbox; replaces `start_polling`."""

    def __init__(
        self,
        app: Application,  # type: ignore[type-arg]
        store: Store,
        clock: Clock,
        *,
        allowed_updates: Sequence[str],
        timeout: int = POLL_TIMEOUT,
        raw: RawUpdates | None = None,
    ) -> None:
        self.app, self.store, self.clock = app, store, clock
        self.allowed_updates = list(allowed_updates)
        self.timeout = timeout
        self.failure: str | None = None  # why polling stopped for good, for the operator
        self._offset: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._fetching = False  # in getUpdates or a pause: safe to cancel
        self._handled: list[int] = []  # update ids handled, mark not yet written
        self._mark_timer: asyncio.TimerHandle | None = None
        self._marking: set[asyncio.Task[None]] = set()
        self._mark_failed = False
        self._next_prune = 0.0
        self._record_failures = 0  # consecutive batches the store refused to record
        # The updates as Telegram sent them, kept by the getUpdates client (bot/gate.py).
        self._raw = raw

    @property
    def running(self) -> bool:
        """Polling (or retrying after an error): false once stopped or failed for good."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Hand the updates the last run left unhandled to the application, then start
        polling. The application runs already. A webhook set with Telegram is not
        removed, as start_polling would: other instances may be serving it (webhook
        mode); WebhookIsSet says so instead."""
        self._stopping, self.failure, self._offset = False, None, None
        if (await self.app.bot.get_webhook_info()).url:
            raise WebhookIsSet(WEBHOOK_SET)
        pending = await self.store.read(lambda lg: lg.pending_updates())
        if pending:
            log.info(
                "replaying %d updates recorded but not handled before the last stop"
                " (update ids %d to %d)",
                len(pending), pending[0].update_id, pending[-1].update_id,
            )
        for recorded in pending:
            update = parse_recorded(self.app, recorded)
            if update is None:
                self._done(recorded.update_id)  # unreadable: never handled, not replayed forever
            else:
                self._hand(update)
        self._task = asyncio.create_task(self._poll(), name="partnerbot:poller")

    async def stop(self) -> None:
        """Stop asking for updates; a batch being recorded is recorded and handed over
        first. Then confirm what is recorded, as start_polling's stop does, so a next
        poller of the token starts after it (it would not be handled twice anyway)."""
        task, self._stopping = self._task, True
        if task is None:
            return
        if self._fetching:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self._offset is not None and self.failure is None:
            try:
                await self.app.bot.get_updates(
                    offset=self._offset, timeout=0, allowed_updates=self.allowed_updates
                )
            except TelegramError as exc:
                log.debug("could not confirm the last updates on stop: %s", exc)

    async def close(self) -> None:
        """Write the last marks; call after the application has finished its updates."""
        if self._mark_timer is not None:
            self._mark_timer.cancel()
            self._mark_timer = None
        await asyncio.gather(*self._marking, return_exceptions=True)
        await self._write_marks()

    # -- polling -------------------------------------------------------------------------

    async def _poll(self) -> None:
        pause, conflicts = 0.0, 0
        while not self._stopping:
            try:
                self._fetching = True
                try:
                    updates = await self.app.bot.get_updates(
                        offset=self._offset,
                        timeout=self.timeout,
                        allowed_updates=self.allowed_updates,
                    )
                finally:
                    self._fetching = False
                if updates:
                    await self._accept_or_degrade(updates)
                pause, conflicts = 0.0, 0
                continue
            except InvalidToken:
                self._fail("telegram.token: Telegram refused the bot token")
                return
            except Conflict as exc:
                if "webhook" in exc.message.lower():  # set meanwhile: it stays until removed
                    self._fail(WEBHOOK_SET)
                    return
                conflicts += 1
                if conflicts >= CONFLICTS_TO_STOP:
                    self._fail(
                        "another process polls this bot token (only one `partnerbot run`"
                        f" may run per token): {exc.message}"
                    )
                    return
                pause = _backoff(pause)
                log.warning("getUpdates: %s; retrying in %.1f s", exc.message, pause)
            except RetryAfter as exc:
                pause = _seconds(exc.retry_after) + 0.5
                log.warning("getUpdates: Telegram asks to wait; retrying in %.1f s", pause)
            except TimedOut:
                pause = 0.0  # the long poll outlived the read timeout: simply ask again
            except TelegramError as exc:
                pause = _backoff(pause)
                log.warning("getUpdates failed: %s; retrying in %.1f s", exc.message, pause)
            except StorageError as exc:
                pause = _backoff(pause)
                log.error(
                    "could not record incoming updates, so they stay unconfirmed with"
                    " Telegram: %s; retrying in %.1f s", exc, pause,
                )
            except Exception:
                # Something python-telegram-bot could not read: PTB's own loop logs and
                # carries on too. The offset is not moved, so nothing is lost.
                pause = _backoff(pause)
                log.exception("polling failed; retrying in %.1f s", pause)
            if pause:
                self._fetching = True
                try:
                    await asyncio.sleep(pause)
                finally:
                    self._fetching = False

    async def _accept_or_degrade(self, updates: Sequence[Update]) -> None:
        try:
            await self._accept(updates)
        except StorageError as exc:
            self._record_failures += 1
            if isinstance(exc, StoreBusy) or self._record_failures < UNRECORDED_AFTER:
                raise  # retried with backoff: a lock passes, and so may a short fault
            if self._record_failures == UNRECORDED_AFTER:
                log.warning(
                    "the inbox cannot be written (%s): handling updates without recording"
                    " them until it can; commands that write fail with an apology", exc,
                )
            self._offset = updates[-1].update_id + 1
            for update in updates:
                self._hand(update, recorded=False)
            return
        if self._record_failures >= UNRECORDED_AFTER:
            log.warning("the inbox is written again: updates are recorded before confirmed")
        self._record_failures = 0

    def _fail(self, reason: str) -> None:
        self.failure = reason
        log.error("polling stopped: %s", reason)

    async def _accept(self, updates: Sequence[Update]) -> None:
        """Record the batch (with the marks in hand), then hand over what is new."""
        now = self.clock.now()
        raw = self._raw
        batch = [
            InboxUpdate(
                u.update_id, raw.payload(u) if raw else u.to_json(), now, sender_of(u)
            )
            for u in updates
        ]
        marks, self._handled = self._handled, []
        prune = self._prune_limit(now)

        def record(lg: Ledger) -> list[int]:
            if marks:
                lg.mark_updates_handled(marks, now)
            if prune is not None:
                lg.prune_updates(prune)
            return lg.add_updates(batch)

        try:
            new = set(await self.store.write(record))
        except BaseException:
            self._handled[:0] = marks
            raise
        self._offset = updates[-1].update_id + 1  # the next getUpdates confirms the batch
        if len(new) < len(updates):
            log.info(
                "ignored %d updates Telegram delivered again (recorded before)",
                len(updates) - len(new),
            )
        for update in updates:
            if update.update_id in new:
                self._hand(update)

    # -- handing over and marking ------------------------------------------------------------

    def _hand(self, update: Update, *, recorded: bool = True) -> None:
        # A task per update, as the Application's own fetcher makes for concurrent updates,
        # through the same update processor (per-user order); `app.stop()` awaits it.
        self.app.create_task(
            self._process(update, recorded), update=update, name="partnerbot:update"
        )

    async def _process(self, update: Update, recorded: bool) -> None:
        try:
            await process(self.app, update)
        finally:
            if recorded:  # an update handled unrecorded has no inbox row to mark
                self._done(update.update_id)

    def _done(self, update_id: int) -> None:
        self._handled.append(update_id)
        if self._mark_timer is None:
            loop = asyncio.get_running_loop()
            self._mark_timer = loop.call_later(MARK_DELAY, self._mark_soon)

    def _mark_soon(self) -> None:
        self._mark_timer = None
        task = asyncio.create_task(self._write_marks(), name="partnerbot:inbox-marks")
        self._marking.add(task)
        task.add_done_callback(self._marking.discard)

    async def _write_marks(self) -> None:
        marks, self._handled = self._handled, []
        if not marks:
            return
        now = self.clock.now()
        prune = self._prune_limit(now)

        def mark(lg: Ledger) -> None:
            lg.mark_updates_handled(marks, now)
            if prune is not None:
                lg.prune_updates(prune)

        try:
            await self.store.write(mark)
        except StorageError as exc:
            self._handled[:0] = marks  # kept for the next try; replayed if we die first
            if not self._mark_failed:
                log.warning("could not mark %d updates handled (will retry): %s",
                            len(marks), exc)
            self._mark_failed = True
            if self._mark_timer is None and not self._stopping:
                self._mark_timer = asyncio.get_running_loop().call_later(
                    MARK_DELAY, self._mark_soon
                )
            return
        self._mark_failed = False

    def _prune_limit(self, now: datetime) -> datetime | None:
        """Once an hour: forget what was handled more than a day ago."""
        moment = asyncio.get_running_loop().time()
        if moment < self._next_prune:
            return None
        self._next_prune = moment + PRUNE_EVERY
        return now - KEEP_HANDLED


__all__ = ["WEBHOOK_SET", "DurablePoller", "WebhookIsSet"]
