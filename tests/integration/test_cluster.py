"""Leadership on a real PostgreSQL server (tests/pg_server.py) and on a real SQLite file:
exactly one leader; a leader whose connection is killed stops before another starts;
a second poller or a second owner of the SQLite file refused with one line; /healthz and
partnerbot_leader say the role."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psycopg
import pytest
from aiohttp import web
from prometheus_client import generate_latest

from partnerbot.cluster import (
    LEADER_KEY,
    CannotStart,
    Leadership,
    PgLeadership,
    Role,
    SoleLeadership,
    Timing,
)
from partnerbot.http import build_http_app
from partnerbot.metrics import Metrics
from tests.faults.pg_proxy import PgProxy

FAILOVER = 4.0  # cluster.failover_seconds for these tests (the default is 10)
TIMING = Timing.for_failover(FAILOVER)


@dataclass
class Timeline:
    """Every change of role of every instance, on one monotonic clock."""

    events: list[tuple[float, str, Role]] = field(default_factory=list)

    def recorder(self, name: str) -> Callable[[Role], None]:
        return lambda role: self.events.append((time.monotonic(), name, role))

    def leading_spans(self, name: str, until: float) -> list[tuple[float, float]]:
        spans, began = [], None
        for at, who, role in self.events:
            if who != name:
                continue
            if role is Role.LEADER:
                began = at
            elif began is not None:
                spans.append((began, at))
                began = None
        if began is not None:
            spans.append((began, until))
        return spans


class Work:
    """Duties that record when they run (what the runner's LeaderDuties start)."""

    def __init__(self, name: str, timeline: Timeline) -> None:
        self.name, self.timeline = name, timeline
        self.running = False
        self.leads = 0

    async def lead(self) -> int:
        self.running = True
        self.leads += 1
        return self.leads

    async def step_down(self) -> None:
        self.running = False


async def leader_backend(url: str) -> int | None:
    """The server process id of the session holding the leader lock."""
    hi, lo = (LEADER_KEY >> 32) & 0xFFFF_FFFF, LEADER_KEY & 0xFFFF_FFFF
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s"
            " AND objid = %s AND objsubid = 1 AND granted", (hi, lo),
        )
        row = await cur.fetchone()
    return None if row is None else int(row[0])


