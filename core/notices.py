"""Notices the bot owes people, queued in the transaction of the change that causes them.

The payload holds facts, not text: the bot renders it when it delivers (texts live in
bot/). A notice's key makes it impossible to queue the same notice twice.
"""

from __future__ import annotations

import json
from datetime import datetime

from core.ports import Ledger

DAYS_CREDITED = "days_credited"  # to members: a paid order's days arrived
DAYS_REFUNDED = "days_refunded"  # to members: a refund took days back
REFUND_OVERDRAWN = "refund_overdrawn"  # to support: a refund left a balance below zero
PAYMENT_MISMATCH = "payment_mismatch"  # to support: paid amount or currency is not the quote
INVOICE_ISSUED = "invoice_issued"  # to members: a new invoice with its payment link
SUBSCRIPTION_PAID = "subscription_paid"  # to members: a period extended a channel
SUBSCRIPTION_ENDED = "subscription_ended"  # to members: a channel's subscription ended


def notify(
    ledger: Ledger,
    at: datetime,
    key: str,
    to: int | None,
    kind: str,
    **facts: str | int | None,
) -> bool:
    """Queue a notice for the members of partner `to` (None: for support staff)."""
    payload = json.dumps(facts, sort_keys=True, separators=(",", ":"))
    return ledger.add_notice(key, to, kind, payload, at)


def facts(payload: str) -> dict[str, str | int | None]:
    data: dict[str, str | int | None] = json.loads(payload)
    return data
