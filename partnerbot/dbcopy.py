"""`partnerbot db copy URL`: the SQLite database into an empty PostgreSQL one, chain intact.

The move to PostgreSQL (README: "Moving to PostgreSQL") is one command, with the bot
stopped:

1. the URL is checked and the target must be EMPTY (no table at all): a copy never mixes
   with, or overwrites, data already there;
2. in ONE transaction on the target: its schema is made by the PostgreSQL migrations, then
   every table is copied with COPY (psycopg's fastest path), parents before children
   (foreign keys), each in primary-key order. Accounts arrive with a balance of 0 and the
   transfers in id order, so the PostgreSQL trigger that moves days recomputes every
   balance, and its no-overdraft and append-only rules see the history replayed as it
   happened; digests are copied verbatim (a keyed chain keeps working with the same
   `ledger.chain_key`). Identity sequences are set past the copied ids. Then every table's
   row count and every account's balance are compared with the source: any difference
   rolls the whole copy back and the target stays empty;
3. `ledger verify`'s own check runs on the copy.

The source is read in one read transaction (a consistent snapshot even if a CLI command
writes meanwhile). Rows move as the drivers read and write them: both engines hold the
same values (integers, text, NULL) by the storage plan's portable schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from core.errors import StorageError
from core.invariants import VerifyReport
from core.policy import BillingPolicy
from core.service import BillingService
from partnerbot.config import Settings
from partnerbot.wiring import SystemClock
from storage import migrate
from storage.pg import PgConnection
from storage.postgres import PostgresStore, display_url
from storage.sql import Cursor, Dialect

# Bookkeeping of each engine's migration runner: never copied, the target has its own.
NOT_COPIED = frozenset({"schema_migrations"})
BATCH = 5000  # rows read from SQLite at a time


class CopyRefused(Exception):
    """The copy did not happen (or was rolled back): one line, no secret."""


@dataclass(frozen=True)
class TableCopied:
    name: str
    rows: int


@dataclass(frozen=True)
class CopyDone:
    target: str  # the URL without its password
    tables: tuple[TableCopied, ...]
    balances: int  # accounts whose balance was compared with the source's

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)


def check_url(url: str) -> str:
    """The target URL if it names a PostgreSQL database; else CopyRefused, without echoing
    the URL (it may hold a password)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise CopyRefused(f"not a PostgreSQL URL ({exc})") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise CopyRefused(
            "not a PostgreSQL URL: expected postgresql://user:password@host:port/database"
        )
    if not parts.hostname or not parts.path.strip("/"):
        raise CopyRefused("the URL must name a host and a database: "
                          "postgresql://user:password@host:port/database")
    return url


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect(url: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(url, connect_timeout=10, autocommit=True)
    except psycopg.Error as exc:
        raise CopyRefused(f"cannot connect to {display_url(url)}: {first_line(exc)}") from None


def existing_tables(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = current_schema() ORDER BY table_name"
    ).fetchall()
    return [str(r[0]) for r in rows]


def refuse_unless_empty(conn: psycopg.Connection[Any], url: str) -> None:
    found = existing_tables(conn)
    if found:
        raise CopyRefused(
            f"{display_url(url)} is not empty ({len(found)} tables, e.g. {found[0]}): "
            "db copy fills only an empty database"
        )


# -------------------------------------------------------------------------- the source


def source_tables(src: sqlite3.Connection) -> list[str]:
    """The source's tables, parents before children (foreign keys), then by name."""
    names = sorted(
        str(r[0]) for r in src.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        if str(r[0]) not in NOT_COPIED
    )
    parents = {
        name: {str(fk[2]) for fk in src.execute(f'PRAGMA foreign_key_list("{name}")')} - {name}
        for name in names
    }
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [n for n in names if n not in ordered and parents[n] <= set(ordered)]
        if not ready:  # a cycle: cannot happen with this schema, but never loop forever
            left = sorted(set(names) - set(ordered))
            raise CopyRefused(f"foreign keys form a cycle among {left}")
        ordered.extend(ready)
    return ordered


def columns_of(src: sqlite3.Connection, table: str) -> tuple[list[str], list[str]]:
    """(every column, the primary key's columns) in table order."""
    info = src.execute(f'PRAGMA table_info("{table}")').fetchall()
    columns = [str(c[1]) for c in info]
    key = [str(c[1]) for c in sorted(info, key=lambda c: int(c[5])) if int(c[5]) > 0]
    return columns, key


def read_rows(
    src: sqlite3.Connection, table: str, columns: Sequence[str], order: Sequence[str],
    zero: str | None = None,
) -> Iterator[tuple[Any, ...]]:
    """The rows in primary-key order; the column `zero` read as 0 (balances)."""
    picked = ", ".join("0" if c == zero else f'"{c}"' for c in columns)
    by = ", ".join(f'"{c}"' for c in order) or "rowid"
    cursor = src.execute(f'SELECT {picked} FROM "{table}" ORDER BY {by}')  # noqa: S608
    while batch := cursor.fetchmany(BATCH):
        yield from (tuple(r) for r in batch)


# -------------------------------------------------------------------------- the target


def target_columns(conn: psycopg.Connection[Any], table: str) -> set[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s", (table,),
    ).fetchall()
    return {str(r[0]) for r in rows}


def count(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
    found = row.fetchone()
    return int(found[0]) if found else 0


def copy_table(
    conn: psycopg.Connection[Any], table: str, columns: Sequence[str], key: Sequence[str],
    rows: Iterator[tuple[Any, ...]], seeded: bool,
) -> None:
    """COPY `rows` into `table`. A table the migrations already seeded (the outside
    accounts) goes through a temporary table, and a seeded row the source also has takes
    the source's values (its key's ON CONFLICT); the row counts compared afterwards catch
    any other difference."""
    names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    into = sql.Identifier(table)
    if seeded:
        into = sql.Identifier(f"copy_{table}")
        conn.execute(sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {}"
                             " WITH NO DATA").format(into, names, sql.Identifier(table)))
    with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(into, names)) as copy:
        for row in rows:
            copy.write_row(row)
    if seeded:
        rest = [c for c in columns if c not in key]
        on_conflict: sql.Composable = sql.SQL("DO NOTHING")
        if key and rest:
            on_conflict = sql.SQL("({}) DO UPDATE SET {}").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in key),
                sql.SQL(", ").join(
                    sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
                    for c in rest
                ),
            )
        conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT {}")
                     .format(sql.Identifier(table), names, names, into, on_conflict))


