"""The ledger's chain keyed with `ledger.chain_key` (issue 11, point 7).

The plain SHA-256 chain finds accidental damage and naive edits, but whoever can write the
file can edit a row and recompute every digest after it (a re-chain): `ledger verify`
passes. With a key, new rows are chained with HMAC-SHA256(key, ...), so a re-chain needs
the key. The database records where the keyed part starts (itself sealed with the key),
so an attacker can neither claim later rows are unkeyed nor remove the record unseen.
Rows written before the key was set keep verifying with the plain hash.

The attacks below edit the real SQLite file as an attacker would: drop the append-only
triggers, change a row, recompute the digests.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from core.errors import StorageError
from core.invariants import VerifyReport
from core.ledger import GENESIS, transfer_digest
from core.policy import BillingPolicy
from core.service import BillingService
from partnerbot import cli
from storage import rows
from storage.sqlite import SqliteStore
from tests.conftest import FakeClock

KEY = b"k3y-for-tests-0123456789abcdef"
OTHER = b"not-the-key-0123456789abcdef"
ACTOR = "support:900"


async def book(path: Path, key: bytes | None, grants: int = 3) -> None:
    """A partner and `grants` grants, written by a store opened with `key`."""
    store = await SqliteStore.open(path, synchronous="NORMAL", chain_key=key)
    try:
        billing = BillingService(store, FakeClock(), BillingPolicy())
        found = await store.execute_raw("SELECT id FROM partners WHERE name = 'Acme'")
        pid = found[0][0] if found else (await billing.create_partner("Acme", ACTOR)).partner.id
        done = (await store.execute_raw("SELECT count(*) FROM transfers"))[0][0]
        for i in range(grants):
            await billing.grant_days(pid, 10 + i, "set-up", ACTOR, f"g:{done + i}")
    finally:
        await store.close()


async def verify(path: Path, key: bytes | None) -> VerifyReport:
    """What `partnerbot ledger verify` reports with `key` configured (None: not set)."""
    store = await SqliteStore.open(path, synchronous="NORMAL")
    try:
        return await BillingService(store, FakeClock(), BillingPolicy()).verify(chain_key=key)
    finally:
        await store.close()


def rechain(path: Path, edit_id: int, keys: dict[int, bytes | None] | None = None) -> None:
    """The attack: change who made transfer `edit_id`, then recompute every digest from
    it on (with the plain hash unless `keys` names a key for a row)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER IF EXISTS transfers_no_update")
        conn.execute("UPDATE transfers SET actor = 'support:666' WHERE id = ?", (edit_id,))
        found = conn.execute(f"SELECT {rows.TRANSFER_COLS} FROM transfers ORDER BY id")
        previous = GENESIS
        for t in [rows.transfer(r) for r in found]:
            if t.id >= edit_id:
                key = (keys or {}).get(t.id)
                digest = transfer_digest(previous, t.id, t, key)
                conn.execute("UPDATE transfers SET digest = ? WHERE id = ?", (digest, t.id))
                previous = digest
            else:
                previous = t.digest
    finally:
        conn.close()


def chain_rows(report: VerifyReport) -> list[str]:
    return [v.row for v in report.violations if v.rule == "chain"]


async def test_a_rechained_keyed_ledger_fails_verify(tmp_path: Path) -> None:
    db = tmp_path / "keyed.db"
    await book(db, KEY)
    assert (await verify(db, KEY)).ok
    rechain(db, 2)
    report = await verify(db, KEY)
    assert not report.ok
    assert chain_rows(report) == ["transfers.id=2", "transfers.id=3"], report.violations


async def test_the_same_rechain_of_an_unkeyed_ledger_passes_as_today(tmp_path: Path) -> None:
    """What the plain chain cannot see (the README says so): kept as a known limit."""
    db = tmp_path / "plain.db"
    await book(db, None)
    rechain(db, 2)
    assert (await verify(db, None)).ok


async def test_an_unkeyed_ledger_keeps_verifying_and_new_rows_are_keyed(
    tmp_path: Path,
) -> None:
    db = tmp_path / "upgraded.db"
    await book(db, None)  # transfers 1-3, before the key was configured
    await book(db, KEY, grants=2)  # transfers 4-5, with it
    report = await verify(db, KEY)
    assert report.ok, report.violations
    assert report.keyed_from == 4
    assert "chain keyed from transfers.id=4" in report.summary()
    # The plain rows are still the plain hash (their format is pinned elsewhere).
    conn = sqlite3.connect(db)
    t1 = rows.transfer(conn.execute(f"SELECT {rows.TRANSFER_COLS} FROM transfers").fetchone())
    conn.close()
    assert transfer_digest(GENESIS, 1, t1) == t1.digest

    # Editing a plain row and re-chaining with the plain hash breaks the first keyed row.
    rechain(db, 2)
    assert chain_rows(await verify(db, KEY)) == ["transfers.id=4", "transfers.id=5"]


