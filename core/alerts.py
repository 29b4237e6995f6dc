"""Rule 7: the low-balance alert, told once per downward crossing of the threshold.

Checked right after every transfer that touches a partner's balance (in the same
transaction), and by the `alerts` sweep for what changed otherwise (a threshold raised
by support, a missed check). The crossing number keys the notice, so re-runs and races
cannot tell twice; the balance rising to the threshold or above re-arms it.
"""

from __future__ import annotations

from datetime import datetime

from core import notices
from core.days import runway_until
from core.model import AlertState
from core.ports import Ledger


def apply_alert_state(
    ledger: Ledger, now: datetime, state: AlertState, running: list[datetime]
) -> bool:
    """Record a crossing (and queue the alert) or re-arm; True if an alert was queued."""
    partner = state.partner
    low = state.balance < partner.low_balance_days
    if low and not state.below:
        crossing = state.crossings + 1
        ledger.set_alert_state(partner.id, True, crossing, now)
        runway = runway_until(state.balance, running, now)
        notices.notify(
            ledger, now, f"low:{partner.id}:{crossing}", partner.id, notices.LowBalanceCrossed(
                balance=state.balance, threshold=partner.low_balance_days,
                running=len(running), runway=runway,
            ),
        )
        return True
    if not low and state.below:
        ledger.set_alert_state(partner.id, False, state.crossings, now)
    return False


def check_low_balance(ledger: Ledger, now: datetime, partner_id: int) -> bool:
    state = ledger.alert_state(partner_id)
    low = state.balance < state.partner.low_balance_days
    if low == state.below:
        return False  # nothing crossed: the common case costs one query
    running = ledger.running_until([partner_id], now)[partner_id] if low else []
    return apply_alert_state(ledger, now, state, running)