def replay_transfers(
    conn: psycopg.Connection[Any], columns: Sequence[str], rows: Iterator[tuple[Any, ...]]
) -> None:
    """The transfers one INSERT each, in id order, not one COPY: PostgreSQL runs a row's
    AFTER trigger (the one that moves the days) at the end of its statement, so within
    one COPY every row's BEFORE check (no overdraft) would see the balances from before
    the whole COPY. One statement per row replays the history as it was written."""
    statement = sql.SQL("INSERT INTO transfers ({}) VALUES ({})").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        sql.SQL(", ").join(sql.Placeholder() for _ in columns),
    )
    with conn.cursor() as cur:
        while batch := list(itertools.islice(rows, BATCH)):
            cur.executemany(statement, batch)


def reset_sequences(conn: psycopg.Connection[Any]) -> None:
    """Each identity or serial column's sequence past the largest copied id, so the next
    row PostgreSQL numbers does not collide with a copied one."""
    found = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema()"
        " AND pg_get_serial_sequence(quote_ident(table_name), column_name) IS NOT NULL"
    ).fetchall()
    for table, column in found:
        conn.execute(
            sql.SQL("SELECT setval(pg_get_serial_sequence(%s, %s),"
                    " coalesce((SELECT max({}) FROM {}), 0) + 1, false)")
            .format(sql.Identifier(column), sql.Identifier(table)),
            (sql.Identifier(table).as_string(conn), column),
        )


def balances(rows: Sequence[Sequence[Any]]) -> dict[str, int]:
    return {str(code): int(balance) for code, balance in rows}


# ---------------------------------------------------------------------------- the copy


Migrate = Callable[[psycopg.Connection[Any]], None]


