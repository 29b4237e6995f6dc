"""The PostgreSQL store: core.ports.Store over psycopg 3, the same SQL as SQLite's.

A use case is one synchronous function (the same SqlLedger code as on SQLite) run on a
worker thread, inside one transaction on a connection from a psycopg_pool
ConnectionPool; the thread pool is as large as the connection pool, so a use case never
waits for a thread while a connection is free.

Writes serialize. The ledger's hash chain is global (each transfer's digest covers the
one before it, whoever's partner it is), so a write transaction is READ COMMITTED and
first takes `pg_advisory_xact_lock(LEDGER_WRITE_KEY)`: writes from every connection of
every instance run one after another, as SQLite's `BEGIN IMMEDIATE` makes them, and the
no-overdraft rule, idempotency keys and the chain hold without row-lock reasoning. The
lock goes with the transaction (COMMIT, ROLLBACK, a dropped connection). Reads, lookups,
verify and /metrics figures run in REPEATABLE READ READ ONLY snapshots and never wait
for writers.

A transaction that fails on a conflict (SQLSTATE 40001 serialization failure, 40P01
deadlock: possible where other code takes row locks in another order) or because its
connection broke before COMMIT is run again, up to MAX_ATTEMPTS times with a growing,
jittered pause. One whose COMMIT was sent but never answered is not: it may have
committed, so the caller hears StorageError and retries under its idempotency key
(every use case that moves days has one), which answers from the stored outcome.

Timeouts: `connect_timeout` for a new connection, `statement_timeout` for each
statement (the wait for the write lock included), `idle_in_transaction_session_timeout`
so a client that hangs mid-transaction cannot hold the write lock for ever, and the
pool's own wait for a free connection.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import conninfo
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from core.errors import StorageError
from core.ports import Ledger, LedgerSnapshot
from storage import name_keys
from storage.chain import start_keyed_chain
from storage.health import HEALTHY, Fault, HealthMonitor, StorageHealth, fault_of
from storage.migrate import migrate_postgres
from storage.pg import CONFLICTS, PgConnection, translated, unreachable
from storage.probe import write_heartbeat
from storage.sql import Engine
from storage.sql_ledger import SqlLedger, SqlSnapshot
from storage.stats import StoreStats, read_stats

T = TypeVar("T")
log = logging.getLogger(__name__)

# The advisory lock every ledger write takes (storage/migrate.py has MIGRATIONS_KEY).
LEDGER_WRITE_KEY = 7_086_100_001
MAX_ATTEMPTS = 5
BACKOFF_S = 0.02  # first pause before a retry; doubled each time, with jitter


class Mode(Enum):
    """How a unit of work's transaction begins: one simple query (one round trip)."""

    WRITE = (
        "BEGIN ISOLATION LEVEL READ COMMITTED;"
        f" SELECT pg_advisory_xact_lock({LEDGER_WRITE_KEY})"
    )
    # A write outside the ledger (the heartbeat, operator statements): no ledger lock.
    PLAIN = "BEGIN ISOLATION LEVEL READ COMMITTED"
    READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"


# A connection back from the pool after resting longer than this is checked with a
# round trip before use (a server restart or a dropped link shows there); one in steady
# use is not, and if it died after all the use case runs again on another (_may_retry).
CHECK_AFTER_IDLE_S = 2.0


@dataclass(frozen=True)
class PgOptions:
    """Pool size and timeouts (database.* settings where there are any)."""

    min_size: int = 2
    max_size: int = 10
    connect_timeout_s: int = 5
    statement_timeout_ms: int = 30_000
    idle_in_transaction_ms: int = 60_000
    acquire_timeout_s: float = 5.0  # wait for a connection from the pool
    # Once the server is known to be out of reach, a call waits this long at most for a
    # connection (the pool keeps reconnecting behind it), so the bot answers at once
    # instead of after acquire_timeout_s per attempt; the first success ends it.
    unreachable_wait_s: float = 1.0
    # The pool gives up a series of reconnection attempts (1 s, 2 s, 4 s ... apart) after
    # this long and starts a fresh one on the next request: it bounds how long after the
    # server is back the first connection waits.
    reconnect_timeout_s: float = 10.0


def display_url(url: str) -> str:
    """The URL without its password, for logs and errors."""
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


class _Unknown(StorageError):
    """COMMIT was sent and no answer came: the transaction may or may not have landed."""


