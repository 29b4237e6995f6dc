"""The update inbox's rows (core/inbox.py), part of SqlLedger (both engines)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from core.inbox import InboxUpdate
from storage.rows import from_us, to_us
from storage.sql import SqlConnection


class SqlInbox:
    conn: SqlConnection

    def add_updates(self, updates: Sequence[InboxUpdate]) -> list[int]:
        if not updates:
            return []
        ids = [u.update_id for u in updates]
        # A batch's ids are a short ascending run: one range scan of the primary key.
        known = {
            int(row[0])
            for row in self.conn.execute(
                "SELECT update_id FROM inbox WHERE update_id BETWEEN ? AND ?",
                (min(ids), max(ids)),
            )
        }
        new = {u.update_id: u for u in updates if u.update_id not in known}
        self.conn.executemany(
            "INSERT INTO inbox (update_id, payload, received_at) VALUES (?, ?, ?)",
            [(u.update_id, u.payload, to_us(u.received_at)) for u in new.values()],
        )
        return list(new)

    def mark_updates_handled(self, update_ids: Sequence[int], at: datetime) -> None:
        stamp = to_us(at)
        self.conn.executemany(
            "UPDATE inbox SET handled_at = ? WHERE update_id = ? AND handled_at IS NULL",
            [(stamp, update_id) for update_id in update_ids],
        )

    def pending_updates(self) -> list[InboxUpdate]:
        return [
            InboxUpdate(int(row[0]), str(row[1]), from_us(int(row[2])))
            for row in self.conn.execute(
                "SELECT update_id, payload, received_at FROM inbox"
                " WHERE handled_at IS NULL ORDER BY update_id"
            )
        ]

    def prune_updates(self, handled_before: datetime) -> int:
        cur = self.conn.execute(
            "DELETE FROM inbox WHERE handled_at IS NOT NULL AND handled_at < ?",
            (to_us(handled_before),),
        )
        return int(cur.rowcount)
