"""Concurrent operations on one partner serialize: no lost update, no overdraft.

Three levels: many coroutines on one store; two SqliteStore connections to one file in
one event loop (as the bot and the CLI would be); and real processes sharing a file.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from core.errors import InsufficientBalance
from core.invariants import verify
from core.model import partner_account
from core.outcomes import DaysAllocated
from core.policy import BillingPolicy
from core.ports import Store
from core.service import BillingService
from storage.sqlite import SqliteStore
from tests.conftest import START, FakeClock

SUPPORT = "support:1"
DAY = timedelta(days=1)
REPO = Path(__file__).resolve().parents[2]


async def seed(billing: BillingService, days: int) -> int:
    """A partner with `days` on its balance and one empty channel named Shop."""
    pid = (await billing.create_partner("Acme", SUPPORT)).partner.id
    if days:
        await billing.grant_days(pid, days, "seed", SUPPORT, "seed")
    await billing.create_channel(pid, "Shop", SUPPORT, "seed-channel")
    return pid


async def assert_settled(store: Store, pid: int, *, balance: int, until_days: int) -> None:
    """The balance and the channel are what serial execution would give; verify is ok."""
    report = await store.verify(verify)
    assert report.ok, [str(v) for v in report.violations]
    assert await store.read(lambda lg: lg.balance(partner_account(pid))) == balance
    channel = await store.read(lambda lg: lg.find_live_channel(pid, "Shop"))
    assert channel is not None
    assert channel.active_until == (START + until_days * DAY if until_days else None)


def tally(results: Sequence[object]) -> tuple[list[DaysAllocated], list[InsufficientBalance]]:
    done = [r for r in results if isinstance(r, DaysAllocated)]
    refused = [r for r in results if isinstance(r, InsufficientBalance)]
    assert len(done) + len(refused) == len(results), [
        r for r in results if not isinstance(r, DaysAllocated | InsufficientBalance)
    ]
    return done, refused


async def test_fifty_concurrent_allocations_of_a_day_against_twenty_days_let_twenty_through(
    billing: BillingService, store: Store
) -> None:
    pid = await seed(billing, 20)

    results = await asyncio.gather(
        *(billing.allocate_days(pid, "Shop", 1, f"user:{i}", f"tap:{i}") for i in range(50)),
        return_exceptions=True,
    )

    done, refused = tally(results)
    assert (len(done), len(refused)) == (20, 30)
    # Each success saw the balance the one before it left: they ran one after another.
    assert sorted(d.balance for d in done) == list(range(20))
    assert {(r.needed, r.available) for r in refused} == {(1, 0)}
    await assert_settled(store, pid, balance=0, until_days=20)


async def race_two_stores(one: Store, two: Store, clock: FakeClock, days: int) -> None:
    """50 one-day allocations, alternating between two stores on one database, against
    `days` days: exactly `days` are done, the rest refused, nothing overdrawn or lost.
    Closes both stores. (tests/contract/test_concurrency_postgres.py runs it too.)"""
    try:
        bot = BillingService(one, clock, BillingPolicy())
        cli = BillingService(two, clock, BillingPolicy())
        pid = await seed(bot, days)

        results = await asyncio.gather(
            *(
                service.allocate_days(pid, "Shop", 1, SUPPORT, f"{name}:{i}")
                for i in range(25)
                for name, service in (("bot", bot), ("cli", cli))
            ),
            return_exceptions=True,
        )

        done, refused = tally(results)
        assert (len(done), len(refused)) == (days, 50 - days)
        assert sorted(d.balance for d in done) == list(range(days))
        for store in (one, two):
            await assert_settled(store, pid, balance=0, until_days=days)
    finally:
        await one.close()
        await two.close()


@pytest.mark.slow
async def test_two_connections_to_one_file_neither_lose_an_update_nor_overdraw(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "shared.db"
    await race_two_stores(await SqliteStore.open(path), await SqliteStore.open(path), clock, 30)


@pytest.mark.slow
async def test_grants_on_one_connection_and_allocations_on_another_add_up_exactly(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "shared.db"
    one, two = await SqliteStore.open(path), await SqliteStore.open(path)
    try:
        support = BillingService(one, clock, BillingPolicy())
        partner = BillingService(two, clock, BillingPolicy())
        pid = await seed(support, 0)

        grants = [
            support.grant_days(pid, 1, "drip", SUPPORT, f"grant:{i}") for i in range(30)
        ]
        spends = [
            partner.allocate_days(pid, "Shop", 1, "user:100", f"tap:{i}") for i in range(30)
        ]
        results = await asyncio.gather(*grants, *spends, return_exceptions=True)

        assert not [r for r in results[:30] if isinstance(r, BaseException)]
        done, _ = tally(results[30:])
        await assert_settled(one, pid, balance=30 - len(done), until_days=len(done))
    finally:
        await one.close()
        await two.close()


async def same_key_on_two_stores(one: Store, two: Store, clock: FakeClock) -> None:
    """Each of ten keys arrives on both stores at once: each acts once, the other call
    replays its outcome. Closes both stores. (Run on PostgreSQL too.)"""
    try:
        first = BillingService(one, clock, BillingPolicy())
        second = BillingService(two, clock, BillingPolicy())
        pid = await seed(first, 30)

        results = await asyncio.gather(*(
            service.allocate_days(pid, "Shop", 2, "user:100", f"tap:{i}")
            for i in range(10)
            for service in (first, second)
        ))

        for a, b in zip(results[::2], results[1::2], strict=True):
            assert {a.replayed, b.replayed} == {False, True}
            assert replace(a, replayed=False) == replace(b, replayed=False)
        await assert_settled(one, pid, balance=10, until_days=20)
    finally:
        await one.close()
        await two.close()


@pytest.mark.slow
async def test_the_same_key_arriving_on_two_connections_at_once_acts_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "shared.db"
    await same_key_on_two_stores(
        await SqliteStore.open(path), await SqliteStore.open(path), clock
    )


# A separate process: opens the shared file, waits for the go file, then tries its
# allocations. The clock stands still at the instant passed in, so the channel's final
# active_until tells whether any update was lost.
WORKER = """
import asyncio, os, sys
from datetime import datetime
from core.errors import InsufficientBalance
from core.policy import BillingPolicy
from core.service import BillingService
from storage.sqlite import SqliteStore

