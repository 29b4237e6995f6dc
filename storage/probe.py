"""The storage health probe: cheap checks that each catch a way the database fails.

- free space on the volume (`statvfs`) and headroom under SQLite's page limit
  (`PRAGMA max_page_count`): a full disk. A write that reuses pages already in the file
  or the log can still succeed on a full disk, so a small write alone would not say so;
- a committed write of one heartbeat row: a read-only file, a lock held by another
  process, an I/O error;
- `PRAGMA quick_check` on a connection of its own, at a lower rate (it reads every
  page): corruption in pages nobody happens to touch. On its own connection it reads a
  snapshot while the database thread keeps writing.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from core.errors import StorageError
from storage.dbthread import transaction
from storage.errors import Connection
from storage.health import HEALTHY, Fault, StorageHealth, fault_of
from storage.sql import SqlConnection

# Below this much room (on the volume, or under the page limit) writes are about to fail:
# a use case that adds a few pages, the log and a checkpoint need space at once.
MIN_FREE_BYTES = 8 * 1024 * 1024


def free_bytes(directory: Path) -> int:
    stat = os.statvfs(directory)
    return stat.f_bavail * stat.f_frsize


def _pragma(conn: sqlite3.Connection, name: str) -> int:
    return int(conn.execute(f"PRAGMA {name}").fetchone()[0])


def check_space(conn: sqlite3.Connection, directory: Path) -> StorageHealth:
    free = free_bytes(directory)
    if free < MIN_FREE_BYTES:
        return StorageHealth(Fault.FULL, f"{free} bytes free on {directory}")
    room = (
        _pragma(conn, "max_page_count") - _pragma(conn, "page_count")
        + _pragma(conn, "freelist_count")
    ) * _pragma(conn, "page_size")
    if room < MIN_FREE_BYTES:
        return StorageHealth(Fault.FULL, f"{room} bytes left under max_page_count")
    return HEALTHY


def write_heartbeat(conn: SqlConnection, now_us: int) -> None:
    """The heartbeat row's write, the same on both engines (inside a write transaction)."""
    conn.execute(
        "INSERT INTO heartbeat (id, at) VALUES (1, ?)"
        " ON CONFLICT (id) DO UPDATE SET at = excluded.at", (now_us,),
    )


def heartbeat(conn: sqlite3.Connection, now_us: int) -> StorageHealth:
    """One committed write on SQLite; its failure, classified."""
    try:
        transaction(conn, "BEGIN IMMEDIATE", lambda: write_heartbeat(Connection(conn), now_us))
    except StorageError as exc:
        return fault_of(exc) or StorageHealth(Fault.IO, str(exc))
    return HEALTHY


def deliberately_read_only(conn: sqlite3.Connection) -> bool:
    """`PRAGMA query_only` set on purpose: reconnecting must not undo it."""
    return bool(_pragma(conn, "query_only"))


def quick_check(path: Path, busy_timeout_ms: int) -> StorageHealth:
    """`PRAGMA quick_check` on a fresh read-only connection (run it off the event loop)."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            rows = conn.execute("PRAGMA quick_check(5)").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return fault_of(exc) or StorageHealth(Fault.IO, str(exc))
    found = [str(row[0]) for row in rows]
    if found != ["ok"]:
        return StorageHealth(Fault.CORRUPT, "quick_check: " + "; ".join(found))
    return HEALTHY
