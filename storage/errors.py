"""sqlite3 errors translated to domain errors at the storage boundary, and the sqlite3
connection as storage/sql.py's SqlConnection."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from core.errors import StorageError, StoreBusy
from storage.sql import SQLITE, Dialect


def translate(exc: sqlite3.Error) -> StorageError:
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        return StoreBusy("database: locked by another process for too long")
    if isinstance(exc, sqlite3.IntegrityError):
        return StorageError(f"database: constraint failed: {text}")
    return StorageError(f"database: {text}")


class Connection:
    """A sqlite3 connection whose statements raise StorageError, never sqlite3 errors.

    Use cases may catch a refusal (a duplicate key) and carry on in the same
    transaction; SQLite undoes only the failed statement.
    """

    dialect: Dialect = SQLITE

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.raw = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self.raw.execute(sql, args)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def stream(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.execute(sql, args)  # sqlite3 cursors step through rows as read

    def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        try:
            return self.raw.executemany(sql, args)
        except sqlite3.Error as exc:
            raise translate(exc) from exc
