"""Issue 12's acceptance on PostgreSQL: 50 concurrent 1-day allocations against a 20-day
balance give exactly 20, from several connections of one store (the `store`-parametrized
test in test_concurrency.py runs on PostgresStore too), from two stores on one database
in one event loop, and from four processes each with its own PostgresStore.

Writes serialize on the ledger's advisory lock (storage/postgres.py): each success must
see the balance the one before it left, and the ledger must verify afterwards.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from core.policy import BillingPolicy
from core.service import BillingService
from storage.postgres import PostgresStore
from tests.conftest import START, FakeClock
from tests.contract.test_concurrency import (
    REPO,
    assert_settled,
    race_two_stores,
    same_key_on_two_stores,
    seed,
)


@pytest.mark.slow
async def test_two_stores_on_one_database_allocate_exactly_the_twenty_days_there_are(
    pg_url: str, clock: FakeClock
) -> None:
    await race_two_stores(
        await PostgresStore.open(pg_url), await PostgresStore.open(pg_url), clock, 20
    )


@pytest.mark.slow
async def test_the_same_key_on_two_stores_at_once_acts_once(
    pg_url: str, clock: FakeClock
) -> None:
    await same_key_on_two_stores(
        await PostgresStore.open(pg_url), await PostgresStore.open(pg_url), clock
    )


# A separate process with its own PostgresStore (its own pool): waits for the go file,
# then fires its allocations concurrently. The clock stands still at the instant passed
# in, so the channel's final active_until tells whether any update was lost.
WORKER = """
import asyncio, os, sys
from datetime import datetime
from core.errors import InsufficientBalance
from core.policy import BillingPolicy
from core.service import BillingService
from storage.postgres import PostgresStore

url, worker, attempts, go, instant, pid = sys.argv[1:7]
at = datetime.fromisoformat(instant)

class Clock:
    def now(self):
        return at

async def main():
    store = await PostgresStore.open(url)
    try:
        billing = BillingService(store, Clock(), BillingPolicy())
        print("ready", flush=True)
        while not os.path.exists(go):
            await asyncio.sleep(0.002)
        results = await asyncio.gather(*(
            billing.allocate_days(int(pid), "Shop", 1, "user:" + worker, worker + ":" + str(i))
            for i in range(int(attempts))
        ), return_exceptions=True)
        done = sum(1 for r in results if not isinstance(r, BaseException))
        refused = sum(1 for r in results if isinstance(r, InsufficientBalance))
        others = [r for r in results if isinstance(r, BaseException)
                  and not isinstance(r, InsufficientBalance)]
        if others:
            raise others[0]
        print(done, refused, flush=True)
    finally:
        await store.close()

asyncio.run(main())
"""


@pytest.mark.slow
async def test_four_processes_on_one_database_allocate_exactly_the_twenty_days_there_are(
    pg_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    go = tmp_path / "go"
    store = await PostgresStore.open(pg_url)
    try:
        pid = await seed(BillingService(store, clock, BillingPolicy()), 20)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        # 13 + 13 + 12 + 12 = 50 attempts against 20 days.
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", WORKER, pg_url, f"w{n}", str(13 if n < 2 else 12), str(go),
                START.isoformat(), str(pid), cwd=REPO, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            for n in range(4)
        ]
        for worker in workers:
            assert worker.stdout is not None and worker.stderr is not None
            line = await asyncio.wait_for(worker.stdout.readline(), timeout=60)
            assert line.strip() == b"ready", (line, await worker.stderr.read())
        go.touch()

        finished = await asyncio.wait_for(
            asyncio.gather(*(w.communicate() for w in workers)), timeout=120
        )

        counts = []
        for worker, (out, err) in zip(workers, finished, strict=True):
            assert worker.returncode == 0, err.decode()
            done, refused = map(int, out.split())
            counts.append((done, refused))
        assert sum(d for d, _ in counts) == 20
        assert sum(r for _, r in counts) == 30
        await assert_settled(store, pid, balance=0, until_days=20)
        transfers = await store.verify(lambda s: sum(1 for _ in s.transfers()))
        assert transfers == 21  # the seed grant and twenty allocations of one day
    finally:
        await store.close()
