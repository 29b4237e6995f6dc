"""Backups and restore as an operator meets them (README, "Backups and restore").

- The scheduled `backup` job, run as a real process (`partnerbot jobs run backup`) while
  this process keeps writing credits and allocations to the same database, writes a copy
  that `partnerbot ledger verify` accepts and whose transfers are a prefix of the live
  ones, row for row, taken in the middle of the stream.
- The README's restore steps, followed literally around a real `partnerbot run` process:
  the restored database verifies, `partner list` / `partner show` show the partners as of
  the backup, and the bot starts on it (migrations are not re-applied) and takes new
  operations. After a crash the stale `-wal`/`-shm` files hold the newer pages: moving
  them aside, as the README says, is what makes the restore happen.
- Pruning: the job removes its own copies older than `backup.keep_days` and nothing else
  in the directory (the README's hand-made `partnerbot-YYYY-MM-DD.db` copies included);
  the exact boundary with a chosen instant.
- A backup of a tampered database fails `ledger verify`, naming the row, while the backup
  taken before the tampering verifies: verifying a backup is meaningful.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import sqlite3
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.policy import BillingPolicy
from core.service import BillingService
from partnerbot.backups import backup_name, scheduled_backup
from partnerbot.wiring import SystemClock
from storage.sqlite import SqliteStore
from tests.e2e import clean_env, console_script
from tests.fakes.telegram_api import FakeTelegram
from tests.faults import CliResult, cli, free_port, ledger_verify

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SUPPORT = 900_001
WROTE = re.compile(r"^backup: wrote (\S+), removed (\d+) older than (\d+) days$")


# helpers ---------------------------------------------------------------------------------


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return [tuple(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def transfers(db: Path) -> list[tuple[Any, ...]]:
    return rows(db, "SELECT * FROM transfers ORDER BY id")


async def seed(db: Path) -> None:
    """Acme (partner 1): 100 days granted, channel `main` with 10 of them."""
    store = await SqliteStore.open(db)
    try:
        billing = BillingService(store, SystemClock(), BillingPolicy())
        acme = (await billing.create_partner("Acme", "cli:operator")).partner
        await billing.grant_days(acme.id, 100, "welcome", "support:1", "seed-grant")
        await billing.create_channel(acme.id, "main", "user:1", "seed-channel")
        await billing.allocate_days(acme.id, "main", 10, "user:1", "seed-alloc")
    finally:
        await store.close()


async def backup_job(db: Path, directory: str = "backups", keep_days: int = 14) -> Path:
    """`partnerbot jobs run backup` on `db`; returns the copy it says it wrote."""
    done = await cli(
        "jobs", "run", "backup", db=db,
        PARTNERBOT_BACKUP__DIRECTORY=directory, PARTNERBOT_BACKUP__KEEP_DAYS=str(keep_days),
    )
    assert done.code == 0, done
    match = WROTE.match(done.out.strip())
    assert match, done.out
    copy = db.parent / match.group(1)  # relative to the working directory (db.parent)
    assert copy.is_file(), copy
    return copy


async def ok(*args: str, db: Path) -> CliResult:
    done = await cli(*args, db=db)
    assert done.code == 0 and done.err == "", done
    return done


def undated(show: str) -> str:
    """`partner show` without the runway date, which moves with the clock at midnight."""
    return re.sub(r"runway until: \S+", "runway until: -", show)


class Bot:
    """`partnerbot run` on `db` against FakeTelegram: started, stopped with SIGTERM."""

    def __init__(self, tg: FakeTelegram, db: Path) -> None:
        self.tg, self.db = tg, db
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.log = db.parent / "bot.log"

    async def start(self) -> None:
        env = clean_env(
            PARTNERBOT_TELEGRAM__TOKEN=self.tg.token,
            PARTNERBOT_TELEGRAM__API_BASE_URL=self.tg.base_url,
            PARTNERBOT_ACCESS__SUPPORT_USER_IDS=f"[{SUPPORT}]",
            PARTNERBOT_DATABASE__PATH=str(self.db),
            PARTNERBOT_SERVER__PORT=str(self.port),
        )
        with self.log.open("ab") as sink:
            self.proc = await asyncio.create_subprocess_exec(
                *console_script(), "run", cwd=self.db.parent, env=env,
                stdout=sink, stderr=sink,
            )
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise AssertionError(f"the bot exited on start:\n{self.tail()}")
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"the bot was not healthy within 30 s:\n{self.tail()}")

    async def stop(self) -> None:
        assert self.proc is not None and self.proc.returncode is None
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), 20)
        assert code == 0, f"exit {code}:\n{self.tail()}"

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def copy_crashed(db: Path, directory: Path) -> int:
    """Copy `db` with its -wal and -shm into `directory`; returns the WAL's size."""
    for suffix in ("", "-wal", "-shm"):
        shutil.copy(f"{db}{suffix}", directory / f"{db.name}{suffix}")  # as cp: mode too
    return Path(f"{db}-wal").stat().st_size


