"""Runs the storage probe on a timer in `partnerbot run` (never per request: the hot path
pays nothing for it), with `PRAGMA quick_check` every few rounds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from storage.base import OperatedStore

log = logging.getLogger("storage.health")

DEEP_EVERY = 3  # rounds between quick_checks (and the first round is one)


class HealthWatch:
    def __init__(self, store: OperatedStore, interval: float, deep_every: int = DEEP_EVERY) -> None:
        self.store = store
        self.interval = interval
        self.deep_every = max(1, deep_every)
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        rounds = 0
        while True:
            deep = rounds % self.deep_every == 0
            rounds += 1
            try:
                await self.store.probe(int(time.time() * 1_000_000), deep=deep)
            except Exception:  # the watch must outlive anything a probe meets
                log.exception("database: the health probe itself failed")
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="storage-health")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
