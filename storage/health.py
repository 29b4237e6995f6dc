"""How the database is doing, as a typed value: healthy, or failing with a named cause.

Two sources feed it. Every store call that fails with a storage fault (not a refused
constraint: that is the database working) marks it failing at once, so a command that
hits a full disk turns /healthz 503 without waiting. A periodic probe (storage/probe.py)
decides recovery: it really writes, looks at the free space and the page limit, and runs
`PRAGMA quick_check` at a lower rate, so a database nobody writes to is judged too. A
probe that passes clears the state only if no call failed since the probe before it: a
full disk that only some writes hit (those needing a new page) stays failing instead of
flapping back to healthy between them.

Each change of state is logged once (WARNING when it fails, INFO when it recovers).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import psycopg

from core.errors import StoreBusy

log = logging.getLogger("storage.health")


class Fault(Enum):
    """Why the database is failing; the value is what /healthz and the log say."""

    FULL = "disk full"
    READ_ONLY = "read-only"
    CORRUPT = "corrupt"
    LOCKED = "locked"
    IO = "i/o error"
    UNREACHABLE = "unreachable"  # PostgreSQL: no connection to the server


# SQLite's primary result codes (the low byte of an extended code) that mean the
# database itself is in trouble, not the statement.
_FAULTS = {
    13: Fault.FULL,  # SQLITE_FULL
    8: Fault.READ_ONLY,  # SQLITE_READONLY
    11: Fault.CORRUPT,  # SQLITE_CORRUPT
    26: Fault.CORRUPT,  # SQLITE_NOTADB
    5: Fault.LOCKED,  # SQLITE_BUSY
    6: Fault.LOCKED,  # SQLITE_LOCKED
    10: Fault.IO,  # SQLITE_IOERR
    14: Fault.IO,  # SQLITE_CANTOPEN
}


# PostgreSQL SQLSTATEs (or their classes, two characters) that say the database itself is
# in trouble. Connection failures (no SQLSTATE, class 08, 57P0x) are UNREACHABLE.
_PG_FAULTS = {
    "53100": Fault.FULL,  # disk_full
    "53300": Fault.UNREACHABLE,  # too_many_connections: no connection for us
    "25006": Fault.READ_ONLY,  # read_only_sql_transaction: a standby, or read-only mode
    "57014": Fault.LOCKED,  # query_canceled: statement_timeout (a lock held too long)
    "55P03": Fault.LOCKED,  # lock_not_available
    "XX001": Fault.CORRUPT,  # data_corrupted
    "XX002": Fault.CORRUPT,  # index_corrupted
    "58": Fault.IO,  # system_error class: I/O errors on the server
    "53": Fault.IO,  # insufficient_resources: out of memory and the like
}


def pg_fault(error: psycopg.Error) -> Fault | None:
    state = error.sqlstate
    if isinstance(error, psycopg.OperationalError) and (
        state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")
    ):
        return Fault.UNREACHABLE
    if state is None:
        return None
    return _PG_FAULTS.get(state) or _PG_FAULTS.get(state[:2])


@dataclass(frozen=True)
class StorageHealth:
    fault: Fault | None = None
    detail: str = ""  # the error as SQLite or the probe put it (for the log)

    @property
    def healthy(self) -> bool:
        return self.fault is None


HEALTHY = StorageHealth()


def fault_of(error: BaseException) -> StorageHealth | None:
    """The storage fault behind `error` (following its causes), or None when the error
    says nothing about the database's health (a constraint, a domain refusal)."""
    seen: BaseException | None = error
    busy = False
    while seen is not None:
        if isinstance(seen, StoreBusy):
            busy = True
        if isinstance(seen, sqlite3.Error):
            code = getattr(seen, "sqlite_errorcode", None)
            fault = _FAULTS.get(code & 0xFF) if isinstance(code, int) else None
            if fault is None and "malformed" in str(seen):
                fault = Fault.CORRUPT  # older SQLite builds without error codes
            return StorageHealth(fault, str(seen)) if fault is not None else None
        if isinstance(seen, psycopg.Error):
            pg = pg_fault(seen)
            return StorageHealth(pg, str(seen).strip()) if pg is not None else None
        seen = seen.__cause__ or seen.__context__
    return StorageHealth(Fault.LOCKED, str(error)) if busy else None


class HealthMonitor:
    """The current StorageHealth, updated from the event loop's thread only."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.monotonic = monotonic
        self._state = HEALTHY
        self._failed_since_probe = False
        self.probes = 0  # probes finished (tests and metrics wait on it)

    @property
    def state(self) -> StorageHealth:
        return self._state

    def saw(self, error: BaseException) -> None:
        """A store call failed: mark the database failing if the error says it is."""
        found = fault_of(error)
        if found is None:
            return
        self._failed_since_probe = True
        self._set(found)

    def probed(self, result: StorageHealth) -> None:
        """A probe finished: it decides, except that it cannot clear a failure a store
        call saw since the previous probe."""
        self.probes += 1
        if result.healthy and self._failed_since_probe:
            self._failed_since_probe = False
            return
        self._failed_since_probe = False
        self._set(result)

    def _set(self, new: StorageHealth) -> None:
        old, self._state = self._state, new
        if old.fault is new.fault:
            return
        if new.fault is None:
            log.info("database: healthy again (was %s)", old.fault.value if old.fault else "")
        else:
            log.warning("database: failing (%s): %s", new.fault.value, new.detail)
