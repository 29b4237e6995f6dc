"""The `partnerbot` command line on PostgreSQL (`database.url` set), as the installed
console script: the commands work as on SQLite, `ledger verify` finds a hand edit,
backups are refused with a pointer to pg_dump, and the URL's password never shows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest

from core.model import OrderKind
from core.policy import BillingPolicy
from core.service import BillingService
from partnerbot.wiring import SystemClock
from storage.postgres import PostgresStore
from tests.e2e.test_cli import Cli, Result, one_error_line

PASSWORD = "pw-FakeForE2eTestsDoNotLeak"  # the test server trusts loopback: ignored


@pytest.fixture
def pg_cli(tmp_path: Path, pg_url: str) -> Cli:
    cli = Cli(tmp_path)
    url = pg_url.replace("postgres@", f"postgres:{PASSWORD}@")
    cli.env = {**cli.env, "PARTNERBOT_DATABASE__URL": url}
    return cli


def run(cli: Cli, *args: str) -> Result:
    result = cli(*args)
    assert PASSWORD not in result.output, result.output
    return result


async def _populate(url: str) -> None:
    store = await PostgresStore.open(url)
    try:
        billing = BillingService(store, SystemClock(), BillingPolicy())
        await billing.grant_days(1, 100, "welcome", "support:1", "grant-1")
        await billing.create_channel(1, "main", "user:1", "channel-1")
        await billing.allocate_days(1, "main", 10, "user:1", "alloc-1")
        order = await billing.open_order(1, OrderKind.TOPUP, 60, "user:1")
        await billing.credit_paid_order(order.id, order.amount, order.currency, "stripe:evt_1")
    finally:
        await store.close()


def test_partner_commands_and_ledger_verify_work_on_postgresql(
    pg_cli: Cli, pg_url: str
) -> None:
    added = run(pg_cli, "partner", "add", "Acme", "--price", "10.00", "--currency", "usd")
    assert added.returncode == 0, added
    assert "id: 1" in added.stdout.splitlines()
    assert not pg_cli.db.exists()  # nothing went to the SQLite file

    asyncio.run(_populate(pg_url))
    shown = run(pg_cli, "partner", "show", "Acme")
    assert shown.returncode == 0, shown
    assert "main" in shown.stdout

    verified = run(pg_cli, "ledger", "verify")
    assert verified.returncode == 0, verified
    assert verified.stdout.startswith("ledger ok: 3 transfers"), verified.stdout


def test_ledger_verify_on_postgresql_names_a_transfer_edited_by_hand(
    pg_cli: Cli, pg_url: str
) -> None:
    assert run(pg_cli, "partner", "add", "Acme", "--price", "10.00").returncode == 0
    asyncio.run(_populate(pg_url))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        # What it takes to get past the append-only trigger: someone who owns the table.
        conn.execute("ALTER TABLE transfers DISABLE TRIGGER transfers_no_update")
        conn.execute("UPDATE transfers SET days = days + 5 WHERE id = 2")

    result = run(pg_cli, "ledger", "verify")

    assert result.returncode != 0
    assert "transfers.id=2" in result.output
    assert "transfers.id=1:" not in result.output


def test_db_backup_on_postgresql_points_to_pg_dump_and_writes_nothing(
    pg_cli: Cli, tmp_path: Path
) -> None:
    target = tmp_path / "copy.db"
    line = one_error_line(run(pg_cli, "db", "backup", str(target)))
    assert "pg_dump" in line
    assert not target.exists()

    job = run(pg_cli, "jobs", "run", "backup")
    assert job.returncode == 0, job
    assert "skipped" in job.output and "pg_dump" in job.output
