"""Failing storage is loud, and the bot recovers by itself (issue 11, point 3).

`partnerbot run`'s own Runtime (bot, HTTP server, outbox, scheduler, storage probe) runs in
this process against the loopback Bot API server, over a real SQLite file. The faults:

- a full disk: SQLite's `PRAGMA max_page_count` lowered to what the file holds, on the
  bot's own connection (a small disk, portably), then raised back;
- a read-only database: `PRAGMA query_only` on the bot's write connection, which makes
  SQLite refuse every write with SQLITE_READONLY, as a file it could not open for
  writing does (chmod cannot make a file read-only for root, who runs these tests in CI);
- a corrupt file: pages of an index overwritten with garbage in a copy the bot starts on.

For each: /healthz answers 503 naming the cause (through the real HTTP server); a command
that fails is answered with a reference and logged once, at ERROR, with that reference
and the cause; the outbox does not log a traceback a second; /metrics still answers;
`ledger verify` refuses the corrupt file; and once the fault is gone /healthz is 200 again
and the next command works, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.errors import StorageError
from core.policy import BillingPolicy
from core.service import BillingService
from partnerbot.config import load_settings
from partnerbot.runner import Runtime
from partnerbot.wiring import Services, SystemClock, open_services
from storage.health import Fault
from storage.sqlite import SqliteStore
from tests.fakes.telegram_api import BotMessage, FakeTelegram, FakeUser
from tests.faults import cli, free_port
from tests.integration.bot_harness import APOLOGY

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning"),
]

SUPPORT, OWNER = 900_001, 910_001
PROBE_SECONDS = 0.05  # database.health_probe_seconds: quick enough for a test
WAIT = 20.0  # seconds a state may take to show on a busy machine (not an assertion)
CREATED = re.compile(r"^Channel (.+) created\.")


@dataclass
class Running:
    tg: FakeTelegram
    services: Services
    runtime: Runtime
    url: str
    metrics_url: str

    @property
    def store(self) -> SqliteStore:
        return self.services.store

    async def get(self, path: str) -> tuple[int, str]:
        # /metrics has its own listener (metrics.port); everything else is public.
        base = self.metrics_url if path == "/metrics" else self.url
        async with aiohttp.ClientSession() as s, s.get(base + path) as r:
            return r.status, await r.text()

    async def health(self, status: int) -> dict[str, Any]:
        """Wait until /healthz answers `status`; its body."""
        last: tuple[int, str] = (0, "")
        for _ in range(int(WAIT / 0.05)):
            last = await self.get("/healthz")
            if last[0] == status:
                body: dict[str, Any] = json.loads(last[1])
                return body
            await asyncio.sleep(0.05)
        raise AssertionError(f"/healthz never answered {status}; last: {last}")

    async def owner(self) -> FakeUser:
        made = await self.services.billing.create_partner("Acme", f"support:{SUPPORT}")
        user = self.tg.user(OWNER, "Olga")
        welcome = await ask(user, f"/start {made.invite_code}")
        assert welcome.text.startswith("Welcome! You are linked to"), welcome.text
        return user


async def ask(user: FakeUser, text: str) -> BotMessage:
    await user.send(text)
    return await user.wait_reply(timeout=WAIT)


def running(tmp_path: Path, db: Path) -> contextlib.AbstractAsyncContextManager[Running]:
    return running_with(tmp_path, f'path = "{db}"\nsynchronous = "NORMAL"\n')


@contextlib.asynccontextmanager
async def running_with(tmp_path: Path, database: str) -> AsyncIterator[Running]:
    """The bot as `partnerbot run` starts it, on the database that the `[database]`
    lines `database` name (tests/faults/test_postgres_health.py: PostgreSQL)."""
    async with FakeTelegram() as tg:
        port, metrics_port = free_port(), free_port()
        config = tmp_path / "config.toml"
        config.write_text(
            f'[telegram]\ntoken = "{tg.token}"\napi_base_url = "{tg.base_url}"\n'
            f"[access]\nsupport_user_ids = [{SUPPORT}]\n"
            f"[database]\n{database}"
            f"health_probe_seconds = {PROBE_SECONDS}\n"
            f'[server]\nport = {port}\n[metrics]\nport = {metrics_port}\n'
            f'[backup]\ndirectory = "{tmp_path / "backups"}"\n',
            encoding="utf-8",
        )
        settings = load_settings(config, environ={})
        services = await open_services(settings)
        try:
            runtime = Runtime(settings, services)
            await runtime.start()
            try:
                yield Running(
                    tg, services, runtime, f"http://127.0.0.1:{port}",
                    f"http://127.0.0.1:{metrics_port}",
                )
            finally:
                await runtime.stop()
        finally:
            await services.close()


def errors_with_ref(caplog: pytest.LogCaptureFixture, ref: str) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records
        if r.levelno >= logging.ERROR and (getattr(r, "ref", None) == ref or ref in r.getMessage())
    ]


async def fails_with_reference(r: Running, owner: FakeUser) -> tuple[str, list[str]]:
    """/newchannel until the bot cannot save one (a page may still have room for a few);
    the reference of the apology and the names created meanwhile."""
    created: list[str] = []
    for i in range(200):
        reply = await ask(owner, f"/newchannel fill-{i}")
        apology = APOLOGY.match(reply.text)
        if apology:
            return apology.group(1), created
        assert CREATED.match(reply.text), reply.text
        created.append(f"fill-{i}")
    raise AssertionError("the database never filled up")


async def test_full_disk_is_reported_logged_once_and_recovered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running(tmp_path, tmp_path / "bot.db") as r:
        owner = await r.owner()
        assert await r.health(200) == {"database": "ok", "bot": "ok", "role": "leader"}

        [(pages,)] = await r.store.execute_raw("PRAGMA page_count")
        await r.store.execute_raw(f"PRAGMA max_page_count = {pages}")
        # Use up the free pages too, so the next write needing a page meets a full disk.
        with contextlib.suppress(StorageError):
            for _ in range(10_000):
                await r.store.execute_raw(
                    "INSERT INTO events (at, actor, action, detail) VALUES (0, 'test', 'fill', ?)",
                    ("x" * 3000,),
                )

        caplog.clear()
        ref, _ = await fails_with_reference(r, owner)
        [logged] = errors_with_ref(caplog, ref)
        assert "full" in logged.getMessage(), logged.getMessage()
        assert getattr(logged, "user_id", None) == OWNER

        body = await r.health(503)
        assert body == {"database": "failing", "cause": "disk full", "bot": "ok", "role": "leader"}

        status, page = await r.get("/metrics")
        assert status == 200
        assert "partnerbot_storage_healthy 0.0" in page

        await r.store.execute_raw("PRAGMA max_page_count = 1073741823")
        assert await r.health(200) == {"database": "ok", "bot": "ok", "role": "leader"}
        reply = await ask(owner, "/newchannel after-the-disk")
        assert CREATED.match(reply.text), reply.text
        status, page = await r.get("/metrics")
        assert status == 200 and "partnerbot_storage_healthy 1.0" in page


async def test_read_only_database_is_reported_the_outbox_backs_off_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running(tmp_path, tmp_path / "bot.db") as r:
        owner = await r.owner()
        await r.health(200)

        await r.store.execute_raw("PRAGMA query_only = ON")
        caplog.clear()
        body = await r.health(503)
        assert body == {"database": "failing", "cause": "read-only", "bot": "ok", "role": "leader"}

        reply = await ask(owner, "/newchannel shop")
        apology = APOLOGY.match(reply.text)
        assert apology, reply.text
        [logged] = errors_with_ref(caplog, apology.group(1))
        assert "readonly" in logged.getMessage(), logged.getMessage()

        # The outbox tries every second when healthy; failing, it waits longer each time
        # and says so once (today: a traceback every second).
        await asyncio.sleep(3.5)
        outbox = [rec for rec in caplog.records if rec.name == "bot.outbox"]
        assert len(outbox) == 1, [rec.getMessage() for rec in outbox]
        assert outbox[0].levelno == logging.WARNING and outbox[0].exc_info is None
        assert r.runtime.dispatcher.storage_failures >= 2

        await r.store.execute_raw("PRAGMA query_only = OFF")
        assert await r.health(200) == {"database": "ok", "bot": "ok", "role": "leader"}
        reply = await ask(owner, "/newchannel shop")
        assert CREATED.match(reply.text), reply.text
        # The outbox resumes by itself and says so once.
        for _ in range(int(WAIT / 0.05)):
            if r.runtime.dispatcher.storage_failures == 0:
                break
            await asyncio.sleep(0.05)
        resumed = [rec.getMessage() for rec in caplog.records if rec.name == "bot.outbox"]
        assert len(resumed) == 2 and "works again" in resumed[1], resumed


async def _corrupt_copy(tmp_path: Path) -> Path:
    """A database with a ledger whose `transfers_kind` index pages are overwritten."""
    source = tmp_path / "source.db"
    store = await SqliteStore.open(source, synchronous="NORMAL")
    try:
        billing = BillingService(store, SystemClock(), BillingPolicy())
        made = await billing.create_partner("Acme", "support:1")
        for i in range(300):
            await billing.grant_days(made.partner.id, 1, "set-up", "support:1", f"grant:{i}")
    finally:
        await store.close()
    conn = sqlite3.connect(source)
    try:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = [p for (p,) in conn.execute(
            "SELECT pageno FROM dbstat WHERE name = 'transfers_kind'"
        )]
    finally:
        conn.close()
    assert pages
    corrupt = tmp_path / "bot.db"
    data = bytearray(source.read_bytes())
    for page in pages:
        data[(page - 1) * size: page * size] = b"\xa5" * size
    corrupt.write_bytes(bytes(data))
    return corrupt


@pytest.fixture
async def corrupt(tmp_path: Path) -> AsyncIterator[tuple[Running, Path]]:
    db = await _corrupt_copy(tmp_path)
    async with running(tmp_path, db) as r:
        yield r, db


async def test_corrupt_database_turns_healthz_503_naming_it(
    corrupt: tuple[Running, Path],
) -> None:
    r, _ = corrupt
    body = await r.health(503)
    assert body == {"database": "failing", "cause": "corrupt", "bot": "ok", "role": "leader"}


async def test_metrics_answer_on_a_corrupt_database_without_its_figures(
    corrupt: tuple[Running, Path],
) -> None:
    r, _ = corrupt
    status, page = await r.get("/metrics")
    assert status == 200, page
    assert "partnerbot_metrics_store_errors_total 1.0" in page
    assert "partnerbot_days_credited" not in page  # left out, not made up
    assert "partnerbot_errors_total" in page  # the process's own figures are there
    await r.health(503)
    status, page = await r.get("/metrics")
    assert status == 200 and "partnerbot_storage_healthy 0.0" in page


async def test_ledger_verify_fails_on_a_corrupt_database(tmp_path: Path) -> None:
    db = await _corrupt_copy(tmp_path)
    done = await cli("ledger", "verify", db=db)
    assert done.code == 1, done.out
    assert done.out.startswith("database corrupt: PRAGMA integrity_check found"), done.out
    assert "ledger ok" not in done.out


def _unwritable(path: Path) -> Callable[[], None] | None:
    """Make `path` impossible to open for writing, even for root (the immutable flag);
    returns what undoes it, or None where this machine cannot do it."""
    if os.geteuid() != 0:
        path.chmod(0o400)
        return lambda: path.chmod(0o600)
    if shutil.which("chattr") is None:
        return None
    made = subprocess.run(["chattr", "+i", str(path)], check=False, capture_output=True)
    if made.returncode != 0:  # a filesystem without the flag, or no such capability
        return None

    def writable() -> None:
        subprocess.run(["chattr", "-i", str(path)], check=True)

    return writable


async def test_a_database_opened_read_only_writes_again_once_the_file_is_writable(
    tmp_path: Path,
) -> None:
    """The real file fault: SQLite opens a file it cannot write read-only, and that
    connection never writes again. The probe reconnects once the file is writable."""
    db = tmp_path / "bot.db"
    store = await SqliteStore.open(db, synchronous="NORMAL")
    billing = BillingService(store, SystemClock(), BillingPolicy())
    await billing.create_partner("Acme", "support:1")
    await store.close()
    undo = _unwritable(db)
    if undo is None:
        pytest.skip("cannot make a file read-only for this user here")
    try:
        store = await SqliteStore.open(db, synchronous="NORMAL")
    except BaseException:
        undo()
        raise
    try:
        billing = BillingService(store, SystemClock(), BillingPolicy())
        found = await store.probe(1, deep=False)
        assert found.fault is Fault.READ_ONLY
        with pytest.raises(StorageError, match="readonly"):
            await billing.create_partner("Globex", "support:1")
        assert store.health.state.fault is Fault.READ_ONLY
        undo()
        undo = None
        for now_us in range(2, 5):  # the first passing probe may not clear a fresh failure
            await store.probe(now_us, deep=True)
        assert store.health.state.healthy
        made = await billing.create_partner("Globex", "support:1")
        assert made.partner.name == "Globex"
    finally:
        if undo is not None:
            undo()
        await store.close()


async def test_a_lock_held_by_another_process_is_reported_as_locked(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    store = await SqliteStore.open(db, synchronous="NORMAL", busy_timeout_ms=50)
    other = sqlite3.connect(db, isolation_level=None)
    try:
        assert (await store.probe(1, deep=True)).healthy
        other.execute("BEGIN IMMEDIATE")  # as a hand-run sqlite3 shell left open would
        found = await store.probe(2, deep=False)
        assert found.fault is Fault.LOCKED
        assert store.health.state.fault is Fault.LOCKED
        other.execute("ROLLBACK")
        assert (await store.probe(3, deep=False)).healthy
        assert store.health.state.healthy
    finally:
        other.close()
        await store.close()
