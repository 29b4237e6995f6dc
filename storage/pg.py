"""psycopg 3 as storage/sql.py's SqlConnection, and psycopg's errors as core errors.

Statements raise core.errors.StorageError (a refused constraint or trigger says
"constraint failed", as on SQLite), StoreBusy for a conflict or a timeout, never a
psycopg error.

A refused statement undoes itself alone, as on SQLite, so a use case may catch the
refusal and carry on (the Ledger port's contract). PostgreSQL would abandon the whole
transaction instead, so inside a transaction each statement that writes runs between
`SAVEPOINT` and `RELEASE`, sent with it in one pipeline (one round trip, not three); a
refusal rolls back to the savepoint. Reads cannot be refused and run as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from core.errors import StorageError, StoreBusy
from storage.sql import POSTGRES, Cursor, Dialect, pg_statement

log = logging.getLogger(__name__)

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

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

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
            if not writes or raw.info.transaction_status != TransactionStatus.INTRANS:
                return raw.execute(query, args)
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

    def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> Cursor:
        raw = self.raw
        query, writes = pg_statement(sql)
        cur = raw.cursor()
        wrapped = False
        try:
            if not writes or raw.info.transaction_status != TransactionStatus.INTRANS:
                cur.executemany(query, args)
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
