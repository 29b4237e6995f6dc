"""Updates from one user in order, different users concurrently, nobody hogging the slots."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable
from typing import Any, Protocol

from telegram import Update
from telegram.ext import BaseUpdateProcessor

log = logging.getLogger("bot.flood")

MAX_CONCURRENT_UPDATES = 256
# Updates of one user waiting for their turn (beyond the one being handled), at least. A
# person never has this many in flight; the flood limits drop a flood before (support is
# not limited: this bounds its backlog). bot.app raises it to the largest allowance, so
# that what the limits admit is never dropped here.
MAX_QUEUED_PER_USER = 64
# python-telegram-bot takes its own semaphore before do_process_update sees an update, so
# anything it bounds would count the updates waiting for their user's turn: a flooder's
# backlog would hold the slots every other user needs. Its bound is lifted; the real one
# (MAX_CONCURRENT_UPDATES) is taken below, once an update's turn has come.
_UNBOUNDED = 2**31 - 1


class Admission(Protocol):
    async def admit(self, update: object) -> bool:
        """True to handle the update, False if it was dropped (and counted)."""
        ...

    def overflow(self, update: object) -> None:
        """The update was dropped because its user's queue was full."""
        ...


class AdmitAll:
    async def admit(self, update: object) -> bool:
        return True

    def overflow(self, update: object) -> None:
        return None


def discard(coroutine: Awaitable[Any]) -> None:
    """An update's processing, never started, is dropped (without a 'never awaited' warning)."""
    if inspect.iscoroutine(coroutine):
        coroutine.close()


class PerUserOrder(BaseUpdateProcessor):
    """Serializes each user's updates; others proceed in parallel.

    python-telegram-bot starts one task per update in arrival order; asyncio locks wake
    waiters first come, first served, so each user's updates run in the order Telegram
    sent them (a double tap is processed after the first tap has finished). An update
    first passes the gate (flood limits), then waits for its user's turn, and only then
    takes one of the shared slots: a user's backlog holds at most one slot.
    """

    def __init__(
        self,
        max_concurrent_updates: int = MAX_CONCURRENT_UPDATES,
        *,
        gate: Admission | None = None,
        max_queued_per_user: int = MAX_QUEUED_PER_USER,
    ) -> None:
        super().__init__(_UNBOUNDED)
        self.slots = max_concurrent_updates
        self.gate: Admission = gate or AdmitAll()
        self.max_queued_per_user = max_queued_per_user
        self._shared = asyncio.Semaphore(max_concurrent_updates)
        self._locks: dict[int, asyncio.Lock] = {}
        self._waiting: dict[int, int] = {}
        self._overflowing: set[int] = set()

    @property
    def waiting_users(self) -> int:
        """Users with updates being handled or waiting (their state is kept only meanwhile)."""
        return len(self._waiting)

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        if not await self.gate.admit(update):
            discard(coroutine)
            return
        user = update.effective_user if isinstance(update, Update) else None
        if user is None:
            async with self._shared:
                await coroutine
            return
        waiting = self._waiting.get(user.id, 0)
        if waiting > self.max_queued_per_user:
            discard(coroutine)
            self.gate.overflow(update)
            if user.id not in self._overflowing:  # one line per backlog, not per update
                self._overflowing.add(user.id)
                log.warning(
                    "flood: %d updates of this user are waiting; dropping more", waiting,
                    extra={"user_id": user.id},
                )
            return
        lock = self._locks.setdefault(user.id, asyncio.Lock())
        self._waiting[user.id] = waiting + 1
        try:
            async with lock, self._shared:
                await coroutine
        finally:
            self._waiting[user.id] -= 1
            if not self._waiting[user.id]:  # last one out: forget the user's lock
                del self._waiting[user.id]
                del self._locks[user.id]
                self._overflowing.discard(user.id)

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None
