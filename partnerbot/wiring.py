"""The composition root's parts: build the services from settings (nothing at import)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.policy import BillingPolicy
from core.service import BillingService
from partnerbot.config import Settings
from storage.sqlite import SqliteStore


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def policy_from(settings: Settings) -> BillingPolicy:
    b = settings.billing
    return BillingPolicy(
        currency=b.currency,
        monthly_price=b.monthly_price,
        low_balance_days=b.low_balance_days,
        billing_day=b.billing_day,
        max_topup_days=b.max_topup_days,
        invite_ttl=timedelta(hours=b.invite_ttl_hours),
    )


def secrets_of(settings: Settings) -> list[str]:
    found = [settings.telegram.token, settings.stripe.api_key, settings.stripe.webhook_secret]
    return [s.get_secret_value() for s in found if s is not None]


@dataclass
class Services:
    settings: Settings
    store: SqliteStore
    billing: BillingService

    async def close(self) -> None:
        await self.store.close()


async def open_services(settings: Settings) -> Services:
    store = await SqliteStore.open(
        settings.database.path,
        synchronous=settings.database.synchronous,
        busy_timeout_ms=settings.database.busy_timeout_ms,
    )
    return Services(settings, store, BillingService(store, SystemClock(), policy_from(settings)))
