"""The update inbox's rows (core/inbox.py), part of SqlLedger (both engines).

Written in the portable SQL both engines run (`?` placeholders, no engine functions):
the claims of webhook mode (bot/claims.py) are plain reads and updates that the caller
runs inside one serialized write transaction, which is what makes them exclusive.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from core.inbox import InboxUpdate
from storage.rows import from_us, to_us
from storage.sql import SqlConnection


def _update(row: Sequence[Any]) -> InboxUpdate:
    sender = row[3]
    return InboxUpdate(
        int(row[0]), str(row[1]), from_us(int(row[2])), None if sender is None else int(sender)
    )


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
            "INSERT INTO inbox (update_id, payload, received_at, sender) VALUES (?, ?, ?, ?)",
            [(u.update_id, u.payload, to_us(u.received_at), u.sender) for u in new.values()],
        )
        return list(new)

    def mark_updates_handled(self, update_ids: Sequence[int], at: datetime) -> None:
        stamp = to_us(at)
        self.conn.executemany(
            "UPDATE inbox SET handled_at = ?, claimed_by = NULL, claimed_until = NULL"
            " WHERE update_id = ? AND handled_at IS NULL",
            [(stamp, update_id) for update_id in update_ids],
        )

    def pending_updates(self) -> list[InboxUpdate]:
        return [
            _update(row)
            for row in self.conn.execute(
                "SELECT update_id, payload, received_at, sender FROM inbox"
                " WHERE handled_at IS NULL ORDER BY update_id"
            )
        ]

    def prune_updates(self, handled_before: datetime) -> int:
        cur = self.conn.execute(
            "DELETE FROM inbox WHERE handled_at IS NOT NULL AND handled_at < ?",
            (to_us(handled_before),),
        )
        return int(cur.rowcount)

    # -- claims (webhook mode) -----------------------------------------------------------

    def _claim(self, row: Sequence[Any], instance: str, until: datetime) -> InboxUpdate:
        self.conn.execute(
            "UPDATE inbox SET claimed_by = ?, claimed_until = ? WHERE update_id = ?",
            (instance, to_us(until), int(row[0])),
        )
        return _update(row)

    def claim_next_update(
        self, sender: int, instance: str, now: datetime, until: datetime
    ) -> InboxUpdate | None:
        held = self.conn.execute(
            "SELECT 1 FROM inbox WHERE sender = ? AND handled_at IS NULL"
            " AND claimed_until > ? LIMIT 1",
            (sender, to_us(now)),
        ).fetchone()
        if held is not None:
            return None
        row = self.conn.execute(
            "SELECT update_id, payload, received_at, sender FROM inbox"
            " WHERE sender = ? AND handled_at IS NULL"
            " ORDER BY update_id LIMIT 1",
            (sender,),
        ).fetchone()
        return None if row is None else self._claim(row, instance, until)

    def claim_update(
        self, update_id: int, instance: str, now: datetime, until: datetime
    ) -> InboxUpdate | None:
        row = self.conn.execute(
            "SELECT update_id, payload, received_at, sender FROM inbox"
            " WHERE update_id = ? AND handled_at IS NULL"
            " AND (claimed_until IS NULL OR claimed_until <= ?)",
            (update_id, to_us(now)),
        ).fetchone()
        return None if row is None else self._claim(row, instance, until)

    def claim_orphans(
        self, instance: str, now: datetime, until: datetime, limit: int
    ) -> list[InboxUpdate]:
        stamp = to_us(now)
        rows = self.conn.execute(
            "SELECT update_id, payload, received_at, sender FROM inbox i"
            " WHERE i.handled_at IS NULL"
            " AND (i.claimed_until IS NULL OR i.claimed_until <= ?)"
            " AND (i.sender IS NULL OR ("
            "  i.update_id = (SELECT MIN(j.update_id) FROM inbox j"
            "   WHERE j.sender = i.sender AND j.handled_at IS NULL)"
            "  AND NOT EXISTS (SELECT 1 FROM inbox k"
            "   WHERE k.sender = i.sender AND k.handled_at IS NULL AND k.claimed_until > ?)))"
            " ORDER BY i.update_id LIMIT ?",
            (stamp, stamp, limit),
        ).fetchall()
        return [self._claim(row, instance, until) for row in rows]

    def renew_claims(self, instance: str, until: datetime) -> int:
        cur = self.conn.execute(
            "UPDATE inbox SET claimed_until = ? WHERE claimed_by = ? AND handled_at IS NULL",
            (to_us(until), instance),
        )
        return int(cur.rowcount)

    def release_claims(self, instance: str) -> int:
        cur = self.conn.execute(
            "UPDATE inbox SET claimed_by = NULL, claimed_until = NULL"
            " WHERE claimed_by = ? AND handled_at IS NULL",
            (instance,),
        )
        return int(cur.rowcount)
