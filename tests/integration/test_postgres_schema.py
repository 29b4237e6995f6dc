"""The PostgreSQL schema mirrors SQLite's, and holds the same lines.

Both engines ship the same migration versions and names, and end with the same tables,
columns (in order) and named indexes. On PostgreSQL the PL/pgSQL triggers refuse what
SQLite's refuse: changing or deleting a transfer, and a transfer that overdraws a
partner. Instances starting together on an empty database apply each migration once.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import psycopg
import pytest

from core.errors import StorageError
from core.model import TransferKind, partner_account
from storage.migrate import available, migrate
from storage.postgres import PostgresStore
from storage.sql import Engine
from tests.contract.store.helpers import raw_partner, raw_transfer

GRANTS = "ext:grants"
# SQLite makes these itself for PRIMARY KEY/UNIQUE; PostgreSQL names its own differently.
_SQLITE_INTERNAL = "sqlite_%"


def sqlite_schema(path: Path) -> tuple[dict[str, list[str]], set[str]]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        migrate(conn)
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE ?",
            (_SQLITE_INTERNAL,),
        )]
        columns = {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in tables}
        indexes = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE ?",
            (_SQLITE_INTERNAL,),
        )}
    finally:
        conn.close()
    return columns, indexes


def postgres_schema(url: str) -> tuple[dict[str, list[str]], set[str]]:
    with psycopg.connect(url) as conn:
        columns: dict[str, list[str]] = {}
        for table, column in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
        ):
            columns.setdefault(table, []).append(column)
        # Indexes made by CREATE INDEX (not those behind PRIMARY KEY/UNIQUE constraints).
        indexes = {r[0] for r in conn.execute(
            "SELECT i.indexname FROM pg_indexes i WHERE i.schemaname = current_schema()"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        )}
    return columns, indexes


def test_both_engines_ship_the_same_migration_versions_and_names() -> None:
    sqlite = [(v, name) for v, name, _ in available(Engine.SQLITE)]
    postgres = [(v, name) for v, name, _ in available(Engine.POSTGRES)]
    assert sqlite == postgres
    assert [v for v, _ in sqlite] == list(range(1, len(sqlite) + 1))


async def test_both_engines_end_with_the_same_tables_columns_and_indexes(
    pg_url: str, tmp_path: Path
) -> None:
    store = await PostgresStore.open(pg_url)  # migrates
    await store.close()

    sqlite_columns, sqlite_indexes = sqlite_schema(tmp_path / "schema.db")
    pg_columns, pg_indexes = postgres_schema(pg_url)

    assert pg_columns == sqlite_columns
    assert pg_indexes == sqlite_indexes
    assert "transfers" in pg_columns and "schema_migrations" in pg_columns


async def test_postgresql_triggers_refuse_changing_or_deleting_a_transfer(pg_url: str) -> None:
    store = await PostgresStore.open(pg_url)
    try:
        pid = await store.write(raw_partner)
        await store.write(lambda lg: lg.add_transfer(
            raw_transfer("g1", GRANTS, partner_account(pid), 5)
        ))

        for statement in (
            "UPDATE transfers SET days = 50 WHERE key = 'g1'",
            "DELETE FROM transfers WHERE key = 'g1'",
            "TRUNCATE transfers CASCADE",
        ):
            with pytest.raises(StorageError, match="constraint failed: transfers are append-only"):
                await store.execute_raw(statement)

        rows = await store.execute_raw("SELECT key, days FROM transfers")
        assert rows == [("g1", 5)]
        assert await store.read(lambda lg: lg.balance(partner_account(pid))) == 5
    finally:
        await store.close()


async def test_postgresql_trigger_refuses_an_overdraft_but_not_a_refund(pg_url: str) -> None:
    store = await PostgresStore.open(pg_url)
    try:
        pid = await store.write(raw_partner)
        account = partner_account(pid)
        await store.write(lambda lg: lg.add_transfer(raw_transfer("g1", GRANTS, account, 3)))

        with pytest.raises(StorageError, match="constraint failed: overdraft"):
            await store.write(lambda lg: lg.add_transfer(
                raw_transfer("r1", account, GRANTS, 4, TransferKind.REMOVAL)
            ))
        assert await store.read(lambda lg: lg.balance(account)) == 3

        # A refund may take a partner below zero (rule 11), as on SQLite.
        await store.write(lambda lg: lg.add_transfer(
            raw_transfer("f1", account, "ext:purchases", 4, TransferKind.REFUND)
        ))
        assert await store.read(lambda lg: lg.balance(account)) == -1
    finally:
        await store.close()


async def test_instances_starting_together_apply_each_migration_once(pg_url: str) -> None:
    stores = await asyncio.gather(*(PostgresStore.open(pg_url) for _ in range(3)))
    try:
        rows = await stores[0].execute_raw(
            "SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version"
        )
        assert rows == [(v, 1) for v, _, _ in available(Engine.POSTGRES)]
    finally:
        for store in stores:
            await store.close()
