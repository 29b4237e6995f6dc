"""Migration 0006 on a database the double-subscription bug already wrote to: two open
subscription orders of one channel. The migration must not fail on it (start-up would
stop); the newest stays open, the older is cancelled, and then the database itself refuses
a second open one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storage.migrate import _statements, available, migrate

ONE_SUBSCRIPTION = 6


def _before_0006(conn: sqlite3.Connection) -> None:
    """The schema as the versions before 0006 left it, with the bug's leftovers."""
    migrate_until = [m for m in available() if m[0] < ONE_SUBSCRIPTION]
    conn.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))) STRICT"
    )
    for version, name, script in migrate_until:
        for statement in _statements(script):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                     (version, name))
    conn.execute(
        "INSERT INTO partners (id, name, name_key, currency, monthly_price, low_balance_days,"
        " billing_day, created_at) VALUES (1, 'Acme', 'acme', 'usd', 1000, 30, 1, 0)"
    )
    conn.execute("INSERT INTO accounts (code, partner_id) VALUES ('partner:1', 1)")
    for channel in (1, 2):
        conn.execute(
            "INSERT INTO channels (id, partner_id, name, name_key, created_at)"
            " VALUES (?, 1, ?, ?, 0)", (channel, f"c{channel}", f"c{channel}"),
        )
    for order_id, channel in ((1, 1), (2, 1), (3, 1), (4, 2)):
        conn.execute(
            "INSERT INTO orders (id, partner_id, kind, days, amount, currency, status,"
            " created_at, created_by, channel_id) VALUES (?, 1, 'subscription', 30, 1000,"
            " 'usd', 'open', 0, 'user:1', ?)", (order_id, channel),
        )


def test_0006_keeps_the_newest_open_subscription_of_a_channel_and_then_refuses_another(
    tmp_path: Path,
) -> None:
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    try:
        _before_0006(conn)
        applied = migrate(conn)
        assert any(name.startswith("0006_") for name in applied), applied
        rows = conn.execute(
            "SELECT id, status, closed_at IS NOT NULL FROM orders ORDER BY id"
        ).fetchall()
        assert rows == [(1, "canceled", 1), (2, "canceled", 1), (3, "open", 0), (4, "open", 0)]
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("UPDATE orders SET status = 'open', closed_at = NULL WHERE id = 1")
    finally:
        conn.close()