class PostgresStore:
    engine = Engine.POSTGRES

    def __init__(
        self,
        pool: ConnectionPool[psycopg.Connection[Any]],
        executor: ThreadPoolExecutor,
        url: str,
        chain_key: bytes | None,
        options: PgOptions | None = None,
    ) -> None:
        self._pool = pool
        self._options = options or PgOptions()
        self._unreachable = False  # the last call could not reach the server
        self._executor = executor
        self.url = display_url(url)  # no password: safe to print
        self._chain_key = chain_key
        self.health = HealthMonitor()  # fed by every failing call and by probe()
        self._closed = False

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        chain_key: bytes | None = None,
        options: PgOptions | None = None,
    ) -> PostgresStore:
        """Connect, migrate (each migration once, whoever starts alongside), re-derive
        name keys and check or start the keyed chain, as SqliteStore.open does."""
        opts = options or PgOptions()
        server_options = (
            f"-c statement_timeout={opts.statement_timeout_ms}"
            f" -c idle_in_transaction_session_timeout={opts.idle_in_transaction_ms}"
        )
        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=opts.min_size,
            max_size=opts.max_size,
            open=False,
            name="partnerbot",
            timeout=opts.acquire_timeout_s,
            reconnect_timeout=opts.reconnect_timeout_s,
            # A connection the server dropped while it sat in the pool is replaced
            # before a use case gets it (an empty query: one round trip).
            check=_Rested(CHECK_AFTER_IDLE_S),
            kwargs={
                "autocommit": True,  # transactions are begun and ended explicitly
                "connect_timeout": opts.connect_timeout_s,
                "options": server_options,
                "application_name": "partnerbot",
            },
        )
        shown = display_url(url)
        try:
            await asyncio.to_thread(pool.open, True, float(opts.connect_timeout_s) * 2)
        except psycopg.Error as exc:
            await asyncio.to_thread(pool.close)
            raise StorageError(f"database: cannot connect to {shown}: {exc}") from exc
        executor = ThreadPoolExecutor(max_workers=opts.max_size, thread_name_prefix="pg")
        store = cls(pool, executor, url, chain_key, opts)
        try:
            applied = await store._call(Mode.PLAIN, migrate_postgres, managed=False)
            if applied:
                log.info("database migrated: %s", ", ".join(applied))
            name_keys.report(await store._call(Mode.WRITE, name_keys.rekey_names))
            if chain_key is not None:
                key = chain_key
                await store._call(Mode.WRITE, lambda conn: start_keyed_chain(conn, key))
        except BaseException:
            await store.close()
            raise
        log.info("database: PostgreSQL at %s (pool %d..%d)", shown, opts.min_size, opts.max_size)
        return store

    # -- running work -----------------------------------------------------------------

    async def _call(
        self, mode: Mode, work: Callable[[PgConnection], T], *, managed: bool = True
    ) -> T:
        """`work` on a worker thread in a transaction begun as `mode` says (or, with
        managed=False, on an autocommit connection that begins its own)."""
        if self._closed:
            raise StorageError("database: the store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor, self._attempts, mode, work, managed
            )
        except StorageError as exc:
            self.health.saw(exc)
            raise

    def _attempts(self, mode: Mode, work: Callable[[PgConnection], T], managed: bool) -> T:
        pause = BACKOFF_S
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return self._once(mode, work, managed)
            except _Unknown:
                raise
            except StorageError as exc:
                if attempt == MAX_ATTEMPTS or not _may_retry(exc):
                    raise
                log.info("database: attempt %d of %d failed, again: %s", attempt,
                         MAX_ATTEMPTS, exc)
            time.sleep(pause * (0.5 + random.random()))  # noqa: S311 - jitter, not secrecy
            pause *= 2
        raise AssertionError("unreachable")  # the loop returns or raises

    def _once(self, mode: Mode, work: Callable[[PgConnection], T], managed: bool) -> T:
        try:
            raw = self._pool.getconn(
                self._options.unreachable_wait_s if self._unreachable
                else self._options.acquire_timeout_s
            )
        except psycopg.Error as exc:
            self._unreachable = unreachable(exc)
            raise translated(exc) from exc
        self._unreachable = False
        used: list[PgConnection] = []  # the attempt's views of `raw` (one, or two)
        try:
            conn = PgConnection(raw)
            used.append(conn)
            if not managed:
                return work(conn)
            try:
                result = self._transaction(mode, work, conn)
            except BaseException:
                if not conn.refused:
                    raise
            if conn.refused:
                # A write was refused bare, and the transaction with it: the use case
                # runs again with a savepoint per write, so the refusal undoes only
                # itself and the use case sees exactly what SQLite would show it.
                _rollback(raw)
                again = PgConnection(raw, savepoints=True)
                used.append(again)
                result = self._transaction(mode, work, again)
            try:
                # Never a prepared statement: the text on the wire says what it is.
                raw.execute("COMMIT", prepare=False)
            except psycopg.Error as exc:
                if raw.broken or raw.closed:
                    raise _Unknown(
                        "database: the connection broke while committing; the outcome is "
                        f"unknown (retry under the same key): {exc}"
                    ) from exc
                raise translated(exc) from exc
            return result
        finally:
            _rollback(raw)
            for view in used:
                view.close_streams()
            _RESTED_AT[raw] = time.monotonic()
            self._pool.putconn(raw)

    @staticmethod
    def _transaction(mode: Mode, work: Callable[[PgConnection], T], conn: PgConnection) -> T:
        conn.execute(mode.value)
        return work(conn)

    # -- core.ports.Store ----------------------------------------------------------------

    async def write(self, work: Callable[[Ledger], T]) -> T:
        key = self._chain_key
        return await self._call(Mode.WRITE, lambda conn: work(SqlLedger(conn, key)))

    async def read(self, work: Callable[[Ledger], T]) -> T:
        return await self._call(Mode.READ, lambda conn: work(SqlLedger(conn)))

    async def lookup(self, work: Callable[[Ledger], T]) -> T:
        """A small read: on PostgreSQL it is a read like any other (a network round trip
        either way, so there is nothing to save by staying on the event loop)."""
        return await self.read(work)

    async def verify(self, work: Callable[[LedgerSnapshot], T]) -> T:
        return await self._call(Mode.READ, lambda conn: work(SqlSnapshot(conn)))

    # -- operations ----------------------------------------------------------------------

    async def ping(self) -> bool:
        """True when the database answers a query (for /healthz); false once closed."""
        try:
            row = await self._call(Mode.READ, lambda c: c.execute("SELECT 1").fetchone())
        except StorageError:
            return False
        return bool(row and row[0] == 1)

    async def probe(self, now_us: int, *, deep: bool) -> StorageHealth:
        """One committed heartbeat write (a dead server, a read-only standby, a full disk
        and a lock held past statement_timeout all show here); `deep` adds nothing on
        PostgreSQL: the server checks its own pages (data checksums) as it reads them."""
        del deep

        def beat(conn: PgConnection) -> None:
            write_heartbeat(conn, now_us)

        try:
            await self._call(Mode.PLAIN, beat)
            found = HEALTHY
        except StorageError as exc:
            found = fault_of(exc) or StorageHealth(Fault.IO, str(exc))
        self.health.probed(found)
        return found

    async def integrity_check(self) -> tuple[str, ...]:
        """PostgreSQL has no cheap whole-database check like SQLite's integrity_check:
        () when the server answers (damaged pages fail the reads that meet them, and
        `ledger verify` reads every transfer), else why it cannot be checked."""
        try:
            await self._call(Mode.READ, lambda c: c.execute("SELECT 1").fetchone())
        except StorageError as exc:
            return (str(exc),)
        return ()

    async def stats(self, now_us: int) -> StoreStats:
        """Figures for /metrics, read in one snapshot."""
        return await self._call(Mode.READ, lambda conn: read_stats(conn, now_us))

    async def backup(self, destination: Path | str) -> Path:
        """Refused: a PostgreSQL database is backed up by the server's own tools."""
        raise StorageError(
            f"backup: the database is PostgreSQL ({self.url}); back it up with pg_dump "
            f"(or the server's continuous archiving), not to {destination}"
        )

    async def execute_raw(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement outside the ledger API (tests and operator tooling only),
        `?` placeholders, in a transaction of its own."""

        def run(conn: PgConnection) -> list[tuple[Any, ...]]:
            cur = conn.execute(sql, args)
            return [tuple(r) for r in cur] if _has_rows(cur) else []

        return await self._call(Mode.PLAIN, run)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=False)
        await asyncio.to_thread(self._pool.close)


_RESTED_AT: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = (
    weakref.WeakKeyDictionary()
)


class _Rested:
    """The pool's `check`: ConnectionPool.check_connection (an empty query), but only
    for a connection that rested in the pool for `after` seconds or more."""

    def __init__(self, after: float) -> None:
        self.after = after

    def __call__(self, conn: psycopg.Connection[Any]) -> None:
        rested = _RESTED_AT.get(conn)
        if conn.closed or conn.broken or rested is None or (
            time.monotonic() - rested >= self.after
        ):
            ConnectionPool.check_connection(conn)


def _has_rows(cur: object) -> bool:
    return getattr(cur, "description", None) is not None


def _rollback(raw: psycopg.Connection[Any]) -> None:
    """Leave the connection idle for the next user: a failed or abandoned transaction is
    rolled back here (the pool would do it too, with a warning each time)."""
    if raw.closed or raw.info.transaction_status == TransactionStatus.IDLE:
        return
    try:
        raw.execute("ROLLBACK")
    except psycopg.Error as exc:
        log.debug("database: rollback failed (the pool drops the connection): %s", exc)


def _may_retry(exc: StorageError) -> bool:
    """A conflict, or a connection that broke before COMMIT was sent: nothing of the
    transaction landed, so running it again is safe."""
    cause = exc.__cause__
    if isinstance(cause, PoolTimeout):
        return False  # the pool already waited its timeout for a connection: no more
    return isinstance(cause, CONFLICTS) or (cause is not None and unreachable(cause))
