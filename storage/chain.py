"""The start of the keyed part of the ledger's chain (`ledger.chain_key`), either engine.

The first store that opens a database with a key records, once, the id from which
transfers are sealed with it (migration 0007, table `ledger_chain`), sealed itself with
the key. Later stores check their key against that seal before writing, so a wrong key
is refused at start-up instead of breaking the chain; a store without a key may not add
transfers to a keyed ledger.
"""

from __future__ import annotations

import hmac

from core.errors import StorageError
from core.ledger import chain_start_seal
from core.model import ChainStart
from storage.sql import SqlConnection

_READ = "SELECT keyed_from, seal FROM ledger_chain WHERE id = 1"


def read_start(conn: SqlConnection) -> ChainStart | None:
    row = conn.execute(_READ).fetchone()
    return None if row is None else ChainStart(int(row[0]), str(row[1]))


def key_for(conn: SqlConnection, transfer_id: int, key: bytes | None) -> bytes | None:
    """The key that seals transfer `transfer_id` (None: the plain hash); refuses to add a
    plain row to a keyed ledger."""
    start = read_start(conn)
    if start is None or transfer_id < start.keyed_from:
        return None
    if key is None:
        raise StorageError(
            f"ledger.chain_key: this ledger is chained with a key from transfers.id="
            f"{start.keyed_from} on; set ledger.chain_key to write to it"
        )
    return key


def start_keyed_chain(conn: SqlConnection, key: bytes) -> ChainStart:
    """Record where the keyed chain starts (the next transfer) unless it is recorded;
    refuse a key that is not the one the record is sealed with. Runs inside the store's
    write transaction (serialized with every other ledger write)."""
    start = read_start(conn)
    if start is None:
        last = conn.execute("SELECT max(id) FROM transfers").fetchone()[0]
        keyed_from = int(last or 0) + 1
        start = ChainStart(keyed_from, chain_start_seal(key, keyed_from))
        conn.execute(
            "INSERT INTO ledger_chain (id, keyed_from, seal) VALUES (1, ?, ?)",
            (start.keyed_from, start.seal),
        )
    elif not hmac.compare_digest(start.seal, chain_start_seal(key, start.keyed_from)):
        raise StorageError(
            "ledger.chain_key: not the key this ledger is chained with (keyed from "
            f"transfers.id={start.keyed_from}); nothing was written"
        )
    return start
