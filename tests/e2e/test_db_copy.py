"""`partnerbot db copy URL`: the SQLite ledger into an empty PostgreSQL database, chain
intact and verified; anything else refused in one line, the target left as it was."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import psycopg
import pytest

from core.model import OrderKind
from core.policy import BillingPolicy
from core.service import BillingService
from partnerbot.wiring import SystemClock
from storage.postgres import PostgresStore
from storage.sqlite import SqliteStore
from tests.faults import CliResult, cli

pytestmark = pytest.mark.slow
KEY = "copy-test-chain-key-0123456789"
PASSWORD = "pw-not-to-be-shown"


async def make_ledger(db: Path) -> None:
    """Two partners with members, channels, grants, allocations, a paid and an open order
    (notices queued on the way), a plain chain and then a keyed one."""
    for key in (None, KEY.encode()):
        store = await SqliteStore.open(db, chain_key=key)
        try:
            billing = BillingService(store, SystemClock(), BillingPolicy())
            tag = "keyed" if key else "plain"
            for name in ("Acme", "Globex"):
                made = await billing.create_partner(f"{name} {tag}", "support:1")
                pid = made.partner.id
                await billing.redeem_invite(made.invite_code, 5000 + pid)
                await billing.grant_days(pid, 100, "welcome", "support:1", f"grant-{pid}")
                await billing.create_channel(pid, "main", "user:1", f"channel-{pid}")
                await billing.allocate_days(pid, "main", 10, "user:1", f"alloc-{pid}")
                order = await billing.open_order(pid, OrderKind.TOPUP, 60, "user:1")
                await billing.credit_paid_order(
                    order.id, order.amount, order.currency, f"stripe:evt_{pid}"
                )
                await billing.open_order(pid, OrderKind.TOPUP, 30, "user:1")  # left open
            assert (await billing.verify(chain_key=key)).ok
        finally:
            await store.close()


async def copy(db: Path, url: str) -> CliResult:
    return await cli("db", "copy", url, db=db, PARTNERBOT_LEDGER__CHAIN_KEY=KEY)


def one_line(done: CliResult) -> str:
    assert done.code == 1, done
    lines = done.err.splitlines()
    assert len(lines) == 1, done.err
    assert PASSWORD not in done.out + done.err
    return lines[0]


def tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [str(r[0]) for r in conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() ORDER BY 1"
        )]


def with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


async def test_a_keyed_ledger_is_copied_verified_and_keeps_working(
    tmp_path: Path, pg_url: str
) -> None:
    db = tmp_path / "bot.db"
    await make_ledger(db)
    done = await copy(db, pg_url)
    assert done.code == 0, done.out + done.err
    assert "transfers: 12 rows" in done.out.splitlines() and done.out.rstrip().endswith("verified")
    source = await cli("ledger", "verify", db=db, PARTNERBOT_LEDGER__CHAIN_KEY=KEY)
    target = await cli("ledger", "verify", db=db, PARTNERBOT_LEDGER__CHAIN_KEY=KEY,
                       PARTNERBOT_DATABASE__URL=pg_url)
    assert source.code == target.code == 0, target.out + target.err
    assert target.out == source.out  # same transfers, same balances, keyed from the same id
    assert "chain keyed from transfers.id=" in target.out

    with psycopg.connect(pg_url) as conn:
        copied: dict[str, int] = dict(conn.execute("SELECT code, balance FROM accounts"))
    store = await SqliteStore.open(db)
    try:
        original = dict(await store.execute_raw("SELECT code, balance FROM accounts"))
    finally:
        await store.close()
    assert copied == original

    pg = await PostgresStore.open(pg_url, chain_key=KEY.encode())
    try:
        billing = BillingService(pg, SystemClock(), BillingPolicy())
        await billing.allocate_days(1, "main", 7, "user:1", "alloc-after-copy")
        report = await billing.verify(chain_key=KEY.encode())
        assert report.ok, report.violations
    finally:
        await pg.close()


async def test_a_copy_that_does_not_add_up_is_rolled_back_schema_and_all(
    tmp_path: Path, pg_url: str
) -> None:
    """A cached balance edited by hand in the source: replaying the transfers gives
    another balance, so nothing is kept, not even the tables."""
    db = tmp_path / "bot.db"
    await make_ledger(db)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE accounts SET balance = balance + 5 WHERE code = 'partner:2'")
    line = one_line(await copy(db, pg_url))
    assert "balances differ after replaying the transfers (1 accounts, e.g. partner:2: " in line
    assert line.endswith("nothing kept"), line
    assert tables(pg_url) == []


async def test_a_target_that_is_not_empty_is_refused_and_left_alone(
    tmp_path: Path, pg_url: str
) -> None:
    db = tmp_path / "bot.db"
    await make_ledger(db)
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE precious (x int)")
    line = one_line(await copy(db, with_password(pg_url)))
    assert "is not empty (1 tables, e.g. precious)" in line, line
    assert tables(pg_url) == ["precious"]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"mysql://root:{PASSWORD}@127.0.0.1/db", "not a PostgreSQL URL"),
        (f"postgresql://root:{PASSWORD}@127.0.0.1", "must name a host and a database"),
        (f"postgresql://root:{PASSWORD}@127.0.0.1:port/db", "not a PostgreSQL URL"),
        ("just words", "not a PostgreSQL URL"),
        (f"postgresql://root:{PASSWORD}@127.0.0.1:1/db",
         "cannot connect to postgresql://root@127.0.0.1:1/db"),
    ],
)
async def test_a_bad_or_unreachable_url_is_refused_in_one_line(
    tmp_path: Path, url: str, says: str
) -> None:
    db = tmp_path / "bot.db"
    line = one_line(await copy(db, url))
    assert line.startswith("partnerbot: db copy: ") and says in line, line