async def test_keyed_rows_cannot_be_claimed_unkeyed(tmp_path: Path) -> None:
    db = tmp_path / "claim.db"
    await book(db, None)
    await book(db, KEY, grants=2)
    conn = sqlite3.connect(db, isolation_level=None)
    for trigger in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
        if trigger[0].startswith("ledger_chain"):
            conn.execute(f"DROP TRIGGER {trigger[0]}")
    conn.execute("UPDATE ledger_chain SET keyed_from = 6")  # "only rows after 5 are keyed"
    conn.close()
    rechain(db, 4)
    report = await verify(db, KEY)
    assert not report.ok
    assert any("ledger_chain" in v.row for v in report.violations), report.violations


async def test_removing_the_record_of_the_keyed_chain_is_found(tmp_path: Path) -> None:
    db = tmp_path / "removed.db"
    await book(db, KEY)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TABLE ledger_chain")
    conn.execute(
        "CREATE TABLE ledger_chain (id INTEGER PRIMARY KEY, keyed_from INTEGER, seal TEXT)"
    )
    conn.close()
    rechain(db, 1)  # everything plain: "this ledger was never keyed"
    report = await verify(db, KEY)
    assert not report.ok
    assert any("ledger.chain_key is set" in str(v) for v in report.violations), report


async def test_a_keyed_ledger_verified_without_the_key_says_so(tmp_path: Path) -> None:
    db = tmp_path / "keyed.db"
    await book(db, KEY)
    report = await verify(db, None)
    assert not report.ok
    [violation] = report.violations
    assert "ledger.chain_key is not configured" in str(violation)
    assert chain_rows(report) == []  # not three rows "edited by hand"


async def test_a_keyed_ledger_verified_with_a_wrong_key_says_so(tmp_path: Path) -> None:
    db = tmp_path / "keyed.db"
    await book(db, KEY)
    report = await verify(db, OTHER)
    assert not report.ok
    [violation] = report.violations
    assert "not the key this ledger is chained with" in str(violation)


async def test_writing_with_a_wrong_or_missing_key_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "keyed.db"
    await book(db, KEY)
    with pytest.raises(StorageError, match=r"ledger\.chain_key"):
        await book(db, OTHER, grants=1)
    with pytest.raises(StorageError, match=r"ledger\.chain_key"):
        await book(db, None, grants=1)
    assert (await verify(db, KEY)).ok  # nothing was written with the wrong key



def test_ledger_verify_on_the_command_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    import asyncio

    db = tmp_path / "cli.db"
    asyncio.run(book(db, KEY))
    for name in [n for n in os.environ if n.startswith("PARTNERBOT_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PARTNERBOT_DATABASE__PATH", str(db))
    monkeypatch.setenv("PARTNERBOT_LEDGER__CHAIN_KEY", KEY.decode())
    assert cli.main(["ledger", "verify"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("ledger ok: 3 transfers")
    assert "chain keyed from transfers.id=1" in out.out
    rechain(db, 2, {})
    assert cli.main(["ledger", "verify"]) == 1
    out = capsys.readouterr()
    assert "transfers.id=2: chain:" in out.out
    monkeypatch.delenv("PARTNERBOT_LEDGER__CHAIN_KEY")
    assert cli.main(["ledger", "verify"]) == 1
    out = capsys.readouterr()
    assert "ledger.chain_key is not configured" in out.out
    assert KEY.decode() not in out.out + out.err


def test_a_short_chain_key_is_refused_without_showing_it() -> None:
    from partnerbot.config import ConfigError, load_settings

    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={"PARTNERBOT_LEDGER__CHAIN_KEY": "short-k3y"})
    message = str(caught.value)
    assert message.startswith("config: ledger.chain_key: must be at least 16 characters")
    assert "short-k3y" not in message
    settings = load_settings(None, environ={"PARTNERBOT_LEDGER__CHAIN_KEY": KEY.decode()})
    assert settings.ledger.chain_key_bytes == KEY
    assert KEY.decode() not in repr(settings) + str(settings.model_dump())
