"""The update inbox of the in-memory store (storage/memory.py), claims included: the same
behaviour as storage/sql_inbox.py, which the contract suite checks on each store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from core.inbox import InboxUpdate


@dataclass(frozen=True)
class InboxRow:
    update: InboxUpdate
    handled_at: datetime | None = None
    claimed_by: str | None = None
    claimed_until: datetime | None = None

    def live(self, now: datetime) -> bool:
        """Unhandled and claimed by an instance whose lease has not run out."""
        return (
            self.handled_at is None and self.claimed_until is not None
            and self.claimed_until > now
        )


class HasInbox(Protocol):
    inbox: dict[int, InboxRow]


class MemoryInbox:
    s: HasInbox

    def add_updates(self, updates: Sequence[InboxUpdate]) -> list[int]:
        new = {u.update_id: u for u in updates if u.update_id not in self.s.inbox}
        self.s.inbox.update((update_id, InboxRow(u)) for update_id, u in new.items())
        return list(new)

    def mark_updates_handled(self, update_ids: Sequence[int], at: datetime) -> None:
        for update_id in update_ids:
            found = self.s.inbox.get(update_id)
            if found is not None and found.handled_at is None:
                self.s.inbox[update_id] = InboxRow(found.update, handled_at=at)

    def _unhandled(self) -> list[InboxRow]:
        return sorted(
            (row for row in self.s.inbox.values() if row.handled_at is None),
            key=lambda row: row.update.update_id,
        )

    def pending_updates(self) -> list[InboxUpdate]:
        return [row.update for row in self._unhandled()]

    def prune_updates(self, handled_before: datetime) -> int:
        old = [
            k for k, row in self.s.inbox.items()
            if row.handled_at is not None and row.handled_at < handled_before
        ]
        for update_id in old:
            del self.s.inbox[update_id]
        return len(old)

    def _claim(self, row: InboxRow, instance: str, until: datetime) -> InboxUpdate:
        self.s.inbox[row.update.update_id] = replace(
            row, claimed_by=instance, claimed_until=until
        )
        return row.update

    def claim_next_update(
        self, sender: int, instance: str, now: datetime, until: datetime
    ) -> InboxUpdate | None:
        queue = [row for row in self._unhandled() if row.update.sender == sender]
        if not queue or any(row.live(now) for row in queue):
            return None
        return self._claim(queue[0], instance, until)

    def claim_update(
        self, update_id: int, instance: str, now: datetime, until: datetime
    ) -> InboxUpdate | None:
        row = self.s.inbox.get(update_id)
        if row is None or row.handled_at is not None or row.live(now):
            return None
        return self._claim(row, instance, until)

    def claim_orphans(
        self, instance: str, now: datetime, until: datetime, limit: int
    ) -> list[InboxUpdate]:
        unhandled = self._unhandled()
        held = {row.update.sender for row in unhandled if row.live(now)}
        first: dict[int, InboxRow] = {}
        for row in unhandled:
            if row.update.sender is not None:
                first.setdefault(row.update.sender, row)
        chosen = [
            row for row in unhandled
            if not row.live(now) and (
                row.update.sender is None
                or (row.update.sender not in held and first[row.update.sender] is row)
            )
        ]
        return [self._claim(row, instance, until) for row in chosen[:limit]]

    def renew_claims(self, instance: str, until: datetime) -> int:
        mine = [row for row in self._unhandled() if row.claimed_by == instance]
        for row in mine:
            self.s.inbox[row.update.update_id] = replace(row, claimed_until=until)
        return len(mine)

    def release_claims(self, instance: str) -> int:
        mine = [row for row in self._unhandled() if row.claimed_by == instance]
        for row in mine:
            self.s.inbox[row.update.update_id] = replace(
                row, claimed_by=None, claimed_until=None
            )
        return len(mine)
