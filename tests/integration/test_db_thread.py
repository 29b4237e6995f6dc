"""The SQLite store's database thread: order, group commit, failures, closing.

Writes queued together share one transaction, each in its own savepoint. To queue them
together, a test first holds the thread with a function that waits on a gate, submits the
writes, then opens the gate.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from core.errors import InsufficientBalance, StorageError
from core.invariants import verify
from core.model import partner_account
from core.outcomes import DaysAllocated
from core.policy import BillingPolicy
from core.service import BillingService
from storage.dbthread import MAX_GROUP, DatabaseThread
from storage.sqlite import SqliteStore
from tests.conftest import FakeClock

SUPPORT = "support:1"


class Traced:
    """A database thread over a file whose statements are recorded (on that thread)."""

    def __init__(self, path: Path) -> None:
        self.statements: list[str] = []
        self.path = path

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY)")
        conn.set_trace_callback(self.statements.append)
        return conn

    def rows(self) -> list[str]:
        with sqlite3.connect(self.path) as conn:
            return [r[0] for r in conn.execute("SELECT k FROM t ORDER BY k")]

    def count(self, statement: str) -> int:
        return sum(1 for s in self.statements if s.strip().upper() == statement)


@pytest.fixture
async def traced(tmp_path: Path) -> AsyncIterator[tuple[Traced, DatabaseThread]]:
    t = Traced(tmp_path / "t.db")
    thread = DatabaseThread(t.connect, name="test")
    await thread.start()
    yield t, thread
    await thread.close()


def insert(key: str) -> Callable[[sqlite3.Connection], str]:
    def work(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t (k) VALUES (?)", (key,))
        return key

    return work


def insert_then_fail(key: str) -> Callable[[sqlite3.Connection], str]:
    def work(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t (k) VALUES (?)", (key,))
        raise ValueError(f"refused after writing {key}")

    return work


async def queued_together(
    hold: Callable[[Callable[[Any], bool]], Awaitable[Any]],
    submits: list[Callable[[], Awaitable[Any]]],
) -> list[Any]:
    """Hold the thread, submit everything, let it go; the outcomes in submit order."""
    gate = threading.Event()
    held = asyncio.create_task(hold(lambda _: gate.wait(10)))
    await asyncio.sleep(0.01)  # the thread is now waiting on the gate
    tasks = [asyncio.create_task(s()) for s in submits]
    await asyncio.sleep(0)  # every task has put its work on the queue
    gate.set()
    assert await held is True
    return list(await asyncio.gather(*tasks, return_exceptions=True))


async def test_writes_queued_together_commit_in_one_transaction(
    traced: tuple[Traced, DatabaseThread],
) -> None:
    t, thread = traced
    keys = [f"k{i}" for i in range(5)]
    t.statements.clear()
    writes = [lambda k=k: thread.write(insert(k)) for k in keys]
    results = await queued_together(thread.call, writes)
    assert results == keys
    assert t.rows() == keys
    assert t.count("BEGIN IMMEDIATE") == 1
    assert t.count("COMMIT") == 1
    assert t.count("SAVEPOINT USE_CASE") == 5


async def test_a_failing_use_case_in_a_group_rolls_back_alone(
    traced: tuple[Traced, DatabaseThread],
) -> None:
    t, thread = traced
    t.statements.clear()
    results = await queued_together(thread.call, [
        lambda: thread.write(insert("a")),
        lambda: thread.write(insert_then_fail("b")),
        lambda: thread.write(insert("c")),
        lambda: thread.write(insert("a")),  # a duplicate key: refused by SQLite, alone
        lambda: thread.write(insert("d")),
    ])
    assert results[0] == "a" and results[2] == "c" and results[4] == "d"
    assert isinstance(results[1], ValueError) and "refused after writing b" in str(results[1])
    assert isinstance(results[3], StorageError) and "constraint failed" in str(results[3])
    assert t.rows() == ["a", "c", "d"]  # b's insert undone, the others kept
    assert t.count("COMMIT") == 1  # still one group: the failures did not break it
    assert t.count("ROLLBACK TO USE_CASE") == 2


async def test_a_group_whose_transaction_is_lost_runs_each_use_case_again_alone(
    traced: tuple[Traced, DatabaseThread],
) -> None:
    """A use case that ends the shared transaction (as SQLite does itself on a full disk)
    takes the work done before it in the group with it: that work runs again, alone, and
    is committed once; the culprit fails on its own."""
    t, thread = traced

    def rogue(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t (k) VALUES ('rogue')")
        conn.execute("ROLLBACK")
        return "rogue"

    t.statements.clear()
    results = await queued_together(thread.call, [
        lambda: thread.write(insert("a")),
        lambda: thread.write(rogue),
        lambda: thread.write(insert("c")),
    ])
    assert results[0] == "a" and results[2] == "c"
    assert isinstance(results[1], StorageError)
    assert t.rows() == ["a", "c"]
    assert t.count("BEGIN IMMEDIATE") == 4  # the group, then each of the three alone


async def test_the_thread_keeps_the_order_of_submission(
    traced: tuple[Traced, DatabaseThread],
) -> None:
    """A read queued between writes sees the writes before it and none after it."""
    _, thread = traced

    def count(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])

    results = await queued_together(thread.call, [
        lambda: thread.write(insert("a")),
        lambda: thread.write(insert("b")),
        lambda: thread.call(count),
        lambda: thread.write(insert("c")),
        lambda: thread.call(count),
    ])
    assert results == ["a", "b", 2, "c", 3]


async def test_a_group_holds_at_most_max_group_writes(
    traced: tuple[Traced, DatabaseThread],
) -> None:
    t, thread = traced
    n = MAX_GROUP + 3
    t.statements.clear()
    results = await queued_together(
        thread.call, [lambda i=i: thread.write(insert(f"{i:04}")) for i in range(n)]
    )
    assert results == [f"{i:04}" for i in range(n)]
    assert t.count("COMMIT") == 2
    assert len(t.rows()) == n


async def test_a_cancelled_caller_does_not_undo_or_stop_the_work(
    traced: tuple[Traced, DatabaseThread],
) -> None:
    t, thread = traced
    gate = threading.Event()
    held = asyncio.create_task(thread.call(lambda _: gate.wait(10)))
    await asyncio.sleep(0.01)
    doomed = asyncio.create_task(thread.write(insert("x")))
    await asyncio.sleep(0)
    doomed.cancel()
    gate.set()
    await held
    assert await thread.write(insert("y")) == "y"
    assert t.rows() == ["x", "y"]


async def test_after_close_every_call_is_refused(tmp_path: Path) -> None:
    t = Traced(tmp_path / "t.db")
    thread = DatabaseThread(t.connect, name="test")
    await thread.start()
    await thread.write(insert("a"))
    await thread.close()
    with pytest.raises(StorageError, match="closed"):
        await thread.call(lambda conn: conn.execute("SELECT 1"))
    await thread.close()  # a second close is harmless
    assert t.rows() == ["a"]


async def test_a_connection_that_cannot_open_fails_start(tmp_path: Path) -> None:
    def connect() -> sqlite3.Connection:
        return sqlite3.connect(f"file:{tmp_path / 'missing.db'}?mode=ro", uri=True)

    thread = DatabaseThread(connect, name="test")
    with pytest.raises(StorageError, match="unable to open"):
        await thread.start()
    with pytest.raises(StorageError, match="closed"):
        await thread.call(lambda conn: None)


# -- through the store ------------------------------------------------------------------


@pytest.fixture
async def billing(tmp_path: Path) -> AsyncIterator[BillingService]:
    store = await SqliteStore.open(tmp_path / "partnerbot.db")
    yield BillingService(store, FakeClock(), BillingPolicy())
    await store.close()


async def test_a_group_keeps_idempotency_and_refuses_an_overdraft_alone(
    billing: BillingService,
) -> None:
    """Allocations queued together: a repeated key does its work once and answers the same;
    one that would overdraw is refused while the ones around it are committed."""
    pid = (await billing.create_partner("Acme", SUPPORT)).partner.id
    await billing.grant_days(pid, 10, "seed", SUPPORT, "seed")
    await billing.create_channel(pid, "Shop", SUPPORT, "seed-channel")

    def allocate(days: int, key: str) -> Callable[[], Awaitable[DaysAllocated]]:
        return lambda: billing.allocate_days(pid, "Shop", days, SUPPORT, key)

    results = await queued_together(billing.store.read, [
        allocate(3, "one"),
        allocate(3, "one"),  # the same update again
        allocate(50, "too-much"),
        allocate(4, "two"),
    ])
    first, again, refused, second = results
    assert isinstance(first, DaysAllocated) and first.balance == 7
    assert again == replace(first, replayed=True)  # the first one's answer, marked
    assert isinstance(refused, InsufficientBalance)
    assert isinstance(second, DaysAllocated) and second.balance == 3
    store = billing.store
    assert await store.read(lambda lg: lg.balance(partner_account(pid))) == 3
    report = await store.verify(verify)
    assert report.ok, [str(v) for v in report.violations]


async def test_ping_is_false_and_close_harmless_once_closed(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "partnerbot.db")
    assert await store.ping() is True
    await store.close()
    assert await store.ping() is False
    await store.close()