def restore_as_the_readme_says(backup: Path, db: Path, aside: Path) -> None:
    """README: "stop the bot; move the old partnerbot.db, partnerbot.db-wal and
    partnerbot.db-shm aside; copy the backup to database.path" (then verify, start)."""
    aside.mkdir()
    for suffix in ("", "-wal", "-shm"):
        old = Path(f"{db}{suffix}")
        if old.exists():
            old.rename(aside / old.name)
    shutil.copy(backup, db)  # as `cp` does, the private mode comes along


# 1. a consistent copy while another process writes ----------------------------------------


async def test_backup_job_under_a_stream_of_writes_is_a_verified_prefix(tmp_path: Path) -> None:
    db = tmp_path / "partnerbot.db"
    await seed(db)
    store = await SqliteStore.open(db)
    billing = BillingService(store, SystemClock(), BillingPolicy())
    stop = asyncio.Event()
    made = 0

    async def keep_writing() -> None:
        nonlocal made
        while not stop.is_set():
            made += 1
            await billing.grant_days(1, 2, f"stream {made}", "support:1", f"grant-{made}")
            await billing.allocate_days(1, "main", 1, "user:1", f"alloc-{made}")

    async def count() -> int:
        return int((await store.execute_raw("SELECT count(*) FROM transfers"))[0][0])

    async def written(at_least: int) -> int:
        deadline = time.monotonic() + 10
        while (n := await count()) < at_least:
            assert time.monotonic() < deadline, f"the writer stalled below {at_least}"
            await asyncio.sleep(0.01)
        return n

    writer = asyncio.create_task(keep_writing())
    try:
        at_launch = await written(await count() + 6)
        done = await cli(
            "jobs", "run", "backup", db=db,
            PARTNERBOT_BACKUP__DIRECTORY="backups", PARTNERBOT_BACKUP__KEEP_DAYS="7",
        )
        at_exit = await count()
        await written(at_exit + 4)
    finally:
        stop.set()
        await writer
        await store.close()

    assert done.code == 0, done
    [copy] = (tmp_path / "backups").iterdir()
    assert done.out.strip() == f"backup: wrote backups/{copy.name}, removed 0 older than 7 days"

    summary = await ledger_verify(copy)
    in_copy, live = transfers(copy), transfers(db)
    assert summary.startswith(f"ledger ok: {len(in_copy)} transfers"), summary
    # Taken in the middle of the stream: writes before and after the copy.
    assert at_launch < len(in_copy) <= at_exit < len(live), (at_launch, len(in_copy), at_exit)
    assert in_copy == live[: len(in_copy)], "the copy is not a prefix of the live ledger"
    # The run is recorded in the live database with the summary the CLI printed; the copy
    # was taken after the run's start was committed, so it holds the run, unfinished.
    [(run_id, _, started, finished, run_ok, said)] = rows(
        db, "SELECT * FROM job_runs WHERE job = 'backup'"
    )
    assert (run_ok, said) == (1, done.out.strip()) and finished >= started
    assert rows(copy, "SELECT * FROM job_runs") == [(run_id, "backup", started, None, None, None)]


