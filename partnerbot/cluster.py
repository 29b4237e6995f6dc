"""Several instances, one leader: which `partnerbot run` runs the jobs and the outbox.

Every instance serves HTTP (Stripe's webhook, Telegram's in webhook mode); only the
leader runs the scheduled jobs and the notice dispatcher. Two implementations of one
protocol, chosen by `database.url`:

- `SoleLeadership` (SQLite): one process owns the database file, so it is always the
  leader. An exclusive lock on `<database>.lock` (flock, released by the kernel when the
  process dies, however it dies) makes a second `partnerbot run` on the same file refuse
  to start with one line.
- `PgLeadership` (PostgreSQL): a dedicated connection of its own (autocommit, TCP
  keepalives both ways, a short statement timeout; not the store's pool, whose
  connections come and go) holds a session advisory lock on LEADER_KEY. Standbys try
  `pg_try_advisory_lock` every `poll` seconds. The leader checks its connection every
  `heartbeat` seconds with a query bounded by `check_timeout`; a failed or late check
  makes it stop leading at once (role standby, jobs and outbox stopped), then it
  reconnects and competes again. PostgreSQL frees the lock when the leader's session
  ends (at once when its process dies; through the session's keepalives when its
  machine vanishes).

Why two leaders never send: a leader that loses its connection has stopped within
`heartbeat + check_timeout` of the loss, and the lock could only be taken after the
loss; a new leader waits `grace` (longer than that) after taking the lock before it
starts work. In the database, each new leader takes the next epoch
(`Ledger.begin_leadership`) and the outbox claims deliveries only under the current
epoch (`Ledger.claim_deliveries`), so a deposed leader's late round writes nothing and
sends nothing; the dispatcher also asks whether it still leads before each message.

Timing budget, F = cluster.failover_seconds:
    poll = F/4, heartbeat = F/5, check_timeout = max(F/10, 0.5),
    grace = heartbeat + check_timeout + F/10,
    after the leader's death: the lock is free at once, taken within `poll`, work starts
    `grace` later: poll + grace = 0.65 F (0.72 F at F = 3), within F.
A send already in flight when the connection drops and still unanswered after the
margin (F/10) may be repeated by the new leader, as after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

import psycopg

from core.errors import StorageError
from storage.files import create_private

log = logging.getLogger("partnerbot.cluster")

# Session advisory lock keys (bigint): the first 8 bytes of SHA-256("partnerbot:leader")
# and of SHA-256("partnerbot:poller"), as signed 64-bit integers. Advisory locks are per
# database, so two bots on two databases of one server never meet.
LEADER_KEY = 0x2B0F_5C6E_1D4A_7A31
POLLER_KEY = 0x2B0F_5C6E_1D4A_7A32


class Role(Enum):
    LEADER = "leader"
    STANDBY = "standby"


class CannotStart(Exception):
    """Another instance owns what this one needs (or the election database cannot be
    reached at start): the message is one line for the operator."""


@dataclass(frozen=True)
class Timing:
    """How often a standby asks for the lock, how often the leader checks it still
    holds it and how long that check may take, and how long a new leader waits after
    taking the lock before it starts work (see the module's timing budget)."""

    poll: float
    heartbeat: float
    check_timeout: float
    grace: float

    @classmethod
    def for_failover(cls, failover_seconds: float) -> Timing:
        f = failover_seconds
        heartbeat, check_timeout = f / 5, max(f / 10, 0.5)
        return cls(
            poll=f / 4, heartbeat=heartbeat, check_timeout=check_timeout,
            grace=heartbeat + check_timeout + f / 10,
        )


class Duties(Protocol):
    """What the leader does (partnerbot/runner.py: the jobs and the outbox)."""

    async def lead(self) -> int:
        """Elected: start the work; the leader epoch it took (for the log). A
        StorageError means it could not start."""
        ...

    async def step_down(self) -> None:
        """Deposed or stopping: stop the work, promptly."""
        ...


OnRole = Callable[[Role], None]


class Leadership(Protocol):
    @property
    def role(self) -> Role: ...

    async def open(self) -> None:
        """Take what this instance must own alone (the database file; the poller lock);
        CannotStart if another instance has it."""
        ...

    def start(self, duties: Duties) -> None:
        """Begin leading, or competing to lead, in the background."""
        ...

    def fenced(self) -> None:
        """The outbox found a later leader epoch in the database: stop leading."""
        ...

    async def close(self) -> None:
        """Stop leading (duties stepped down) and release everything."""
        ...


def _ignore_role(role: Role) -> None:
    pass


class _Roles:
    """The role, its one INFO line per change, and the listener (metrics)."""

    def __init__(self, on_role: OnRole) -> None:
        self.current = Role.STANDBY
        self.on_role = on_role

    def become(self, role: Role, why: str, *, quiet: bool = False) -> None:
        """Change the role at once; `quiet`: its log line comes later (`say`)."""
        if role is self.current:
            return
        self.current = role
        self.on_role(role)
        if not quiet:
            self.say(why)

    def say(self, why: str) -> None:
        if self.current is Role.LEADER:
            log.info("role: leader (%s): this instance runs the jobs and the outbox", why)
        else:
            log.info("role: standby (%s): the jobs and the outbox stop here", why)


class SoleLeadership:
    """SQLite: the process holding the lock file beside the database leads.

    In polling mode one process owns the file: a second is refused at start. In webhook
    mode several processes on one machine may share it (a deploy without downtime): the
    others wait as standbys and try the lock every `poll` seconds. The kernel releases an
    flock only when its holder closed it (after stepping down) or died, so there is no
    moment with two leaders and no grace to wait."""

    RETRY = 5.0  # seconds between attempts to start the work while the database fails

    def __init__(
        self,
        database: Path,
        on_role: OnRole = _ignore_role,
        *,
        exclusive: bool = True,
        poll: float = 2.5,
    ) -> None:
        self.database = database
        self.lock_path = database.with_name(database.name + ".lock")
        self.exclusive, self.poll = exclusive, poll
        self._roles = _Roles(on_role)
        self._fd: int | None = None
        self._held = False
        self._task: asyncio.Task[None] | None = None
        self._duties: Duties | None = None

    @property
    def role(self) -> Role:
        return self._roles.current

    def _try_lock(self, fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        # The holder's pid, for the refusal below; the lock itself is the kernel's.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return True

    async def open(self) -> None:
        create_private(self.lock_path)  # 0600 like the database beside it
        fd = os.open(self.lock_path, os.O_RDWR)
        self._held = self._try_lock(fd)
        if not self._held and self.exclusive:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise CannotStart(
                f"database.path: another partnerbot run (pid {holder}) is using "
                f"{self.database}; one process polls a SQLite database (several "
                "instances need telegram.mode = webhook)"
            )
        self._fd = fd

    def start(self, duties: Duties) -> None:
        self._duties = duties
        self._task = asyncio.create_task(self._lead(duties), name="leadership")

    async def _lead(self, duties: Duties) -> None:
        fd = self._fd
        assert fd is not None, "open() first"
        if not self._held:
            self._roles.say("another process on this database leads")
        while not self._held:
            await asyncio.sleep(self.poll)
            self._held = self._try_lock(fd)
        while True:
            self._roles.become(Role.LEADER, "", quiet=True)
            try:
                epoch = await duties.lead()
                self._roles.say(f"holds the lock of this database, epoch {epoch}")
                return
            except StorageError as exc:
                self._roles.become(Role.STANDBY, f"cannot start the work: {exc}")
            except Exception as exc:  # a bug must not leave a leader that does nothing
                log.exception("leadership: starting the work failed")
                self._roles.become(Role.STANDBY, f"cannot start the work: {exc}")
                await duties.step_down()
            await asyncio.sleep(self.RETRY)

    def fenced(self) -> None:
        # Only the lock's holder takes epochs: an epoch not ours means someone ran a
        # second writer by hand. Say so; the outbox sends nothing meanwhile.
        log.error("leadership: the leader epoch changed under the holder of this "
                  "database's lock; the outbox sends nothing until restart")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._duties is not None:
            self._roles.become(Role.STANDBY, "stopping")
            await self._duties.step_down()
        self._held = False
        if self._fd is not None:
            os.close(self._fd)  # releases the lock; the file stays (no race on unlink)
            self._fd = None


class _Lost(Exception):
    """The leader's connection failed its check, or the epoch moved on."""


def _lock_ids(key: int) -> tuple[int, int]:
    """(classid, objid) under which pg_locks lists an advisory lock on a bigint key."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


_HOLDER = (
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s"
    " AND l.objsubid = 1 AND l.granted"
)
_HOLDING = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    " AND classid = %s AND objid = %s AND objsubid = 1 AND granted"
)


class PgLeadership:
    """PostgreSQL: the instance holding the LEADER_KEY advisory lock leads."""

    def __init__(
        self,
        url: str,
        timing: Timing,
        on_role: OnRole = _ignore_role,
        *,
        exclusive_poller: bool = False,
        name: str | None = None,
    ) -> None:
        self.url, self.timing = url, timing
        self.exclusive_poller = exclusive_poller
        # Shown in pg_stat_activity and in a refused poller's message.
        self.name = (name or f"partnerbot {socket.gethostname()}:{os.getpid()}")[:63]
        self._roles = _Roles(on_role)
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._duties: Duties | None = None
        self._fenced = asyncio.Event()
        self._failing = False  # the election connection fails: said once, not every poll
        # Set by close(): psycopg's connect turns a cancellation into an OperationalError,
        # so the loop must not take that for a failure to retry.
        self._closing = False

    @property
    def role(self) -> Role:
        return self._roles.current

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        t = self.timing
        idle = max(1, round(t.heartbeat))
        timeout_ms = round(t.check_timeout * 1000)
        conn = await asyncio.wait_for(
            psycopg.AsyncConnection.connect(
                self.url,
                autocommit=True,
                connect_timeout=max(2, round(t.poll)),
                application_name=self.name,
                # Our side notices a dead server, the server a dead client (its end of the
                # session frees the lock): keepalives both ways, a bound on unacked data.
                keepalives=1, keepalives_idle=idle, keepalives_interval=1,
                keepalives_count=3, tcp_user_timeout=max(timeout_ms, 1000) + idle * 1000,
                options=(
                    f"-c statement_timeout={timeout_ms} -c tcp_keepalives_idle={idle}"
                    " -c tcp_keepalives_interval=1 -c tcp_keepalives_count=3"
                ),
            ),
            timeout=max(2, round(t.poll)) + t.check_timeout,
        )
        return conn

    async def _fetch(
        self, conn: psycopg.AsyncConnection[tuple[object, ...]], sql: str,
        params: tuple[int, ...],
    ) -> tuple[object, ...] | None:
        """One row, answered within check_timeout; else the connection is closed and
        TimeoutError raised. Not asyncio.wait_for: cancelling a query makes psycopg ask
        the server to cancel it, over the very network that does not answer, for up to
        ten seconds; closing the connection is immediate."""

        async def query() -> tuple[object, ...] | None:
            cur = await conn.execute(sql, params)
            return await cur.fetchone()

        task = asyncio.create_task(query())
        try:
            done, _ = await asyncio.wait({task}, timeout=self.timing.check_timeout)
        except asyncio.CancelledError:
            task.add_done_callback(_forget)  # ends when close() closes the connection
            raise
        if task in done:
            return task.result()
        await conn.close()  # the task then fails (or is cancelled) at once
        task.add_done_callback(_forget)
        task.cancel()
        raise TimeoutError(f"no answer within {self.timing.check_timeout:g} s")

    async def _try_lock(
        self, conn: psycopg.AsyncConnection[tuple[object, ...]], key: int
    ) -> bool:
        row = await self._fetch(conn, "SELECT pg_try_advisory_lock(%s)", (key,))
        return bool(row and row[0])

    async def _holder(self, conn: psycopg.AsyncConnection[tuple[object, ...]], key: int) -> str:
        with contextlib.suppress(psycopg.Error, TimeoutError):
            row = await self._fetch(conn, _HOLDER, _lock_ids(key))
            if row and row[0]:
                return str(row[0])
        return "another instance"

    async def open(self) -> None:
        try:
            conn = await self._connect()
        except (psycopg.Error, OSError, TimeoutError) as exc:
            raise CannotStart(
                f"database.url: cannot connect for the leader election ({_one_line(exc)})"
            ) from None
        if self.exclusive_poller:
            try:
                polling = await self._try_lock(conn, POLLER_KEY)
                holder = "" if polling else await self._holder(conn, POLLER_KEY)
            except (psycopg.Error, TimeoutError) as exc:
                await conn.close()
                raise CannotStart(
                    f"database.url: cannot take the poller lock ({_one_line(exc)})"
                ) from None
            if not polling:
                await conn.close()
                raise CannotStart(
                    f"telegram.mode: {holder} already polls Telegram for this database; "
                    'polling allows one instance (several need telegram.mode = "webhook")'
                )
        self._conn = conn

    def start(self, duties: Duties) -> None:
        self._duties = duties
        self._task = asyncio.create_task(self._run(duties), name="leadership")

    def fenced(self) -> None:
        self._fenced.set()

    async def _check(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        """The lock is still ours, answered within check_timeout; else _Lost."""
        try:
            row = await self._fetch(conn, _HOLDING, _lock_ids(LEADER_KEY))
        except TimeoutError:
            raise _Lost(
                f"the connection did not answer within {self.timing.check_timeout:g} s"
            ) from None
        if not row or not row[0]:
            raise _Lost("the leader lock is no longer held")
        if self._fenced.is_set():
            raise _Lost("a later leader epoch is in the database")

    async def _grace(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        """Wait `grace` with the lock, checking the connection every heartbeat: the
        leader before us may have lost its connection only just, and stops within
        heartbeat + check_timeout of that."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timing.grace
        while (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(self.timing.heartbeat, left))
            await self._check(conn)

    async def _hold(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        """Check the connection every heartbeat, for ever (returns only by raising)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._fenced.wait(), self.timing.heartbeat)
            await self._check(conn)

    async def _compete(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        """Connect if need be and wait for the leader lock; the connection holding it."""
        conn = self._conn
        if conn is None:
            self._conn = conn = await self._connect()
            if self.exclusive_poller and not await self._try_lock(conn, POLLER_KEY):
                log.error(
                    "leadership: after reconnecting, %s polls Telegram for this database "
                    "too", await self._holder(conn, POLLER_KEY),
                )
        while True:
            held = await self._try_lock(conn, LEADER_KEY)
            if self._failing:
                log.info("leadership: the election connection works again")
                self._failing = False
            if held:
                return conn
            await asyncio.sleep(self.timing.poll)  # polling PostgreSQL: no event to await

    async def _run(self, duties: Duties) -> None:
        while not self._closing:
            try:
                conn = await self._compete()
                self._fenced.clear()
                await self._grace(conn)
                # Leading before the work starts: the outbox asks before each message.
                self._roles.become(Role.LEADER, "", quiet=True)
                epoch = await duties.lead()
                self._roles.say(f"took the leader lock, epoch {epoch}")
                await self._hold(conn)
            except (psycopg.Error, OSError, TimeoutError, _Lost, StorageError) as exc:
                await self._lost(exc)
            except Exception as exc:  # a bug must not leave a leader that does nothing
                log.exception("leadership: unexpected failure; stepping down")
                await self._lost(exc)

    async def _lost(self, exc: BaseException) -> None:
        """Stop leading at once, then drop the connection (and so the lock); wait a poll
        before competing again."""
        if self._closing:
            return  # close() steps down and drops the connection itself
        why = _one_line(exc) or type(exc).__name__
        if self._roles.current is Role.LEADER:
            self._roles.become(Role.STANDBY, f"stopped leading: {why}")
            assert self._duties is not None
            await self._duties.step_down()
        elif not self._failing:
            log.warning(
                "leadership: the election connection failed (%s); retried every %g s",
                why, self.timing.poll,
            )
            self._failing = True
        await self._drop()
        await asyncio.sleep(self.timing.poll)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    async def close(self) -> None:
        """Stop the work first, then release the lock (closing the connection)."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()  # the connection stays open (and the lock held) until below
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._duties is not None:  # also when cancelled half-way through stepping down
            self._roles.become(Role.STANDBY, "stopping")
            await self._duties.step_down()
        await self._drop()


def _forget(task: asyncio.Task[tuple[object, ...] | None]) -> None:
    """An abandoned query's outcome (the error of its closed connection): expected."""
    if not task.cancelled():
        task.exception()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
