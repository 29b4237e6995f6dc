"""The update inbox: chat updates recorded durably before Telegram is told they arrived.

Telegram forgets an update once the bot asks for the next ones (the offset confirms every
update before it). The poller therefore records each batch in the store first, and marks
updates handled once the bot has answered them; what a crash leaves unhandled is handled
again at the next start (write commands are idempotent under their update id).

In webhook mode several instances may receive one sender's updates: the store then
decides who handles what (claims, see bot/claims.py), so each sender's updates are
handled one at a time in update-id order, whichever instance received them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class InboxUpdate:
    update_id: int
    # The update as the Bot API sent it (JSON): the store keeps it, it does not read it.
    payload: str
    received_at: datetime
    # Who sent it (the user; NULL when the update names nobody): the unit of ordering.
    sender: int | None = None


__all__ = ["InboxUpdate"]