# 2. restore exactly as the README says -----------------------------------------------------


async def test_restore_as_the_readme_says_around_the_running_bot(tmp_path: Path) -> None:
    db = tmp_path / "partnerbot.db"
    async with FakeTelegram() as tg:
        bot = Bot(tg, db)
        support = tg.user(SUPPORT, "Sam")
        try:
            await bot.start()
            await seed(db)  # beside the running bot, as the CLI would
            listed = (await ok("partner", "list", db=db)).out
            shown = (await ok("partner", "show", "Acme", db=db)).out
            backup = await backup_job(db)  # beside the running bot

            await support.send("/newpartner Globex")
            assert "Globex" in (await support.wait_reply(10)).text
            await support.send("/credit Acme 50 after the backup")
            await support.wait_reply(10)
            assert "Globex" in (await ok("partner", "list", db=db)).out
            assert "balance: 140 days" in (await ok("partner", "show", "Acme", db=db)).out

            # Restore: stop the bot; move the old files aside; copy the backup into place;
            # `partnerbot ledger verify` must say `ledger ok`.
            await bot.stop()
            restore_as_the_readme_says(backup, db, tmp_path / "aside")
            await ledger_verify(db)
            assert (await ok("partner", "list", db=db)).out == listed
            restored = (await ok("partner", "show", "Acme", db=db)).out
            assert undated(restored) == undated(shown)
            assert "balance: 90 days" in restored

            # Start the bot: it opens the restored file (nothing left to migrate) and
            # takes new operations.
            await bot.start()
            await support.send("/credit Acme 7 after the restore")
            await support.wait_reply(10)
            await support.send("/newpartner Initech")
            assert "Initech" in (await support.wait_reply(10)).text
            await bot.stop()
        finally:
            await bot.kill()

    summary = await ledger_verify(db)
    assert summary.startswith("ledger ok: 3 transfers"), summary
    assert "balance: 97 days" in (await ok("partner", "show", "Acme", db=db)).out
    names = [line.split()[1] for line in (await ok("partner", "list", db=db)).out.splitlines()[1:]]
    assert names == ["Acme", "Initech"]
    migrations = "SELECT * FROM schema_migrations ORDER BY version"
    assert rows(db, migrations) == rows(backup, migrations)


CRASHING_WRITER = """
import asyncio, os, sys
from core.policy import BillingPolicy
from core.service import BillingService
from partnerbot.wiring import SystemClock
from storage.sqlite import SqliteStore

async def main():
    store = await SqliteStore.open(sys.argv[1])
    billing = BillingService(store, SystemClock(), BillingPolicy())
    await billing.create_partner("Globex", "cli:operator")
    await billing.grant_days(1, 50, "after the backup", "support:1", "late-grant")
    os._exit(0)  # killed: no close, no checkpoint; the -wal and -shm files stay

asyncio.run(main())
"""


async def test_after_a_crash_moving_the_wal_aside_is_what_restores(tmp_path: Path) -> None:
    live, twin = tmp_path / "live", tmp_path / "twin"
    live.mkdir()
    twin.mkdir()
    db = live / "partnerbot.db"
    await seed(db)
    listed = (await ok("partner", "list", db=db)).out
    backup = await backup_job(db)
    crashed = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHING_WRITER, str(db), env=clean_env()
    )
    assert await asyncio.wait_for(crashed.wait(), 30) == 0
    assert copy_crashed(db, twin), "the crash left no WAL: nothing to show"

    restore_as_the_readme_says(backup, db, live / "aside")
    await ledger_verify(db)
    assert (await ok("partner", "list", db=db)).out == listed
    assert "balance: 90 days" in (await ok("partner", "show", "Acme", db=db)).out

    # The same copy without moving the stale -wal/-shm aside: SQLite replays the old WAL
    # over the copied file, the "restored" database is the crashed one, and `ledger
    # verify` cannot tell (the README warns of this).
    shutil.copy(backup, twin / "partnerbot.db")
    skipped = (await ok("partner", "list", db=twin / "partnerbot.db")).out
    assert skipped != listed and "Globex" in skipped
    await ledger_verify(twin / "partnerbot.db")


