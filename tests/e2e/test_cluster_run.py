"""Several `partnerbot run` processes (the console script, configured by environment)
against one Bot API server on loopback: one owner of a SQLite file; one poller per
PostgreSQL database; one leader among instances sharing PostgreSQL, and a standby that
takes over within cluster.failover_seconds when the leader is SIGKILLed, and delivers
every queued notice exactly once (counted at the fake Bot API)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from core import notices
from core.model import Member, Role
from core.policy import BillingPolicy
from core.service import BillingService
from partnerbot.wiring import SystemClock
from storage.postgres import PostgresStore
from tests.e2e import clean_env, console_script
from tests.e2e.test_run import free_port
from tests.fakes.telegram_api import FakeTelegram

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]
FAILOVER = 4.0  # cluster.failover_seconds (the default is 10)
WEBHOOK_SECRET = "cluster-e2e-secret"


@dataclass
class Instance:
    name: str
    proc: asyncio.subprocess.Process
    http: str
    metrics: str
    log: Path

    async def get(self, url: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            return r.status, await r.text()

    async def health(self) -> tuple[int, dict[str, str]]:
        status, body = await self.get(self.http + "/healthz")
        parsed: dict[str, str] = json.loads(body)
        return status, parsed

    async def role(self) -> str | None:
        try:
            return (await self.health())[1].get("role")
        except aiohttp.ClientError:
            return None

    async def leader_metric(self) -> str:
        _, page = await self.get(self.metrics + "/metrics")
        [line] = [x for x in page.splitlines() if x.startswith("partnerbot_leader ")]
        return line


def settings_env(tg: FakeTelegram, workdir: Path, **extra: str) -> dict[str, str]:
    return clean_env(
        PARTNERBOT_TELEGRAM__TOKEN=tg.token,
        PARTNERBOT_TELEGRAM__API_BASE_URL=tg.base_url,
        PARTNERBOT_DATABASE__PATH=str(workdir / "bot.db"),
        PARTNERBOT_CLUSTER__FAILOVER_SECONDS=str(FAILOVER),
        PARTNERBOT_LOGGING__FORMAT="json",
        **extra,
    )


@asynccontextmanager
async def instance(
    tg: FakeTelegram, workdir: Path, name: str, **extra: str
) -> AsyncIterator[Instance]:
    """`partnerbot run` in `workdir`, once its /healthz answers 200; killed after."""
    port, metrics_port = free_port(), free_port()
    env = settings_env(
        tg, workdir, PARTNERBOT_SERVER__PORT=str(port),
        PARTNERBOT_METRICS__PORT=str(metrics_port), **extra,
    )
    log = workdir / f"{name}.log"
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            *console_script(), "run", cwd=workdir, env=env, stdout=sink, stderr=sink
        )
    run = Instance(
        name, proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}", log
    )
    try:
        for _ in range(300):  # up to 30 s to start on a busy machine
            if proc.returncode is not None:
                raise AssertionError(f"{name} exited: {log.read_text()[-2000:]}")
            try:
                if (await run.health())[0] == 200:
                    break
            except (aiohttp.ClientError, ValueError):
                pass
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"{name} never healthy: {log.read_text()[-2000:]}")
        yield run
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def refused(tg: FakeTelegram, workdir: Path, **extra: str) -> tuple[int, list[str]]:
    """Run a second `partnerbot run` that must refuse: its exit code and stderr lines."""
    env = settings_env(
        tg, workdir, PARTNERBOT_SERVER__PORT=str(free_port()), **extra,
    )
    proc = await asyncio.create_subprocess_exec(
        *console_script(), "run", cwd=workdir, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode().splitlines()


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A working directory for each of two instances."""
    made = (tmp_path / "a", tmp_path / "b")
    for d in made:
        d.mkdir()
    return made


async def roles(*runs: Instance) -> list[str | None]:
    return [await r.role() for r in runs]


async def until_roles(
    runs: tuple[Instance, ...], accept: set[tuple[str | None, ...]], within: float
) -> tuple[str | None, ...]:
    deadline = time.monotonic() + within
    while True:
        now = tuple(await roles(*runs))
        if now in accept:
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"roles {now}, wanted one of {accept}")
        await asyncio.sleep(0.05)


async def test_a_second_run_on_one_sqlite_file_is_refused_in_one_line(tmp_path: Path) -> None:
    async with FakeTelegram() as tg, instance(tg, tmp_path, "first") as first:
        status, body = await first.health()
        assert (status, body["role"]) == (200, "leader")  # it owns the file: it leads
        assert await first.leader_metric() == "partnerbot_leader 1.0"

        code, lines = await refused(tg, tmp_path)

        assert code == 2
        assert lines[-1:] == [
            f"partnerbot: database.path: another partnerbot run (pid {first.proc.pid}) is "
            f"using {tmp_path / 'bot.db'}; one process polls a SQLite database (several "
            "instances need telegram.mode = webhook)"
        ]
        assert len(lines) == 1, lines
        assert (await first.health())[1]["role"] == "leader"  # the first one runs on


