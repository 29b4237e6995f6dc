"""psycopg 3 as storage/sql.py's SqlConnection, and psycopg's errors as core errors.

Statements raise core.errors.StorageError (a refused constraint or trigger says
"constraint failed", as on SQLite), StoreBusy for a conflict or a timeout, never a
psycopg error.

A refused statement undoes itself alone, as on SQLite, so a use case may catch the
refusal and carry on (the Ledger port's contract), whereas PostgreSQL abandons the whole
transaction. Refusals are rare (the use cases check first; constraints and triggers are
the backstop), so statements run bare, and a write that fails marks the connection
`refused`: the store then rolls the transaction back and runs the use case again with
`savepoints=True`, where each write runs between SAVEPOINT and RELEASE (sent with it in
one pipeline: one round trip, not three) and a refusal rolls back to its savepoint.
Reads cannot be refused and always run as they are.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from core.errors import StorageError, StoreBusy
from storage.sql import POSTGRES, Cursor, Dialect, pg_statement

log = logging.getLogger(__name__)
_CURSORS = itertools.count(1)  # names of server-side cursors (unique per connection)

# Conflicts between concurrent transactions: the transaction was undone and may simply
# run again (storage/postgres.py retries them, a bounded number of times).
CONFLICTS: tuple[type[psycopg.Error], ...] = (
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
)
# Waits cut short by a timeout (statement_timeout, lock_timeout).
TIMEOUTS: tuple[type[psycopg.Error], ...] = (
    pg_errors.QueryCanceled,
    pg_errors.LockNotAvailable,
)


def _text(exc: psycopg.Error) -> str:
    # The server's primary message; its DETAIL/CONTEXT lines stay in the cause.
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def unreachable(exc: BaseException) -> bool:
    """The server could not be reached or the connection broke (no SQLSTATE from a
    server, or class 08: connection exception; 57P0x: the server is shutting down)."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def translate(exc: psycopg.Error) -> StorageError:
    text = _text(exc)
    if isinstance(exc, psycopg.IntegrityError):
        return StorageError(f"database: constraint failed: {text}")
    if isinstance(exc, CONFLICTS):
        return StoreBusy(f"database: conflict with a concurrent transaction: {text}")
    if isinstance(exc, TIMEOUTS):
        return StoreBusy(f"database: timed out waiting: {text}")
    if unreachable(exc):
        return StorageError(f"database: unreachable: {text}")
    return StorageError(f"database: {text}")


def translated(exc: psycopg.Error) -> StorageError:
    error = translate(exc)
    error.__cause__ = exc
    return error


class PgConnection:
    """A psycopg connection whose statements take `?` placeholders and raise
    StorageError. A statement without arguments goes as written (no `%` escaping)."""

    __slots__ = ("raw", "refused", "savepoints", "streams")

    def __init__(self, raw: psycopg.Connection[Any], *, savepoints: bool = False) -> None:
        self.raw = raw
        self.savepoints = savepoints  # a savepoint around each write in a transaction
        self.refused = False  # a write failed bare: the transaction is abandoned
        self.streams: list[psycopg.ServerCursor[Any]] = []  # closed by close_streams()

    @property
    def dialect(self) -> Dialect:
        return POSTGRES

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        raw = self.raw
        wrapped = False
        try:
            if not args:
                return raw.execute(sql)
            query, writes = pg_statement(sql)
            if not writes:
                return raw.execute(query, args)
            if not self.savepoints or raw.info.transaction_status != TransactionStatus.INTRANS:
                try:
                    return raw.execute(query, args)
                except psycopg.Error:
                    self.refused = True
                    raise
            wrapped = True
            with raw.pipeline():
                raw.execute("SAVEPOINT statement")
                cur = raw.execute(query, args)
                raw.execute("RELEASE statement")
            return cur
        except psycopg.Error as exc:
            if wrapped:
                self._undo_statement()
            raise translated(exc) from exc

    def stream(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        """A server-side cursor (DECLARE ... FETCH): psycopg's ordinary cursor would hold
        every row of the result in memory at once."""
        cur = self.raw.cursor(name=f"stream_{next(_CURSORS)}")
        self.streams.append(cur)
        try:
            cur.execute(pg_statement(sql)[0] if args else sql, args or None)
        except psycopg.Error as exc:
            raise translated(exc) from exc
        return cur

    def close_streams(self) -> None:
        """Mark the server-side cursors closed once their transaction is over (the server
        dropped them with it): never later, from a garbage collector, on a connection
        someone else may be using by then."""
        for cur in self.streams:
            try:
                cur.close()
            except psycopg.Error as exc:
                log.debug("database: closing a server-side cursor failed: %s", exc)
        self.streams.clear()

    def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> Cursor:
        raw = self.raw
        query, writes = pg_statement(sql)
        cur = raw.cursor()
        wrapped = False
        try:
            if not writes:
                cur.executemany(query, args)
                return cur
            if not self.savepoints or raw.info.transaction_status != TransactionStatus.INTRANS:
                try:
                    cur.executemany(query, args)
                except psycopg.Error:
                    self.refused = True
                    raise
                return cur
            wrapped = True
            raw.execute("SAVEPOINT statement")
            cur.executemany(query, args)
            raw.execute("RELEASE statement")
            return cur
        except psycopg.Error as exc:
            if wrapped:
                self._undo_statement()
            raise translated(exc) from exc

    def _undo_statement(self) -> None:
        """After a refused write, back to its savepoint (and rid of it): the transaction
        carries on as if the statement had never run."""
        raw = self.raw
        if raw.closed or raw.broken:
            return
        try:
            raw.execute("ROLLBACK TO SAVEPOINT statement")
            raw.execute("RELEASE statement")
        except psycopg.Error as exc:
            # The savepoint itself was not made (the pipeline failed before it): the
            # transaction stays abandoned and the use case fails whole.
            log.debug("database: could not undo a refused statement alone: %s", exc)
