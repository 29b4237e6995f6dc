"""Webhook mode: updates recorded in the inbox, then handled in each sender's order by
whichever instance the database picks.

Telegram posts each update to one instance (behind a load balancer, any of them). That
instance records it in the inbox and only then answers 2xx (bot/webhook.py): a crash
after the answer leaves the update in the database, and a redelivery (same update id) is
recorded once. Who handles it is decided by the database, not by process memory:

- Every update carries its sender (the user it comes from). A sender's updates are
  handled one at a time, in update-id order, by the instance holding the *claim* on the
  sender's earliest unhandled update (`claimed_by`, `claimed_until`: a lease).
- Receiving: one write transaction records the update and tries to claim the sender's
  next update (`claim_next_update`); it fails while any of the sender's updates holds a
  live claim. So the instance that records an update for an idle sender handles it.
- Draining: after handling an update, one write transaction marks it handled (which
  releases its claim) and claims the sender's next one; the holder keeps going until the
  sender's queue is empty.
- The race: A records U2 while B finishes U1. Both steps are write transactions, which
  the store serializes (SQLite: BEGIN IMMEDIATE; PostgreSQL: a global advisory lock). If
  A's runs first, U1's live claim makes A's claim fail, and B's transaction then finds
  U2; if B's runs first, it finds nothing, releases U1, and A's then claims U2. Either
  way exactly one instance takes U2, and only after U1 is handled.
- Leases: a claim lasts `lease` seconds (cluster.failover_seconds) and is renewed by its
  holder every third of that while it lives. A sweep on every instance, at the same
  pace, claims the earliest update of each sender that has unhandled updates and no live
  claim: what a dead instance held (its lease ran out), and what was recorded while no
  instance could claim (stopping, starting). At start the first sweep runs at once.
- A graceful stop finishes the update in hand, marks it, claims nothing more and
  releases what it still holds, so another instance (or the next start) goes on at once.

Exactly once: an update handled but not yet marked when an instance dies is handled again
once its lease runs out; every command that writes is idempotent under `tg:<update_id>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from datetime import datetime, timedelta
from enum import Enum

from telegram.ext import Application

from bot.gate import FloodGate
from bot.handling import parse_recorded, process
from core.errors import StorageError
from core.inbox import InboxUpdate
from core.ports import Clock, Ledger, Store

log = logging.getLogger(__name__)

SWEEP_BATCH = 100  # updates one sweep claims at most (another sweep follows at once)
KEEP_HANDLED = timedelta(days=1)  # Telegram redelivers an update for up to a day
PRUNE_EVERY = 3600.0  # s between two prunes of the inbox
FIRST_BACKOFF = 0.5  # s before retrying a mark the store refused (then 1.5 times more)
MAX_BACKOFF = 10.0


class Recorded(Enum):
    NEW = "recorded"
    DUPLICATE = "duplicate"  # the update id is in the inbox already: nothing done twice


def new_instance_id() -> str:
    """This process's name in claims: host and pid for the operator, plus a random part
    so a restarted process never renews the claims of the one that died."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class ClaimedUpdates:
    """The inbox side of webhook mode for one instance: `record` from the webhook,
    handling in each sender's order, the sweep and the lease renewal."""

    def __init__(
        self,
        app: Application,  # type: ignore[type-arg]
        store: Store,
        clock: Clock,
        *,
        lease: float,
        gate: FloodGate | None = None,
        instance: str | None = None,
    ) -> None:
        self.app, self.store, self.clock = app, store, clock
        self.lease = timedelta(seconds=lease)
        self.gate = gate
        self.instance = instance or new_instance_id()
        self._claiming = False  # between start and stop: updates recorded are claimed
        self._sweeper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._drains: set[asyncio.Task[None]] = set()
        self._next_prune = 0.0
        self._sweep_failing = False

    @property
    def running(self) -> bool:
        """Claiming and sweeping (false before start, after stop)."""
        return self._claiming and self._sweeper is not None and not self._sweeper.done()

    @property
    def in_hand(self) -> int:
        """Senders whose queue this instance is draining now."""
        return len(self._drains)

    async def start(self) -> None:
        """Start claiming; the first sweep (what earlier runs or dead instances left)
        runs at once. The application runs already."""
        self._claiming = True
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="partnerbot:inbox-sweep")

    async def stop(self) -> None:
        """Claim nothing more; the updates in hand are finished and marked handled."""
        self._claiming = False
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        while self._drains:
            await asyncio.gather(*list(self._drains), return_exceptions=True)

    async def close(self) -> None:
        """Release the claims still held (a mark that failed): free for others now."""
        try:
            released = await self.store.write(lambda lg: lg.release_claims(self.instance))
        except StorageError as exc:
            log.warning("could not release this instance's claims (they lapse): %s", exc)
            return
        if released:
            log.info("released %d claimed updates for other instances", released)

    # -- receiving -----------------------------------------------------------------------

    async def record(self, update_id: int, payload: str, sender: int | None) -> Recorded:
        """Record the update (durably: answer Telegram only after this returns) and, when
        its sender is idle, claim it for this instance. StorageError: nothing recorded."""
        now = self.clock.now()
        until, instance, claiming = now + self.lease, self.instance, self._claiming
        update = InboxUpdate(update_id, payload, now, sender)

        def record_and_claim(lg: Ledger) -> tuple[Recorded, InboxUpdate | None]:
            if not lg.add_updates([update]):
                return Recorded.DUPLICATE, None
            if not claiming:  # starting or stopping: the sweep (here or elsewhere) takes it
                return Recorded.NEW, None
            if sender is None:
                return Recorded.NEW, lg.claim_update(update_id, instance, now, until)
            return Recorded.NEW, lg.claim_next_update(sender, instance, now, until)

        result, claimed = await self.store.write(record_and_claim)
        if claimed is not None:
            self._drain(claimed)
        return result

    # -- handling ------------------------------------------------------------------------

    def _drain(self, first: InboxUpdate) -> None:
        task = asyncio.create_task(self._run_queue(first), name="partnerbot:sender-queue")
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def _run_queue(self, current: InboxUpdate | None) -> None:
        """Handle the claimed update, then the sender's next ones while this instance
        holds the claim."""
        while current is not None:
            await self._handle(current)
            current = await self._finish(current)

    async def _handle(self, recorded: InboxUpdate) -> None:
        update = parse_recorded(self.app, recorded)
        if update is None:
            return  # unreadable: marked handled, never replayed forever
        if self.gate is not None:
            self.gate.admitted(update.update_id)  # the webhook's gate decided already
        try:
            await process(self.app, update)
        except Exception:
            # The application's error handler takes what handlers raise; this is what
            # escaped it. The update is marked handled all the same, as the poller does.
            log.exception("update %d failed outside its handler", recorded.update_id)

    async def _finish(self, done: InboxUpdate) -> InboxUpdate | None:
        """Mark `done` handled and claim the sender's next update, in one transaction;
        retried while the store refuses (the sender's queue waits meanwhile)."""
        pause = 0.0
        while True:
            try:
                return await self._mark_and_claim_next(done)
            except StorageError as exc:
                if not self._claiming:
                    # Stopping: the claim lapses and the update is handled again elsewhere
                    # (idempotent), rather than holding the stop up.
                    log.warning("could not mark update %d handled on stop: %s",
                                done.update_id, exc)
                    return None
                pause = FIRST_BACKOFF if pause == 0 else min(MAX_BACKOFF, pause * 1.5)
                log.warning(
                    "could not mark update %d handled (its sender waits): %s; retrying in"
                    " %.1f s", done.update_id, exc, pause,
                )
                await asyncio.sleep(pause)

    async def _mark_and_claim_next(self, done: InboxUpdate) -> InboxUpdate | None:
        now = self.clock.now()
        until, instance, sender = now + self.lease, self.instance, done.sender
        claiming = self._claiming

        def finish(lg: Ledger) -> InboxUpdate | None:
            lg.mark_updates_handled([done.update_id], now)
            if not claiming or sender is None:
                return None
            return lg.claim_next_update(sender, instance, now, until)

        return await self.store.write(finish)

    # -- the sweep -----------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        interval = self.lease.total_seconds() / 3
        while True:
            try:
                full = await self.sweep()
            except StorageError as exc:
                full = False
                if not self._sweep_failing:
                    log.warning("inbox sweep failed (retrying every %.1f s): %s", interval, exc)
                self._sweep_failing = True
            except Exception:
                # Not the store's refusal: a bug. Sweeping goes on (a sweeper gone would
                # let this instance's leases lapse while it still handles their updates).
                full = False
                log.exception("inbox sweep failed")
            else:
                if self._sweep_failing:
                    log.info("inbox sweep works again")
                self._sweep_failing = False
            if full:
                continue  # more to pick up
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)

    def wake(self) -> None:
        """Sweep now (tests; an operator's nudge)."""
        self._wake.set()

    async def sweep(self) -> bool:
        """Renew this instance's claims and claim what nobody holds; True when the batch
        was full (sweep again)."""
        now = self.clock.now()
        until, instance = now + self.lease, self.instance
        prune = self._prune_limit(now)

        def renew_and_claim(lg: Ledger) -> list[InboxUpdate]:
            lg.renew_claims(instance, until)
            if prune is not None:
                lg.prune_updates(prune)
            return lg.claim_orphans(instance, now, until, SWEEP_BATCH)

        if not self._claiming:
            return False
        claimed = await self.store.write(renew_and_claim)
        if claimed:
            log.info(
                "picked up %d updates no instance held (update ids %d to %d)",
                len(claimed), claimed[0].update_id, claimed[-1].update_id,
            )
        for update in claimed:
            self._drain(update)
        return len(claimed) == SWEEP_BATCH

    def _prune_limit(self, now: datetime) -> datetime | None:
        moment = asyncio.get_running_loop().time()
        if moment < self._next_prune:
            return None
        self._next_prune = moment + PRUNE_EVERY
        return now - KEEP_HANDLED


__all__ = ["ClaimedUpdates", "Recorded", "new_instance_id"]
