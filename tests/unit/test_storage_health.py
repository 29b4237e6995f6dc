"""The storage health state: which errors are faults, what a probe may clear, and one log
line per change of state (storage/health.py); the outbox's backoff while it fails."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from bot.outbox import STORAGE_BACKOFF_CAP, storage_backoff
from core.errors import StorageError, StoreBusy
from storage.errors import translate
from storage.health import HEALTHY, Fault, HealthMonitor, StorageHealth, fault_of


def _sqlite_error(sql: str, setup: str = "") -> StorageError:
    conn = sqlite3.connect(":memory:")
    try:
        if setup:
            conn.executescript(setup)
        conn.execute(sql)
    except sqlite3.Error as exc:
        error = translate(exc)
        error.__cause__ = exc
        return error
    finally:
        conn.close()
    raise AssertionError("the statement did not fail")


def test_a_read_only_refusal_is_a_read_only_fault() -> None:
    error = _sqlite_error("CREATE TABLE t (x)", "PRAGMA query_only = ON;")
    found = fault_of(error)
    assert found is not None and found.fault is Fault.READ_ONLY


def test_a_full_database_is_a_full_disk() -> None:
    error = _sqlite_error(
        "INSERT INTO t VALUES (zeroblob(100000))",
        "CREATE TABLE t (x); PRAGMA max_page_count = 3;",
    )
    found = fault_of(error)
    assert found is not None and found.fault is Fault.FULL


def test_a_constraint_or_a_domain_error_says_nothing_about_health() -> None:
    refused = _sqlite_error(
        "INSERT INTO t VALUES (1)", "CREATE TABLE t (x UNIQUE); INSERT INTO t VALUES (1);"
    )
    assert fault_of(refused) is None
    assert fault_of(ValueError("no")) is None


def test_busy_is_locked() -> None:
    found = fault_of(StoreBusy("database: locked by another process for too long"))
    assert found is not None and found.fault is Fault.LOCKED


def test_a_probe_cannot_clear_a_failure_seen_since_the_previous_probe(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="storage.health")
    monitor = HealthMonitor()
    full = _sqlite_error(
        "INSERT INTO t VALUES (zeroblob(100000))",
        "CREATE TABLE t (x); PRAGMA max_page_count = 3;",
    )
    monitor.saw(full)
    monitor.saw(full)
    assert monitor.state.fault is Fault.FULL
    monitor.probed(HEALTHY)  # a write needing a page failed meanwhile: still failing
    assert monitor.state.fault is Fault.FULL
    monitor.probed(HEALTHY)
    assert monitor.state.healthy
    monitor.probed(StorageHealth(Fault.CORRUPT, "quick_check: page 7"))
    monitor.probed(StorageHealth(Fault.CORRUPT, "quick_check: page 7"))
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("WARNING", "database: failing (disk full): database or disk is full"),
        ("INFO", "database: healthy again (was disk full)"),
        ("WARNING", "database: failing (corrupt): quick_check: page 7"),
    ]


def test_the_outbox_backoff_doubles_up_to_its_cap() -> None:
    waits = [storage_backoff(1.0, n) for n in range(1, 10)]
    assert waits[:4] == [2.0, 4.0, 8.0, 16.0]
    assert waits[-1] == STORAGE_BACKOFF_CAP
    assert waits == sorted(waits)
