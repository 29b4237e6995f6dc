"""Fixtures shared by every test layer: a clock that moves only when told, the stores
(the in-memory fake, a real SQLite file, a real PostgreSQL database) and the billing
service over any of them."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Generator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.policy import BillingPolicy
from core.ports import Store
from core.service import BillingService
from storage.memory import MemoryStore
from storage.postgres import PostgresStore
from storage.sqlite import SqliteStore
from tests.pg_server import HOW_TO_RUN, PgServer, PgUnavailable

# A Monday in the middle of a month, well away from month ends and DST changes.
START = datetime(2030, 1, 14, 9, 30, tzinfo=UTC)


class FakeClock:
    """core.ports.Clock that stands still until a test moves it."""

    def __init__(self, start: datetime = START) -> None:
        self._now = self._aware(start)

    @staticmethod
    def _aware(instant: datetime) -> datetime:
        if instant.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        return instant

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move forward (or back, with a negative delta); returns the new instant."""
        self._now += delta
        return self._now

    def set(self, instant: datetime) -> None:
        self._now = self._aware(instant)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def policy() -> BillingPolicy:
    return BillingPolicy()


@pytest.fixture
def memory_store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A real database file under tmp_path, closed after the test."""
    store = await SqliteStore.open(tmp_path / "partnerbot.db")
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One throwaway PostgreSQL server for the whole run (tests/pg_server.py). Where
    there is none, its tests are skipped with one line saying how to run them, except
    under CI (`CI` set), where a missing server fails them: CI must run them."""
    try:
        server = PgServer.from_environment()
    except PgUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {exc}")
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A PostgreSQL test skipped for want of a server is reported at one place, so the
    summary folds them all into one line (`SKIPPED [N] tests/conftest.py: PostgreSQL tests
    skipped: ...`) instead of one line per test."""
    report = yield
    if report.skipped and isinstance(report.longrepr, tuple) and HOW_TO_RUN in report.longrepr[2]:
        # No line number: pytest then prints the file alone (its own folded-skip form).
        report.longrepr = (__file__, None, report.longrepr[2])  # type: ignore[assignment]
    return report


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """The URL of a new empty database on the test server, dropped after the test."""
    url = pg_server.create_database()
    try:
        yield url
    finally:
        pg_server.drop_database(url)


@pytest.fixture
async def postgres_store(pg_url: str) -> AsyncIterator[PostgresStore]:
    """A PostgresStore on a fresh database of the test server, closed after the test."""
    store = await PostgresStore.open(pg_url)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> Store:
    """Each test that takes `store` runs once per implementation of core.ports.Store."""
    chosen: Store = request.getfixturevalue(f"{request.param}_store")
    return chosen


@pytest.fixture
def billing(store: Store, clock: FakeClock, policy: BillingPolicy) -> BillingService:
    return BillingService(store, clock, policy)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For tests that run logs.setup or cli.main, which replace the root logger's handlers
    (pytest's own included) and levels: put them back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    httpx_level = logging.getLogger("httpx").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(httpx_level)
