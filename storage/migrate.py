"""Versioned schema migrations, applied at start-up, for both engines.

Each file `migrations/NNNN_name.sql` (SQLite) and `migrations/postgres/NNNN_name.sql`
(PostgreSQL, the same numbers and names) runs once, in its own transaction that also
records its version, so two processes starting at once apply it exactly once and a crash
mid-way leaves the previous version intact. On SQLite the transaction is `BEGIN
IMMEDIATE` (the write lock); on PostgreSQL it first takes
`pg_advisory_xact_lock(MIGRATIONS_KEY)`, and the version check runs under it.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from storage.errors import Connection
from storage.sql import Engine, SqlConnection

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

# pg_advisory_xact_lock keys of partnerbot (one bigint space per database): migrations
# here, ledger writes in storage/postgres.py. Other features pick keys outside these.
MIGRATIONS_KEY = 7_086_100_002


def available(engine: Engine = Engine.SQLITE) -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every migration shipped for `engine`."""
    package = "storage.migrations" if engine is Engine.SQLITE else "storage.migrations.postgres"
    found = []
    for entry in resources.files(package).iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def _statements(script: str) -> list[str]:
    """Split a SQLite script into statements (triggers contain semicolons of their own)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"incomplete statement at the end of a migration: {current[:60]!r}")
    return statements


def _whole(script: str) -> list[str]:
    # PostgreSQL takes a script of several statements in one simple query (psycopg sends
    # a statement without parameters as it is), dollar-quoted function bodies included.
    return [script]


@dataclass(frozen=True)
class _Runner:
    engine: Engine
    begin: tuple[str, ...]  # what opens a migration's transaction and takes the lock
    versions_table: str
    split: Callable[[str], list[str]]


_SQLITE = _Runner(
    Engine.SQLITE,
    ("BEGIN IMMEDIATE",),
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL"
    " DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))) STRICT",
    _statements,
)
_POSTGRES = _Runner(
    Engine.POSTGRES,
    ("BEGIN ISOLATION LEVEL READ COMMITTED", f"SELECT pg_advisory_xact_lock({MIGRATIONS_KEY})"),
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
    " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    _whole,
)


def current_version(conn: sqlite3.Connection) -> int:
    Connection(conn).execute(_SQLITE.versions_table)
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def _apply(conn: SqlConnection, runner: _Runner) -> list[str]:
    """Apply what is missing; return the names applied. `conn` is in autocommit mode."""
    applied = []
    for version, name, script in available(runner.engine):
        for statement in runner.begin:
            conn.execute(statement)
        try:
            # Under the lock: another process may have just created the table or applied
            # this version (CREATE TABLE IF NOT EXISTS alone races on PostgreSQL).
            conn.execute(runner.versions_table)
            if conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = ?", (version,)
            ).fetchone():
                conn.execute("ROLLBACK")
                continue
            for statement in runner.split(script):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (version, name)
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


def migrate(conn: sqlite3.Connection) -> list[str]:
    """SQLite: apply what is missing; return the names applied (autocommit connection)."""
    return _apply(Connection(conn), _SQLITE)


def migrate_postgres(conn: SqlConnection) -> list[str]:
    """PostgreSQL (storage/pg.py's PgConnection over an autocommit connection)."""
    return _apply(conn, _POSTGRES)
