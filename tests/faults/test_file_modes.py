"""The database, its -wal and -shm, and every backup are private (0600, folders 0700),
whatever the umask the process was started with; looser files met at start are tightened
with a WARNING. Issue 11, point 4 (file modes)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.policy import BillingPolicy
from core.service import BillingService
from partnerbot.backups import scheduled_backup
from partnerbot.wiring import SystemClock
from storage.sqlite import SqliteStore
from tests.faults import cli

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

UMASKS = [0o000, 0o022]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=UMASKS, ids=lambda m: f"umask{m:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    wanted: int = request.param
    before = os.umask(wanted)
    try:
        yield wanted
    finally:
        os.umask(before)


async def _write_something(store: SqliteStore) -> None:
    billing = BillingService(store, SystemClock(), BillingPolicy())
    made = await billing.create_partner("Acme", "support:1")
    await billing.grant_days(made.partner.id, 30, "set-up", "support:1", "k:1")


async def test_database_wal_shm_and_backups_are_private(tmp_path: Path, umask: int) -> None:
    db = tmp_path / "bot.db"
    store = await SqliteStore.open(db, synchronous="NORMAL")
    try:
        await _write_something(store)
        wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
        assert (mode(db), mode(wal), mode(shm)) == (0o600, 0o600, 0o600)

        copy = await store.backup(tmp_path / "by-hand.db")
        assert mode(copy) == 0o600

        folder = tmp_path / "backups" / "daily"
        await scheduled_backup(store, folder, datetime.now(UTC), timedelta(days=7))
        assert mode(folder) == 0o700
        [scheduled] = list(folder.iterdir())
        assert mode(scheduled) == 0o600
    finally:
        await store.close()

    # `partnerbot db backup PATH` as a process started under the same umask.
    done = await cli("db", "backup", str(tmp_path / "cli.db"), db=db)
    assert done.code == 0, done.err
    assert mode(tmp_path / "cli.db") == 0o600


async def test_looser_existing_files_are_tightened_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "bot.db"
    store = await SqliteStore.open(db, synchronous="NORMAL")
    await _write_something(store)
    await store.close()
    os.chmod(db, 0o644)
    backups = tmp_path / "backups"
    backups.mkdir()
    os.chmod(backups, 0o755)

    with caplog.at_level(logging.WARNING):
        store = await SqliteStore.open(db, synchronous="NORMAL")
        try:
            assert mode(db) == 0o600
            await scheduled_backup(store, backups, datetime.now(UTC), timedelta(days=7))
            assert mode(backups) == 0o700
        finally:
            await store.close()
    tightened = [r.getMessage() for r in caplog.records if "tightened" in r.getMessage()]
    assert any(str(db) in line and "0644" in line for line in tightened), caplog.text
    assert any(str(backups) in line and "0755" in line for line in tightened), caplog.text
