"""The SQLite store: core.ports.Store over aiosqlite, in WAL mode.

A use case is one synchronous function run on aiosqlite's database thread, inside one
transaction, in a single trip (aiosqlite costs ~100 µs per awaited call, so a use case
of ten statements awaited one by one would cost ten times what it does). The worker
thread runs one function at a time, which serializes writes within the process;
`BEGIN IMMEDIATE` and the busy timeout serialize them with other processes (the CLI).

aiosqlite offers no public call for "run this function on your thread", so this uses
`Connection._execute`; the dependency is pinned exactly, and the contract tests cover it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiosqlite

from core.errors import BillingError, StorageError, StoreBusy
from core.ports import Ledger, LedgerSnapshot
from storage.errors import translate
from storage.migrate import migrate
from storage.sqlite_ledger import SqliteLedger, SqliteSnapshot

T = TypeVar("T")
log = logging.getLogger(__name__)
Synchronous = Literal["FULL", "NORMAL"]


def configure(conn: sqlite3.Connection, synchronous: Synchronous, busy_timeout_ms: int) -> None:
    """Per-connection settings; also used by the benchmark's raw sqlite3 baseline."""
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StorageError(f"database: cannot switch to WAL mode (got {mode})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")


_translate = translate


def _transaction(conn: sqlite3.Connection, begin: str, work: Callable[[], T]) -> T:
    try:
        conn.execute(begin)
    except sqlite3.Error as exc:
        raise _translate(exc) from exc
    try:
        result = work()
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise _translate(exc) from exc
        raise
    return result


# How long a lookup on the caller's thread may wait for a lock before it leaves the read
# to the database thread (WAL readers almost never wait: only while a checkpoint resets
# the log or another connection recovers it).
LOOKUP_BUSY_MS = 20