async def test_a_second_poller_on_one_postgresql_database_is_refused(
    dirs: tuple[Path, Path], pg_url: str
) -> None:
    async with FakeTelegram() as tg, instance(
        tg, dirs[0], "a", PARTNERBOT_DATABASE__URL=pg_url
    ) as first:
        code, lines = await refused(tg, dirs[1], PARTNERBOT_DATABASE__URL=pg_url)

        assert code == 2
        # One line for the operator; besides it only log records (this instance's own
        # store may have logged opening its database), no traceback.
        [line] = [x for x in lines if not x.startswith("{")]
        assert lines[-1] == line and "Traceback" not in "\n".join(lines)
        assert line.startswith("partnerbot: telegram.mode: partnerbot ")
        assert f":{first.proc.pid} already polls Telegram for this database" in line
        assert pg_url not in line


async def test_the_standby_takes_over_when_the_leader_is_killed(
    dirs: tuple[Path, Path], pg_url: str
) -> None:
    webhook = {
        "PARTNERBOT_DATABASE__URL": pg_url,
        "PARTNERBOT_TELEGRAM__MODE": "webhook",
        "PARTNERBOT_TELEGRAM__WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    async with FakeTelegram() as tg, AsyncExitStack() as stack:
        a = await stack.enter_async_context(instance(tg, dirs[0], "a", **webhook))
        b = await stack.enter_async_context(instance(tg, dirs[1], "b", **webhook))
        runs = (a, b)
        now = await until_roles(
            runs, {("leader", "standby"), ("standby", "leader")}, FAILOVER * 3
        )
        leader, standby = (a, b) if now[0] == "leader" else (b, a)
        assert (await standby.health())[0] == 200  # a standby is healthy
        assert await leader.leader_metric() == "partnerbot_leader 1.0"
        assert await standby.leader_metric() == "partnerbot_leader 0.0"

        leader.proc.kill()
        await leader.proc.wait()
        killed = time.monotonic()
        deadline = killed + FAILOVER * 3
        while await standby.role() != "leader":
            assert time.monotonic() < deadline, "the standby never took over"
            await asyncio.sleep(0.05)
        took_over = time.monotonic() - killed
        assert took_over <= FAILOVER, took_over
        assert await standby.leader_metric() == "partnerbot_leader 1.0"
        log = standby.log.read_text()
        assert '"msg": "role: leader (took the leader lock, epoch ' in log, log[-2000:]


MEMBERS = range(700_001, 700_021)


def low_balance(balance: int) -> notices.LowBalanceCrossed:
    return notices.LowBalanceCrossed(balance=balance, threshold=50, running=0, runway=None)


async def test_every_queued_notice_is_delivered_once_across_a_failover(
    dirs: tuple[Path, Path], pg_url: str
) -> None:
    webhook = {
        "PARTNERBOT_DATABASE__URL": pg_url,
        "PARTNERBOT_TELEGRAM__MODE": "webhook",
        "PARTNERBOT_TELEGRAM__WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    async with FakeTelegram() as tg, AsyncExitStack() as stack:
        a = await stack.enter_async_context(instance(tg, dirs[0], "a", **webhook))
        b = await stack.enter_async_context(instance(tg, dirs[1], "b", **webhook))
        now = await until_roles(
            (a, b), {("leader", "standby"), ("standby", "leader")}, FAILOVER * 3
        )
        leader, standby = (a, b) if now[0] == "leader" else (b, a)

        # The instances share this database: what the test queues, the leader sends.
        store = await PostgresStore.open(pg_url)
        stack.push_async_callback(store.close)
        clock = SystemClock()
        made = await BillingService(store, clock, BillingPolicy()).create_partner(
            "Acme", "support:1"
        )
        pid = made.partner.id
        await store.write(lambda lg: [
            lg.save_member(Member(u, pid, Role.MEMBER, clock.now())) for u in MEMBERS
        ])
        users = [tg.user(u, f"M{u}", started=True) for u in MEMBERS]

        async def queue(balance: int) -> None:
            at = clock.now()
            await store.write(
                lambda lg: notices.notify(lg, at, f"e2e:{balance}", pid, low_balance(balance))
            )

        def received() -> Counter[tuple[int, str]]:
            return Counter((u.user_id, m.text.split(" days left")[0]) for u in users
                           for m in u.replies)

        async def until_each_has(count: int) -> None:
            await tg.wait_until(
                lambda: min(len(u.replies) for u in users) >= count,
                timeout=FAILOVER * 6, what=f"{count} notices to each member",
            )

        await queue(40)  # sent by the leader
        await until_each_has(1)

        # Telegram fails for a while: the next notice waits in the outbox, and the
        # leader dies with it queued.
        tg.fail_server_error("sendMessage", times=None)
        failed_before = len(tg.calls_to("sendMessage"))
        await queue(30)
        await tg.wait_for_call("sendMessage", count=failed_before + 1, timeout=FAILOVER * 3)
        leader.proc.kill()
        await leader.proc.wait()
        await queue(20)  # queued while nobody leads
        tg.clear_faults()

        await until_each_has(3)
        assert await standby.role() == "leader"
        await asyncio.sleep(2.0)  # a duplicate would have come by now (rounds: 1 s)
        expected = Counter(
            {(u, f"Low balance: {n}"): 1 for u in MEMBERS for n in (40, 30, 20)}
        )
        assert received() == expected
        [(pending,)] = await store.execute_raw(
            "SELECT count(*) FROM deliveries WHERE status <> 'sent'"
        )
        assert pending == 0
