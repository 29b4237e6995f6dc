"""The SQLite store: core.ports.Store over sqlite3, in WAL mode.

A use case is one synchronous function run on the store's database thread
(storage/dbthread.py), inside one transaction, in a single trip. The thread runs one
function at a time, which serializes writes within the process (writes queued together
share one transaction, each in its own savepoint); `BEGIN IMMEDIATE` and the busy
timeout serialize them with other processes (the CLI).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from core.errors import BillingError, StorageError, StoreBusy
from core.ports import Ledger, LedgerSnapshot
from storage import files, name_keys, probe
from storage.chain import start_keyed_chain
from storage.dbthread import DatabaseThread, transaction
from storage.errors import Connection, translate
from storage.health import HEALTHY, Fault, HealthMonitor, StorageHealth
from storage.migrate import migrate
from storage.sql import Engine
from storage.sql_ledger import SqlLedger, SqlSnapshot
from storage.stats import StoreStats, read_stats

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


# How long a lookup on the caller's thread may wait for a lock before it leaves the read
# to the database thread (WAL readers almost never wait: only while a checkpoint resets
# the log or another connection recovers it).
LOOKUP_BUSY_MS = 20


class SqliteStore:
    engine = Engine.SQLITE

    def __init__(
        self,
        thread: DatabaseThread,
        path: Path,
        reader: sqlite3.Connection | None = None,
        busy_timeout_ms: int = 5000,
        chain_key: bytes | None = None,
    ) -> None:
        self._thread = thread  # owns the read-write connection
        self._reader = reader  # lookups, on the thread that owns the store (the loop's)
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.health = HealthMonitor()  # fed by every failing call and by probe()
        self._chain_key = chain_key

    @classmethod
    async def open(
        cls,
        path: Path | str,
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout_ms: int = 5000,
        chain_key: bytes | None = None,
    ) -> SqliteStore:
        """Open (creating if needed) and migrate the database at `path`. With
        `chain_key` (ledger.chain_key) new transfers are sealed with it: the start of the
        keyed chain is recorded now if it is not, and a wrong key is refused here."""
        target = Path(path)
        if not target.parent.is_dir():
            raise StorageError(f"database: directory {target.parent} does not exist")
        try:
            files.create_private(target)  # before SQLite makes it with the umask's mode
        except OSError as exc:
            raise StorageError(f"database: cannot create {target}: {exc.strerror}") from exc

        def connect() -> sqlite3.Connection:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves. The connection is
            # made on the thread that uses it, and sqlite3 refuses it anywhere else.
            conn = sqlite3.connect(target, isolation_level=None)
            try:
                configure(conn, synchronous, busy_timeout_ms)
            except BaseException:
                conn.close()
                raise
            return conn

        thread = DatabaseThread(connect, name=f"sqlite:{target.name}")
        await thread.start()
        try:
            applied = await thread.call(migrate)
            if applied:
                log.info("database migrated: %s", ", ".join(applied))
            name_keys.report(await thread.call(lambda conn: transaction(
                conn, "BEGIN IMMEDIATE", lambda: name_keys.rekey_names(Connection(conn))
            )))
            if chain_key is not None:
                key = chain_key
                await thread.call(lambda conn: transaction(
                    conn, "BEGIN IMMEDIATE", lambda: start_keyed_chain(Connection(conn), key)
                ))
            reader = _open_reader(target, synchronous)
            files.tighten_database(target)  # -wal and -shm exist from here on
        except BaseException:
            await thread.close()
            raise
        return cls(thread, target, reader, busy_timeout_ms, chain_key)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._thread.call(fn)
        except StorageError as exc:
            self.health.saw(exc)
            raise

    async def write(self, work: Callable[[Ledger], T]) -> T:
        key = self._chain_key
        try:
            return await self._thread.write(lambda conn: work(SqlLedger(Connection(conn), key)))
        except StorageError as exc:
            self.health.saw(exc)
            raise

    async def read(self, work: Callable[[Ledger], T]) -> T:
        return await self._run(
            lambda conn: transaction(conn, "BEGIN", lambda: work(SqlLedger(Connection(conn))))
        )

    async def lookup(self, work: Callable[[Ledger], T]) -> T:
        """A small read on this thread: a hop to the database thread and back costs more
        event-loop time than the read itself (bench/e2e.py: about a fifth of an update).
        Under a rare lock, or with no reader, it goes to the database thread after all."""
        reader = self._reader
        if reader is None:
            return await self.read(work)
        ledger = SqlLedger(Connection(reader))
        try:
            return transaction(reader, "BEGIN", lambda: work(ledger))
        except StoreBusy:
            return await self.read(work)
        except StorageError as exc:
            self.health.saw(exc)
            raise

    async def verify(self, work: Callable[[LedgerSnapshot], T]) -> T:
        return await self._run(
            lambda conn: transaction(conn, "BEGIN", lambda: work(SqlSnapshot(Connection(conn))))
        )

    async def ping(self) -> bool:
        """True when the database answers a query (for /healthz); false once closed."""
        try:
            row = await self._run(lambda conn: conn.execute("SELECT 1").fetchone())
        except BillingError:
            return False
        return bool(row and row[0] == 1)

    async def probe(self, now_us: int, *, deep: bool) -> StorageHealth:
        """Check the database as storage/probe.py describes and record the result in
        `health`; `deep` adds `PRAGMA quick_check` (reads every page, off the loop)."""
        directory = self.path.parent

        def checks(conn: sqlite3.Connection) -> tuple[StorageHealth, bool]:
            found = probe.check_space(conn, directory)
            if found.healthy:
                found = probe.heartbeat(conn, now_us)
            return found, probe.deliberately_read_only(conn)

        try:
            found, deliberate = await self._thread.call(checks)
            if found.fault in (Fault.READ_ONLY, Fault.IO) and not deliberate:
                found = await self._reconnect(now_us, found)
            if found.healthy and deep:
                found = await asyncio.to_thread(
                    probe.quick_check, self.path, self.busy_timeout_ms
                )
        except (StorageError, OSError) as exc:
            found = StorageHealth(Fault.IO, str(exc))
        self.health.probed(found)
        return found

    async def _reconnect(self, now_us: int, failed: StorageHealth) -> StorageHealth:
        """A connection opened while the file could not be written never writes again:
        try a new one, so the bot recovers once the file is writable (no restart)."""
        try:
            await self._thread.reopen()
        except StorageError:
            return failed
        found: StorageHealth = await self._thread.call(lambda c: probe.heartbeat(c, now_us))
        return found if not found.healthy else HEALTHY

    async def integrity_check(self) -> tuple[str, ...]:
        """SQLite's `PRAGMA integrity_check`: () when the file is sound, else its findings
        (at most 20). A file too damaged to check is reported as such, not raised."""
        try:
            rows = await self._run(
                lambda conn: conn.execute("PRAGMA integrity_check(20)").fetchall()
            )
        except StorageError as exc:
            return (str(exc),)
        found = tuple(str(row[0]) for row in rows)
        return () if found == ("ok",) else found

    async def stats(self, now_us: int) -> StoreStats:
        """Figures for /metrics, read in one snapshot (cheap: indexed aggregates)."""
        return await self._run(
            lambda conn: transaction(conn, "BEGIN", lambda: read_stats(Connection(conn), now_us))
        )

    async def backup(self, destination: Path | str) -> Path:
        """A consistent online copy, written beside the target then renamed into place."""
        target = Path(destination)
        partial = target.with_name(f".{target.name}.partial")

        def copy(conn: sqlite3.Connection) -> None:
            if target.exists():
                raise StorageError(f"backup: {target} already exists")
            if not target.parent.is_dir():
                raise StorageError(f"backup: directory {target.parent} does not exist")
            files.create_private(partial)  # the copy is as private as the database
            dest = sqlite3.connect(partial)
            try:
                # pages=-1 copies everything in one step, inside one read snapshot of the
                # source: writers in WAL mode carry on, and the copy is consistent.
                conn.backup(dest, pages=-1)
                dest.execute("PRAGMA journal_mode = DELETE")
                check = dest.execute("PRAGMA integrity_check").fetchone()[0]
                if check != "ok":
                    raise StorageError(f"backup: integrity check of the copy failed: {check}")
            finally:
                dest.close()
            os.replace(partial, target)

        def clean(_conn: sqlite3.Connection) -> None:
            partial.unlink(missing_ok=True)

        try:
            await self._run(copy)
        finally:
            await self._run(clean)
        return target

    async def execute_raw(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement outside the ledger API (tests and operator tooling only)."""
        return await self._run(lambda conn: [tuple(r) for r in conn.execute(sql, args)])

    async def close(self) -> None:
        try:
            await self._run(lambda conn: conn.execute("PRAGMA optimize"))
        except StorageError as exc:
            # Best effort: optimize does not wait for another process's write lock, and
            # everything of ours is committed already.
            log.debug("skipped PRAGMA optimize on close: %s", exc)
        finally:
            reader, self._reader = self._reader, None
            if reader is not None:
                reader.close()
            await self._thread.close()


def _open_reader(target: Path, synchronous: Synchronous) -> sqlite3.Connection:
    """The read-only connection for lookups, made and used on the event loop's thread."""
    try:
        reader = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        try:
            configure(reader, synchronous, LOOKUP_BUSY_MS)
            reader.execute("PRAGMA query_only = ON")  # a lookup that writes is a bug: refuse
        except BaseException:
            reader.close()
            raise
    except sqlite3.Error as exc:
        raise translate(exc) from exc
    return reader