path, worker, attempts, go, instant = sys.argv[1:6]
at = datetime.fromisoformat(instant)

class Clock:
    def now(self):
        return at

async def main():
    store = await SqliteStore.open(path, busy_timeout_ms=30_000)
    try:
        billing = BillingService(store, Clock(), BillingPolicy())
        print("ready", flush=True)
        while not os.path.exists(go):
            await asyncio.sleep(0.002)
        done = refused = 0
        for i in range(int(attempts)):
            try:
                await billing.allocate_days(1, "Shop", 1, "user:" + worker, worker + ":" + str(i))
                done += 1
            except InsufficientBalance:
                refused += 1
        print(done, refused, flush=True)
    finally:
        await store.close()  # must not fail while another worker writes: an error exits 1

asyncio.run(main())
"""


@pytest.mark.slow
async def test_four_processes_sharing_a_file_allocate_exactly_the_fifty_days_there_are(
    tmp_path: Path, clock: FakeClock
) -> None:
    path, go = tmp_path / "shared.db", tmp_path / "go"
    store = await SqliteStore.open(path)
    try:
        pid = await seed(BillingService(store, clock, BillingPolicy()), 50)
        assert pid == 1  # the workers address the partner by this id
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", WORKER, str(path), f"w{n}", "20", str(go),
                START.isoformat(), cwd=REPO, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            for n in range(4)
        ]
        for worker in workers:
            assert worker.stdout is not None
            line = await asyncio.wait_for(worker.stdout.readline(), timeout=60)
            assert line.strip() == b"ready", (line, await worker.stderr.read())  # type: ignore[union-attr]
        go.touch()

        finished = await asyncio.wait_for(
            asyncio.gather(*(w.communicate() for w in workers)), timeout=120
        )

        counts = []
        for worker, (out, err) in zip(workers, finished, strict=True):
            assert worker.returncode == 0, err.decode()
            done, refused = map(int, out.split())
            counts.append((done, refused))
        assert sum(d for d, _ in counts) == 50
        assert sum(r for _, r in counts) == 30
        await assert_settled(store, pid, balance=0, until_days=50)
        transfers = await store.verify(lambda s: sum(1 for _ in s.transfers()))
        assert transfers == 51  # the seed grant and fifty allocations of one day
    finally:
        await store.close()


async def test_closing_a_store_while_another_process_writes_does_not_fail(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "shared.db"
    store = await SqliteStore.open(path)
    billing = BillingService(store, clock, BillingPolicy())
    pid = await seed(billing, 10)
    await billing.allocate_days(pid, "Shop", 1, SUPPORT, "tap:1")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process, in the middle of a write
        await store.close()  # returns (raising nothing) although the file is locked
        # The other writer is unharmed: its transaction still commits.
        other.execute("UPDATE partners SET low_balance_days = 7 WHERE id = ?", (pid,))
        other.execute("COMMIT")
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()

    # What was committed before the close is all there, and the ledger verifies.
    reopened = await SqliteStore.open(path)
    try:
        await assert_settled(reopened, pid, balance=9, until_days=1)
        partner = await reopened.read(lambda lg: lg.get_partner(pid))
        assert partner is not None and partner.low_balance_days == 7
    finally:
        await reopened.close()
