"""Transfers: how a movement of days is written, and the chain that seals the ledger.

Each transfer carries a digest over its own fields and the previous transfer's digest.
Editing, deleting or reordering a row by hand breaks the chain at that row, which is how
`partnerbot ledger verify` names the row that was tampered with. Whoever can write the file
can also recompute every digest after an edit; with `ledger.chain_key` set, rows are
sealed with an HMAC under that key instead, which they cannot recompute without it.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from core import alerts
from core.days import utc
from core.model import NewTransfer, Transfer, TransferKind, partner_of
from core.ports import Ledger

GENESIS = "0" * 64


def chain_start_seal(key: bytes, keyed_from: int) -> str:
    # No unit separator in this text: it can never equal a transfer's preimage.
    text = f"partnerbot ledger chain keyed from transfers.id={keyed_from}"
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def transfer_digest(
    previous: str, transfer_id: int, t: NewTransfer | Transfer, key: bytes | None = None
) -> str:
    """The plain chain (SHA-256, a pinned format), or with `key` the keyed one: the same
    preimage under HMAC-SHA256, which nobody without the key can recompute."""
    fields = (
        previous,
        str(transfer_id),
        t.key,
        t.debit,
        t.credit,
        str(t.days),
        t.kind.value,
        t.actor,
        t.reason,
        utc(t.created_at).isoformat(timespec="microseconds"),
        "" if t.order_id is None else str(t.order_id),
    )
    # The unit separator cannot occur in any field we write, so the join is unambiguous.
    preimage = "\x1f".join(fields).encode()
    if key is None:
        return hashlib.sha256(preimage).hexdigest()
    return hmac.new(key, preimage, hashlib.sha256).hexdigest()


def move(
    ledger: Ledger,
    *,
    key: str,
    debit: str,
    credit: str,
    days: int,
    kind: TransferKind,
    actor: str,
    at: datetime,
    reason: str = "",
    order_id: int | None = None,
) -> Transfer:
    """Write one double-entry transfer of `days` from `debit` to `credit`."""
    if days <= 0:
        raise ValueError("a transfer moves a positive number of days")
    if debit == credit:
        raise ValueError("a transfer moves days between two different accounts")
    transfer = ledger.add_transfer(
        NewTransfer(
            key=key,
            debit=debit,
            credit=credit,
            days=days,
            kind=kind,
            actor=actor,
            reason=reason,
            created_at=utc(at),
            order_id=order_id,
        )
    )
    # Rule 7 is checked in the same transaction as the change that crosses it.
    for account in (debit, credit):
        partner_id = partner_of(account)
        if partner_id is not None:
            alerts.check_low_balance(ledger, at, partner_id)
    return transfer