async def until(condition: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def instances(
    url: str, names: list[str], timeline: Timeline
) -> AsyncIterator[dict[str, tuple[PgLeadership, Work]]]:
    started: dict[str, tuple[PgLeadership, Work]] = {}
    try:
        for name in names:
            leadership = PgLeadership(url, TIMING, timeline.recorder(name), name=name)
            await leadership.open()
            work = Work(name, timeline)
            leadership.start(work)
            started[name] = (leadership, work)
        yield started
    finally:
        for leadership, _ in started.values():
            await leadership.close()


def leaders(started: dict[str, tuple[PgLeadership, Work]]) -> list[str]:
    return [n for n, (lead, _) in started.items() if lead.role is Role.LEADER]


async def test_two_instances_one_database_exactly_one_leads(pg_url: str) -> None:
    timeline = Timeline()
    async with instances(pg_url, ["a", "b"], timeline) as started:
        await until(lambda: len(leaders(started)) == 1, FAILOVER * 2)
        # Stays so: the standby keeps asking and keeps being refused.
        await asyncio.sleep(TIMING.poll * 2 + TIMING.grace)
        [leader] = leaders(started)
        assert [n for n, (_, w) in started.items() if w.running] == [leader]
        assert started[leader][1].leads == 1


async def test_a_killed_leader_connection_stops_leading_before_the_other_starts(
    pg_url: str,
) -> None:
    timeline = Timeline()
    async with instances(pg_url, ["a", "b"], timeline) as started:
        await until(lambda: len(leaders(started)) == 1, FAILOVER * 2)
        [old] = leaders(started)
        [new] = [n for n in started if n != old]
        backend = await leader_backend(pg_url)
        assert backend is not None

        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        killed = time.monotonic()

        await until(lambda: started[new][0].role is Role.LEADER, FAILOVER * 3)
        took_over = time.monotonic()
        assert not started[old][1].running  # the old one's work stopped
        # The timeline: the old leader's span ended before the new one's began.
        [old_span, *_] = timeline.leading_spans(old, took_over)
        [new_span] = timeline.leading_spans(new, took_over)
        assert old_span[1] < new_span[0], timeline.events
        assert old_span[1] >= killed
        # The new leader within cluster.failover_seconds of the loss.
        assert new_span[0] - killed <= FAILOVER, (new_span[0] - killed, timeline.events)


async def test_a_leader_that_stops_hands_over(pg_url: str) -> None:
    timeline = Timeline()
    async with instances(pg_url, ["a", "b"], timeline) as started:
        await until(lambda: len(leaders(started)) == 1, FAILOVER * 2)
        [old] = leaders(started)
        [new] = [n for n in started if n != old]
        await started[old][0].close()
        stopped = time.monotonic()
        assert started[old][0].role is Role.STANDBY and not started[old][1].running
        await until(lambda: started[new][1].running, FAILOVER * 2)
        [(began, _)] = timeline.leading_spans(new, time.monotonic())
        assert began > stopped


async def test_a_fenced_leader_steps_down_and_competes_again(pg_url: str) -> None:
    timeline = Timeline()
    async with instances(pg_url, ["a"], timeline) as started:
        leadership, work = started["a"]
        await until(lambda: work.running, FAILOVER * 2)
        leadership.fenced()  # what the outbox says when it meets a later epoch
        await until(lambda: not work.running, FAILOVER)
        assert leadership.role is Role.STANDBY
        await until(lambda: work.running, FAILOVER * 2)  # alone: elected again
        assert work.leads == 2


async def test_a_second_poller_is_refused_with_one_line(pg_url: str) -> None:
    first = PgLeadership(pg_url, TIMING, exclusive_poller=True, name="partnerbot host-a:11")
    await first.open()
    try:
        second = PgLeadership(pg_url, TIMING, exclusive_poller=True, name="partnerbot b:12")
        with pytest.raises(CannotStart) as refused:
            await second.open()
        message = str(refused.value)
        assert "\n" not in message
        assert message.startswith("telegram.mode: partnerbot host-a:11 already polls")
        assert 'telegram.mode = "webhook"' in message
        # A webhook-mode instance beside the poller is welcome (it only competes to lead).
        beside = PgLeadership(pg_url, TIMING, exclusive_poller=False)
        await beside.open()
        await beside.close()
    finally:
        await first.close()
    # The poller gone, a new one may poll.
    again = PgLeadership(pg_url, TIMING, exclusive_poller=True)
    await again.open()
    await again.close()


async def test_an_unreachable_election_database_refuses_start_with_one_line() -> None:
    leadership = PgLeadership("postgresql://nobody@127.0.0.1:1/none", TIMING)
    with pytest.raises(CannotStart) as refused:
        await leadership.open()
    assert str(refused.value).startswith("database.url: cannot connect for the leader election")
    assert "\n" not in str(refused.value)


async def test_a_second_owner_of_a_sqlite_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    first = SoleLeadership(db)
    await first.open()
    work = Work("first", Timeline())
    first.start(work)
    await until(lambda: work.running, 5)
    assert first.role is Role.LEADER
    assert (tmp_path / "bot.db.lock").stat().st_mode & 0o777 == 0o600
    try:
        with pytest.raises(CannotStart) as refused:
            await SoleLeadership(db).open()
        message = str(refused.value)
        assert "\n" not in message
        assert message.startswith(f"database.path: another partnerbot run (pid {os.getpid()})")
        assert str(db) in message
    finally:
        await first.close()
    assert not work.running and first.role is Role.STANDBY
    second = SoleLeadership(db)
    await second.open()  # released on close (and by the kernel when a process dies)
    await second.close()


async def test_webhook_instances_on_one_sqlite_file_elect_by_the_lock(tmp_path: Path) -> None:
    """Webhook mode may run a second process on the file (a deploy): it waits as a
    standby, never leads beside the holder, and takes over once the holder is gone."""
    db = tmp_path / "bot.db"
    timeline = Timeline()
    first = SoleLeadership(db, timeline.recorder("first"), exclusive=False, poll=0.05)
    second = SoleLeadership(db, timeline.recorder("second"), exclusive=False, poll=0.05)
    first_work, second_work = Work("first", timeline), Work("second", timeline)
    await first.open()
    first.start(first_work)
    await until(lambda: first_work.running, 5)
    await second.open()  # not refused: it waits
    second.start(second_work)
    try:
        await asyncio.sleep(0.5)  # ten polls: the lock is held, so it stays a standby
        assert (first.role, second.role) == (Role.LEADER, Role.STANDBY)
        assert not second_work.running
        await first.close()
        await until(lambda: second_work.running, 5)
        assert second.role is Role.LEADER and not first_work.running
    finally:
        await first.close()
        await second.close()


async def healthz_role(leadership: Leadership) -> dict[str, str]:
    async def healthy() -> dict[str, bool]:
        return {"database": True}

    runner = web.AppRunner(build_http_app(None, healthy, lambda: leadership.role))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        [sock] = runner.addresses
        url = f"http://127.0.0.1:{sock[1]}/healthz"
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200  # a standby is healthy
            body: dict[str, str] = await resp.json()
        return body
    finally:
        await runner.cleanup()


async def test_healthz_and_the_leader_metric_say_each_role(pg_url: str) -> None:
    metrics = {"a": Metrics(), "b": Metrics()}
    started: dict[str, tuple[PgLeadership, Work]] = {}
    try:
        for name in ("a", "b"):
            m = metrics[name]
            leadership = PgLeadership(
                pg_url, TIMING, lambda role, m=m: m.leader.set(int(role is Role.LEADER))
            )
            await leadership.open()
            work = Work(name, Timeline())
            leadership.start(work)
            started[name] = (leadership, work)
        await until(lambda: len(leaders(started)) == 1, FAILOVER * 2)
        [leader] = leaders(started)
        [standby] = [n for n in started if n != leader]
        assert await healthz_role(started[leader][0]) == {"database": "ok", "role": "leader"}
        assert await healthz_role(started[standby][0]) == {"database": "ok", "role": "standby"}
        assert b"partnerbot_leader 1.0" in generate_latest(metrics[leader].registry)
        assert b"partnerbot_leader 0.0" in generate_latest(metrics[standby].registry)
    finally:
        for leadership, _ in started.values():
            await leadership.close()


async def test_a_leader_cut_off_from_the_database_stops_before_the_other_starts(
    pg_url: str,
) -> None:
    timeline = Timeline()
    proxy = PgProxy(pg_url)
    proxy.start()
    cut_off = PgLeadership(proxy.url, TIMING, timeline.recorder("cut"), name="cut")
    other = PgLeadership(pg_url, TIMING, timeline.recorder("other"), name="other")
    cut_work, other_work = Work("cut", timeline), Work("other", timeline)
    try:
        await cut_off.open()
        cut_off.start(cut_work)
        await until(lambda: cut_work.running, FAILOVER * 2)
        await other.open()
        other.start(other_work)

        proxy.go_silent()  # a partition: the leader's checks go unanswered
        silent = time.monotonic()
        await until(lambda: cut_off.role is Role.STANDBY, FAILOVER)
        assert not cut_work.running
        # The server still holds the old session (and its lock) until the connection
        # really ends: no leader meanwhile, rather than two.
        assert other.role is Role.STANDBY
        assert timeline.leading_spans("cut", time.monotonic())[0][1] - silent <= (
            TIMING.heartbeat + TIMING.check_timeout + 0.5
        )
        proxy.cut()  # the connection ends at last: the server frees the lock
        await until(lambda: other_work.running, FAILOVER * 2)
        [(_, old_ended)] = timeline.leading_spans("cut", time.monotonic())
        [(new_began, _)] = timeline.leading_spans("other", time.monotonic())
        assert old_ended < new_began, timeline.events
    finally:
        proxy.stop()
        await other.close()
        await cut_off.close()
