"""The scheduler's work against a real SQLite file, with a clock the tests move.

Monthly invoices (rule 6) on billing days past a short month's end and in a zone with
DST; low-balance alerts (rule 7) crossed down, up and down again, right after the
operation and by the sweep; expiry warnings (rule 8) at their stage boundaries; auto-renew
(rule 9); invoice reminders. Each also killed half-way and run again, and run twice at
once (in one process, and from two connections to one file): nothing twice, nothing lost.

One file per sweep: invoices, low balance, expiry, auto-renew, reminders, and a month
of all of them; the shared set-up is in harness.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.sqlite import SqliteStore
from tests.conftest import FakeClock
from tests.integration.sweeps.harness import T0, Book


@pytest.fixture
async def book(tmp_path: Path) -> AsyncIterator[Book]:
    path = tmp_path / "sweeps.db"
    store = await SqliteStore.open(path, synchronous="NORMAL")
    try:
        yield Book(store, FakeClock(T0), path)
    finally:
        await store.close()


@pytest.fixture
async def second(book: Book) -> AsyncIterator[SqliteStore]:
    """Another connection to the same file, as a second process would have."""
    store = await SqliteStore.open(book.path, synchronous="NORMAL")
    try:
        yield store
    finally:
        await store.close()
