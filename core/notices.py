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
LOW_BALANCE = "low_balance"  # to members: the balance fell below the threshold (rule 7)
EXPIRY = "expiry"  # to members: channels expire soon or expired (rule 8)
RENEW_SHORT = "renew_short"  # to members: auto-renew could not be paid (rule 9)
RENEWED = "renewed"  # to members: auto-renew extended channels
INVOICE_REMINDER = "invoice_reminder"  # to members: an invoice is still unpaid
INVOICE_OVERDUE = "invoice_overdue"  # to support and members: unpaid for too long


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
