"""Defaults and limits the use cases apply; built from configuration at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class BillingPolicy:
    currency: str = "usd"
    monthly_price: int = 1000  # minor units per channel per 30 days
    low_balance_days: int = 30
    billing_day: int = 1
    max_topup_days: int = 36_500
    invite_ttl: timedelta = timedelta(hours=72)