def copy_tables(
    src: sqlite3.Connection, conn: psycopg.Connection[Any], migrate: Migrate
) -> tuple[list[TableCopied], int]:
    """The copy's one transaction: the schema, every table, the checks. Returns the tables
    copied and the number of balances compared."""
    copied: list[TableCopied] = []
    with conn.transaction():
        migrate(conn)
        made = set(existing_tables(conn))
        for table in source_tables(src):
            columns, key = columns_of(src, table)
            if table not in made:
                raise CopyRefused(f"table {table} has no counterpart in the PostgreSQL schema")
            missing = set(columns) - target_columns(conn, table)
            if missing:
                raise CopyRefused(f"{table}: no column {sorted(missing)} in PostgreSQL")
            rows = read_rows(src, table, columns, key,
                             zero="balance" if table == "accounts" else None)
            try:
                if table == "transfers":
                    replay_transfers(conn, columns, rows)
                else:
                    copy_table(conn, table, columns, key, rows, seeded=count(conn, table) > 0)
            except psycopg.Error as exc:
                raise CopyRefused(f"{table}: {first_line(exc)}; nothing kept") from None
            (expected,) = src.execute(f'SELECT count(*) FROM "{table}"').fetchone()  # noqa: S608
            got = count(conn, table)
            if got != int(expected):
                raise CopyRefused(f"{table}: {got} rows copied of {expected}; nothing kept")
            copied.append(TableCopied(table, got))
        reset_sequences(conn)
        want = balances(src.execute("SELECT code, balance FROM accounts").fetchall())
        have = balances(conn.execute("SELECT code, balance FROM accounts").fetchall())
        wrong = sorted(c for c in want.keys() | have.keys() if want.get(c) != have.get(c))
        if wrong:
            raise CopyRefused(
                f"balances differ after replaying the transfers ({len(wrong)} accounts, "
                f"e.g. {wrong[0]}: {want.get(wrong[0])} in SQLite, "
                f"{have.get(wrong[0])} in PostgreSQL); nothing kept"
            )
    return copied, len(want)


def copy_database(source: Path, url: str, migrate: Migrate) -> CopyDone:
    """Copy the SQLite file `source` into the empty database at `url`; `migrate` makes the
    target's schema on the given connection, inside the copy's transaction."""
    check_url(url)
    with contextlib.closing(
        sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=10)
    ) as src, connect(url) as conn:
        refuse_unless_empty(conn, url)
        src.execute("BEGIN")  # one read transaction: a consistent snapshot
        try:
            copied, compared = copy_tables(src, conn, migrate)
        except (psycopg.Error, StorageError) as exc:
            raise CopyRefused(f"{first_line(exc)}; nothing kept") from None
        finally:
            src.rollback()
    return CopyDone(display_url(url), tuple(copied), compared)


class _InOneTransaction:
    """storage/migrate.py's runner inside the copy's transaction: each migration's own
    BEGIN, COMMIT and ROLLBACK become a savepoint, so a copy that fails later takes the
    schema back with it and the target is left as empty as it was found."""

    def __init__(self, conn: PgConnection) -> None:
        self.conn = conn

    @property
    def dialect(self) -> Dialect:
        return self.conn.dialect

    def execute(self, statement: str, args: Sequence[Any] = ()) -> Cursor:
        verb = statement.split(None, 1)[0].upper() if statement.strip() else ""
        nested = {"BEGIN": "SAVEPOINT migration", "COMMIT": "RELEASE SAVEPOINT migration",
                  "ROLLBACK": "ROLLBACK TO SAVEPOINT migration"}.get(verb)
        return self.conn.execute(nested or statement, () if nested else args)

    def executemany(self, statement: str, args: Iterable[Sequence[Any]]) -> Cursor:
        return self.conn.executemany(statement, args)

    def stream(self, statement: str, args: Sequence[Any] = ()) -> Cursor:
        return self.conn.stream(statement, args)


def migrate_postgres(conn: psycopg.Connection[Any]) -> None:
    """The PostgreSQL migrations (storage/migrations/postgres), on `conn`, inside its
    transaction."""
    migrate.migrate_postgres(_InOneTransaction(PgConnection(conn)))


async def verify_postgres(settings: Settings, url: str) -> VerifyReport:
    """`ledger verify`'s check of the copy. Opened without the chain key, as `ledger
    verify` opens a ledger (checking never starts a keyed chain); checked with it."""
    store = await PostgresStore.open(url)
    try:
        billing = BillingService(store, SystemClock(), BillingPolicy())
        return await billing.verify(chain_key=settings.ledger.chain_key_bytes)
    finally:
        await store.close()


async def copy_to_postgres(settings: Settings, url: str) -> tuple[CopyDone, VerifyReport]:
    """The whole command: copy (on a worker thread: the drivers block), then verify."""
    check_url(url)
    done = await asyncio.to_thread(copy_database, settings.database.path, url, migrate_postgres)
    return done, await verify_postgres(settings, url)


__all__ = [
    "CopyDone", "CopyRefused", "TableCopied", "check_url", "copy_database", "copy_to_postgres",
    "migrate_postgres",
]