class SqliteStore:
    def __init__(
        self,
        conn: aiosqlite.Connection,
        raw: sqlite3.Connection,
        path: Path,
        reader: sqlite3.Connection | None = None,
    ) -> None:
        self._conn = conn
        self._raw = raw  # touched only on the aiosqlite thread
        self._reader = reader  # lookups, on the thread that owns the store (the loop's)
        self.path = path

    @classmethod
    async def open(
        cls,
        path: Path | str,
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout_ms: int = 5000,
    ) -> SqliteStore:
        """Open (creating if needed) and migrate the database at `path`."""
        target = Path(path)
        if not target.parent.is_dir():
            raise StorageError(f"database: directory {target.parent} does not exist")
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            conn = await aiosqlite.connect(target, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        raw: sqlite3.Connection = conn._conn
        store = cls(conn, raw, target)
        try:
            await store._run(lambda: configure(raw, synchronous, busy_timeout_ms))
            applied = await store._run(lambda: migrate(raw))
        except BaseException:
            await conn.close()
            raise
        if applied:
            log.info("database migrated: %s", ", ".join(applied))
        try:
            reader = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
            configure(reader, synchronous, LOOKUP_BUSY_MS)
            reader.execute("PRAGMA query_only = ON")  # a lookup that writes is a bug: refuse
        except (sqlite3.Error, StorageError):
            await conn.close()
            raise
        store._reader = reader
        return store

    async def _run(self, fn: Callable[[], T]) -> T:
        try:
            result: T = await self._conn._execute(fn)  # type: ignore[no-untyped-call]
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        return result

    async def write(self, work: Callable[[Ledger], T]) -> T:
        ledger = SqliteLedger(self._raw)
        return await self._run(
            lambda: _transaction(self._raw, "BEGIN IMMEDIATE", lambda: work(ledger))
        )

    async def read(self, work: Callable[[Ledger], T]) -> T:
        ledger = SqliteLedger(self._raw)
        return await self._run(lambda: _transaction(self._raw, "BEGIN", lambda: work(ledger)))

    async def lookup(self, work: Callable[[Ledger], T]) -> T:
        """A small read on this thread: a hop to the database thread and back costs more
        event-loop time than the read itself (bench/e2e.py: about a fifth of an update).
        Under a rare lock, or with no reader, it goes to the database thread after all."""
        reader = self._reader
        if reader is None:
            return await self.read(work)
        ledger = SqliteLedger(reader)
        try:
            return _transaction(reader, "BEGIN", lambda: work(ledger))
        except StoreBusy:
            return await self.read(work)

    async def verify(self, work: Callable[[LedgerSnapshot], T]) -> T:
        snapshot = SqliteSnapshot(self._raw)
        return await self._run(lambda: _transaction(self._raw, "BEGIN", lambda: work(snapshot)))

    async def ping(self) -> bool:
        """True when the database answers a query (for /healthz)."""
        try:
            row = await self._run(lambda: self._raw.execute("SELECT 1").fetchone())
        except (BillingError, ValueError):  # aiosqlite: ValueError once closed
            return False
        return bool(row and row[0] == 1)

    async def stats(self, now_us: int) -> dict[str, Any]:
        """Figures for /metrics, read in one snapshot (cheap: indexed aggregates)."""

        def read() -> dict[str, Any]:
            c = self._raw
            paid = c.execute(
                "SELECT count(*), coalesce(sum(days), 0) FROM transfers WHERE kind = 'purchase'"
            ).fetchone()
            pending = c.execute(
                "SELECT count(*), min(n.created_at) FROM deliveries d"
                " JOIN notices n ON n.id = d.notice_id WHERE d.status = 'pending'"
            ).fetchone()
            unexpanded = c.execute(
                "SELECT count(*), min(created_at) FROM notices WHERE expanded = 0"
            ).fetchone()
            oldest = min((v for v in (pending[1], unexpanded[1]) if v is not None), default=None)
            jobs = c.execute(
                "SELECT job, max(CASE WHEN ok = 1 THEN finished_at END),"
                " (SELECT finished_at - started_at FROM job_runs r2 WHERE r2.job = r.job"
                "  AND finished_at IS NOT NULL ORDER BY id DESC LIMIT 1),"
                " (SELECT ok FROM job_runs r3 WHERE r3.job = r.job"
                "  AND finished_at IS NOT NULL ORDER BY id DESC LIMIT 1)"
                " FROM job_runs r GROUP BY job"
            ).fetchall()
            unreachable = c.execute(
                "SELECT count(*) FROM members WHERE unreachable = 1"
            ).fetchone()[0]
            return {
                "payments": paid[0],
                "days_credited": paid[1],
                "outbox_depth": pending[0] + unexpanded[0],
                "outbox_oldest_us": None if oldest is None else now_us - oldest,
                "jobs": [tuple(j) for j in jobs],
                "unreachable": unreachable,
            }

        return await self._run(lambda: _transaction(self._raw, "BEGIN", read))

    async def backup(self, destination: Path | str) -> Path:
        """A consistent online copy, written beside the target then renamed into place."""
        target = Path(destination)
        partial = target.with_name(f".{target.name}.partial")

        def copy() -> None:
            if target.exists():
                raise StorageError(f"backup: {target} already exists")
            if not target.parent.is_dir():
                raise StorageError(f"backup: directory {target.parent} does not exist")
            dest = sqlite3.connect(partial)
            try:
                # pages=-1 copies everything in one step, inside one read snapshot of the
                # source: writers in WAL mode carry on, and the copy is consistent.
                self._raw.backup(dest, pages=-1)
                dest.execute("PRAGMA journal_mode = DELETE")
                check = dest.execute("PRAGMA integrity_check").fetchone()[0]
                if check != "ok":
                    raise StorageError(f"backup: integrity check of the copy failed: {check}")
            finally:
                dest.close()
            os.replace(partial, target)

        def clean() -> None:
            partial.unlink(missing_ok=True)

        try:
            await self._run(copy)
        finally:
            await self._run(clean)
        return target

    async def execute_raw(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement outside the ledger API (tests and operator tooling only)."""
        return await self._run(lambda: [tuple(r) for r in self._raw.execute(sql, args)])

    async def close(self) -> None:
        try:
            await self._run(lambda: self._raw.execute("PRAGMA optimize"))
        except StorageError as exc:
            # Best effort: optimize does not wait for another process's write lock, and
            # everything of ours is committed already.
            log.debug("skipped PRAGMA optimize on close: %s", exc)
        finally:
            reader, self._reader = self._reader, None
            if reader is not None:
                reader.close()
            await self._conn.close()
