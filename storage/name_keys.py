"""Keep stored name keys in step with core.names.name_key, at every open.

How names compare has changed (issue 11: invisible characters no longer count), and may
again; the key column is derived, so a database written before holds keys of the older
rule. Opening re-derives them. Only names outside printable ASCII can have changed (an
ASCII name's key is its lower case under every rule so far), so the scan stays small.

Two names that were different under the older rule but are the same name now (say
"shopberlin" and "shop\\u200dberlin", both live for one partner) cannot both hold the new
key: the one found second keeps its old key, nothing is deleted or renamed, and each such
pair is logged at WARNING at every start until one of them is deleted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from core.names import name_key
from storage.sql import Row, SqlConnection

log = logging.getLogger(__name__)

# Only names with a character outside printable ASCII (the dialect's pattern).
_PARTNERS = "SELECT id, name, name_key, NULL FROM partners WHERE {non_ascii} ORDER BY id"
_CHANNELS = (
    "SELECT id, name, name_key, partner_id FROM channels"
    " WHERE deleted_at IS NULL AND {non_ascii} ORDER BY id"
)
_UPDATE = {
    "partners": "UPDATE partners SET name_key = ? WHERE id = ?",
    "channels": "UPDATE channels SET name_key = ? WHERE id = ?",
}


@dataclass(frozen=True, slots=True)
class LookAlike:
    """A stored name left with its old key: it displays like `twin_id`'s."""

    table: str
    row_id: int
    name: str
    twin_id: int
    partner_id: int | None  # the channel's partner (None for partners)


def rekey_names(conn: SqlConnection) -> list[LookAlike]:
    """Re-derive the keys that changed; return the look-alikes. Runs inside the store's
    write transaction (one for the whole pass)."""
    found: list[LookAlike] = []
    non_ascii = conn.dialect.non_ascii("name")
    partners = conn.execute(_PARTNERS.format(non_ascii=non_ascii)).fetchall()
    found += _rekey(conn, "partners", partners, "SELECT id FROM partners WHERE name_key = ?")
    channels = conn.execute(_CHANNELS.format(non_ascii=non_ascii)).fetchall()
    found += _rekey(
        conn, "channels", channels,
        "SELECT id FROM channels WHERE name_key = ? AND partner_id = ?"
        " AND deleted_at IS NULL",
    )
    return found


def _rekey(
    conn: SqlConnection, table: str, rows: list[Row], twin_sql: str,
) -> list[LookAlike]:
    found = []
    for row_id, name, old, partner_id in rows:
        new = name_key(name)
        if new == old:
            continue
        args: tuple[object, ...] = (new,) if partner_id is None else (new, partner_id)
        twin = conn.execute(twin_sql, args).fetchone()
        if twin is not None:
            found.append(LookAlike(table, row_id, name, int(twin[0]), partner_id))
            continue
        conn.execute(_UPDATE[table], (new, row_id))
    return found


def report(found: list[LookAlike]) -> None:
    for twin in found:
        owner = "" if twin.partner_id is None else f" of partner {twin.partner_id}"
        log.warning(
            "%s.id=%s%s: name %r displays like %s.id=%s and kept its old key; both are kept"
            " (delete one of them to make the other's name unique again)",
            twin.table, twin.row_id, owner, twin.name, twin.table, twin.twin_id,
        )
