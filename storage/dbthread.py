"""The database thread: one sqlite3 connection, owned by one thread, fed by a queue.

A use case is one synchronous function run on this thread in a single trip: a hop from
the event loop to the thread and back costs tens of microseconds of the loop's time, so
a use case of ten statements awaited one by one would cost ten times what it does.

A plain thread with a `SimpleQueue`, whose results come back through
`loop.call_soon_threadsafe`, costs about half the loop time per trip of
`loop.run_in_executor` over a one-worker `ThreadPoolExecutor` (~40 µs against ~75 µs
measured here): the executor adds a `concurrent.futures.Future` and its chaining to an
asyncio future on every call.

Group commit: writes that are already queued when the thread turns to a write share one
`BEGIN IMMEDIATE .. COMMIT`, each in its own SAVEPOINT. A use case that fails rolls back
to its savepoint alone, so it stays all or nothing and the others commit; nobody hears a
result before the COMMIT that makes it durable. Under load this saves a sync of the log
per write (synchronous=FULL) and a wake-up of the loop per write. If SQLite abandons the
shared transaction (a full disk, an I/O error), or the COMMIT fails, every use case of the
group runs again alone, in order, as if there had been no group.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from queue import Empty, SimpleQueue
from typing import Any, TypeVar

from core.errors import StorageError
from storage.errors import translate

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], Any]
log = logging.getLogger(__name__)

# Writes that may share one transaction: more than a burst of chat updates brings at once,
# and a bound on what one COMMIT carries (and on what runs again if a group fails whole).
MAX_GROUP = 64


@dataclass(frozen=True, eq=False)
class _Job:
    work: Work
    future: asyncio.Future[Any]
    write: bool  # runs inside a write transaction the thread opens (maybe shared)


@dataclass(frozen=True)
class _Done:
    value: Any = None
    error: BaseException | None = None


@dataclass(frozen=True, eq=False)
class _Stop:
    future: asyncio.Future[Any]  # answered once the connection is closed


@dataclass(frozen=True, eq=False)
class _Reopen:
    future: asyncio.Future[Any]  # answered once a new connection replaced the old one


def _settle(pairs: list[tuple[asyncio.Future[Any], _Done]]) -> None:
    """On the loop: hand each waiting caller its outcome (one wake-up for a whole group)."""
    for future, done in pairs:
        if future.done():  # the caller was cancelled meanwhile; the work stands
            continue
        if done.error is None:
            future.set_result(done.value)
        else:
            future.set_exception(done.error)


def _deliver(pairs: list[tuple[asyncio.Future[Any], _Done]]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], _Done]]] = {}
    for future, done in pairs:
        by_loop.setdefault(future.get_loop(), []).append((future, done))
    for loop, some in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, some)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            log.debug("database thread: result for a closed event loop dropped")


def _outcome(run: Callable[[], Any]) -> _Done:
    try:
        return _Done(value=run())
    except sqlite3.Error as exc:
        return _Done(error=_translated(exc))
    except BaseException as exc:
        return _Done(error=exc)


def _translated(exc: sqlite3.Error) -> StorageError:
    error = translate(exc)
    error.__cause__ = exc
    return error


def transaction(conn: sqlite3.Connection, begin: str, work: Callable[[], T]) -> T:
    """`work` inside BEGIN .. COMMIT; any exception rolls it all back and propagates."""
    try:
        conn.execute(begin)
    except sqlite3.Error as exc:
        raise translate(exc) from exc
    try:
        result = work()
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise translate(exc) from exc
        raise
    return result


class DatabaseThread:
    """Runs functions against one connection, one at a time, in the order submitted."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str) -> None:
        self._connect = connect
        self._queue: SimpleQueue[_Job | _Stop | _Reopen] = SimpleQueue()
        self._closed = False
        # A daemon: an interpreter that exits without close() abandons the open
        # transaction as a crash would (SQLite rolls it back on the next open).
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    async def start(self) -> None:
        """Start the thread and open the connection on it (its errors raise here)."""
        self._thread.start()
        try:
            await self.call(lambda _conn: None)
        except BaseException:
            await self.close()
            raise

    async def call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(conn)` on the thread, outside any transaction the thread opens."""
        return await self._submit(work, write=False)

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(conn)` inside a write transaction, maybe shared with other writes."""
        return await self._submit(work, write=True)

    async def _submit(self, work: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        if self._closed:
            raise StorageError("database: the store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put(_Job(work, future, write))
        return await future

    async def reopen(self) -> None:
        """Replace the connection with a new one (made as at start). A connection SQLite
        opened read-only (the file was not writable then) stays read-only after the file
        is made writable again: only a new one can write. Its errors raise here, and the
        old connection stays in use."""
        if self._closed:
            raise StorageError("database: the store is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put(_Reopen(future))
        await future

    async def close(self) -> None:
        """Run what is queued, close the connection, end the thread."""
        if self._closed:
            return
        self._closed = True  # from here on nothing joins the queue behind the stop
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put(_Stop(future))
        await future

    # -- on the thread ------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            self._serve_failed(exc)
            return
        held: _Job | _Stop | _Reopen | None = None
        while True:
            item = held if held is not None else self._queue.get()
            held = None
            if isinstance(item, _Stop):
                try:
                    conn.close()
                except sqlite3.Error as exc:
                    log.warning("database: close failed: %s", exc)
                _deliver([(item.future, _Done())])
                return
            if isinstance(item, _Reopen):
                conn = self._reopened(conn, item)
                continue
            if not item.write:
                _deliver([(item.future, _outcome(partial(item.work, conn)))])
                continue
            group = [item]
            while len(group) < MAX_GROUP:
                try:
                    more = self._queue.get_nowait()
                except Empty:
                    break
                if isinstance(more, _Job) and more.write:
                    group.append(more)
                else:
                    held = more  # runs next, after the group: the order is kept
                    break
            self._write(conn, group)

    def _reopened(self, conn: sqlite3.Connection, item: _Reopen) -> sqlite3.Connection:
        try:
            fresh = self._connect()
        except sqlite3.Error as exc:
            _deliver([(item.future, _Done(error=_translated(exc)))])
            return conn
        try:
            conn.close()
        except sqlite3.Error as exc:
            log.warning("database: close of the replaced connection failed: %s", exc)
        _deliver([(item.future, _Done())])
        return fresh

    def _serve_failed(self, exc: sqlite3.Error) -> None:
        """The connection could not be opened: every caller hears why, until close()."""
        while True:
            item = self._queue.get()
            error = _Done() if isinstance(item, _Stop) else _Done(error=_translated(exc))
            _deliver([(item.future, error)])
            if isinstance(item, _Stop):
                return

    def _write(self, conn: sqlite3.Connection, group: list[_Job]) -> None:
        if len(group) == 1:
            self._alone(conn, group)
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            _deliver([(job.future, _Done(error=_translated(exc))) for job in group])
            return
        outcomes: list[_Done] = []
        for job in group:
            try:
                conn.execute("SAVEPOINT use_case")
            except sqlite3.Error:
                self._abandon(conn, group)
                return
            done = _outcome(partial(job.work, conn))
            try:
                if done.error is not None:
                    conn.execute("ROLLBACK TO use_case")
                conn.execute("RELEASE use_case")
            except sqlite3.Error:
                # The shared transaction is gone (SQLite rolled it back on a full disk or
                # an I/O error): the ones done so far are undone too.
                self._abandon(conn, group)
                return
            outcomes.append(done)
        try:
            conn.execute("COMMIT")
        except sqlite3.Error:
            self._abandon(conn, group)
            return
        _deliver([(job.future, done) for job, done in zip(group, outcomes, strict=True)])

    def _abandon(self, conn: sqlite3.Connection, group: list[_Job]) -> None:
        """The shared transaction failed as a whole: nothing of it is committed, so each
        use case runs again alone and gets the outcome it would have had without a group."""
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.warning("database: rollback of a group failed: %s", exc)
        log.debug("database: a group of %d writes runs again one by one", len(group))
        self._alone(conn, group)

    @staticmethod
    def _alone(conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        for job in jobs:
            done = _outcome(partial(transaction, conn, "BEGIN IMMEDIATE", partial(job.work, conn)))
            _deliver([(job.future, done)])