# 3. pruning keeps backup.keep_days -------------------------------------------------------


async def test_backup_job_prunes_only_its_own_copies_older_than_keep_days(
    tmp_path: Path,
) -> None:
    db = tmp_path / "partnerbot.db"
    await seed(db)
    directory = tmp_path / "backups"
    directory.mkdir()
    now = datetime.now(UTC)
    old = [backup_name(now - timedelta(days=d)) for d in (8, 30, 400)]
    young = [backup_name(now - timedelta(days=7) + timedelta(hours=1)),
             backup_name(now - timedelta(days=1))]
    others = [
        f"partnerbot-{now - timedelta(days=90):%Y-%m-%d}.db",  # README's `db backup` example
        "partnerbot-20200101-000000.db.bak", "notes.txt", "other-20200101-000000.db",
    ]
    for name in old + young + others:
        (directory / name).write_bytes(b"not a database")

    done = await cli(
        "jobs", "run", "backup", db=db,
        PARTNERBOT_BACKUP__DIRECTORY="backups", PARTNERBOT_BACKUP__KEEP_DAYS="7",
    )
    assert done.code == 0, done
    match = WROTE.match(done.out.strip())
    assert match and match.group(2, 3) == ("3", "7"), done.out
    written = Path(match.group(1)).name
    assert sorted(p.name for p in directory.iterdir()) == sorted([*young, *others, written])
    await ledger_verify(directory / written)


async def test_prune_boundary_at_a_chosen_instant(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "partnerbot.db")
    directory = tmp_path / "backups"
    now = datetime(2030, 1, 14, 3, 30, tzinfo=UTC)
    keep = timedelta(days=3)
    # Exactly 3 days old is kept, a second more is not; a copy stamped in the future (the
    # clock was set back) is kept.
    kept = [now - keep, now - timedelta(days=1), now + timedelta(hours=2)]
    gone = [now - keep - timedelta(seconds=1), now - timedelta(days=10)]
    try:
        directory.mkdir()
        for at in kept + gone:
            (directory / backup_name(at)).write_bytes(b"")
        said = await scheduled_backup(store, directory, now, keep)
    finally:
        await store.close()
    target = directory / backup_name(now)
    assert said == f"backup: wrote {target}, removed 2 older than 3 days"
    assert sorted(directory.iterdir()) == sorted(
        [target, *(directory / backup_name(at) for at in kept)]
    )


# 4. verifying a backup is meaningful -------------------------------------------------------


async def test_a_backup_of_a_tampered_ledger_fails_verify_naming_the_row(tmp_path: Path) -> None:
    db = tmp_path / "partnerbot.db"
    await seed(db)  # transfers: 1 grant 100, 2 allocation 10
    before = await backup_job(db, directory="before")
    conn = sqlite3.connect(db)
    try:
        conn.executescript(
            "DROP TRIGGER transfers_no_update; UPDATE transfers SET days = 15 WHERE id = 2;"
        )
    finally:
        conn.close()
    after = await backup_job(db, directory="after")  # integrity_check is not the ledger's

    checked = await cli("ledger", "verify", db=after)
    assert checked.code == 1, checked
    lines = checked.out.splitlines()
    assert lines[0].startswith("ledger BROKEN"), checked.out
    assert any(line.strip().startswith("transfers.id=2: chain: digest does not match")
               for line in lines[1:]), checked.out
    # "restore the last backup that verifies": the one from before the edit does.
    assert (await ledger_verify(before)).startswith("ledger ok: 2 transfers")
