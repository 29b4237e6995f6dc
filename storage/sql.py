"""What the ledger's SQL (storage/sql_ledger.py, sql_inbox.py, chain.py, stats.py,
name_keys.py, probe.py) needs from a database connection, for SQLite and PostgreSQL alike.

The SQL is written once, in a portable subset: `?` placeholders (the PostgreSQL
connection rewrites them to psycopg's `%s`), `INSERT ... RETURNING` instead of
`lastrowid`, 0/1 INTEGER booleans, integer microseconds for instants, an alias on every
subquery in FROM, `ON CONFLICT ... DO NOTHING/DO UPDATE`. The few things the two engines
spell differently are asked of the connection's `Dialect`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

# A result row: a plain tuple on both engines (no row factory is set on either).
Row = Sequence[Any]


class Cursor(Protocol):
    """The part of a DB-API cursor the SQL code uses (sqlite3's and psycopg's both fit)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchmany(self, size: int = ...) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Engine(Enum):
    SQLITE = "sqlite"
    POSTGRES = "postgresql"


@dataclass(frozen=True, slots=True)
class Dialect:
    """The spellings that differ between the engines, as SQL fragments."""

    engine: Engine
    # `<column> IS one of the ids in the single parameter` (see id_list).
    in_id_list: str
    # `<column> holds a character outside printable ASCII`.
    not_printable_ascii: str

    def member_of(self, column: str) -> str:
        return self.in_id_list.format(column=column)

    def id_list(self, ids: Sequence[int]) -> object:
        """The one parameter that `member_of` compares against: however many ids there
        are, one statement and one parameter (no SQL text per list length)."""
        if self.engine is Engine.SQLITE:
            return json.dumps([int(i) for i in ids])
        return [int(i) for i in ids]

    def non_ascii(self, column: str) -> str:
        return self.not_printable_ascii.format(column=column)


SQLITE = Dialect(
    Engine.SQLITE,
    in_id_list="{column} IN (SELECT value FROM json_each(?))",
    # GLOB compares code points; a class of everything from space to tilde.
    not_printable_ascii="{column} GLOB '*[^ -~]*'",
)
POSTGRES = Dialect(
    Engine.POSTGRES,
    in_id_list="{column} = ANY(?)",
    not_printable_ascii="{column} ~ '[^ -~]'",
)


class SqlConnection(Protocol):
    """A connection whose statements raise core.errors.StorageError (never a driver's own
    error) and which knows its dialect. storage/errors.py wraps sqlite3, storage/pg.py
    wraps psycopg."""

    @property
    def dialect(self) -> Dialect: ...

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> Cursor: ...

    def stream(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        """A query whose rows are read in batches (fetchmany) rather than all at once:
        `ledger verify` reads every transfer. Inside a transaction only."""
        ...


_CACHE_LIMIT = 2048
_PG_SQL: dict[str, tuple[str, bool]] = {}
_WRITES = ("INSERT", "UPDATE", "DELETE")


def pg_statement(sql: str) -> tuple[str, bool]:
    """`?` placeholders as psycopg's `%s` (a literal `%` escaped as `%%`), and whether
    the statement writes (INSERT, UPDATE, DELETE: it may be refused by a constraint).
    Worked out once per SQL string: the statements are constants or a few shapes, so the
    cache stays small; past its limit a string is worked out each time instead.

    The portable SQL never has a `?` inside a string literal or a comment: there is no
    parser here, only this rule."""
    found = _PG_SQL.get(sql)
    if found is None:
        found = (
            sql.replace("%", "%%").replace("?", "%s"),
            sql.lstrip().upper().startswith(_WRITES),
        )
        if len(_PG_SQL) < _CACHE_LIMIT:
            _PG_SQL[sql] = found
    return found
