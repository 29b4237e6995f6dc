"""The composition root's parts: build the services from settings (nothing at import)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.payments import PaymentService
from core.policy import BillingPolicy
from core.ports import Clock
from core.service import BillingService
from partnerbot.config import Settings
from payments.stripe_gateway import StripeGateway
from storage.base import OperatedStore
from storage.open import open_store


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
    found = [
        settings.telegram.token, settings.telegram.webhook_secret, settings.database.url,
        settings.stripe.api_key, settings.stripe.webhook_secret, settings.ledger.chain_key,
    ]
    return [s.get_secret_value() for s in found if s is not None]


@dataclass(frozen=True)
class Services:
    settings: Settings
    store: OperatedStore
    clock: Clock
    billing: BillingService
    payments: PaymentService | None = None  # None until stripe.api_key is configured
    gateway: StripeGateway | None = None

    async def close(self) -> None:
        try:
            if self.gateway is not None:
                await self.gateway.close()
        finally:
            await self.store.close()


BotUsername = Callable[[], str | None]


def success_url(settings: Settings, bot_username: str | None) -> str:
    """Where Stripe sends the payer back: configured, else the bot's chat."""
    if settings.stripe.success_url:
        return settings.stripe.success_url
    return f"https://t.me/{bot_username}" if bot_username else "https://t.me/"


def payments_from(
    settings: Settings,
    store: OperatedStore,
    clock: Clock,
    policy: BillingPolicy,
    bot_username: BotUsername,
) -> tuple[PaymentService | None, StripeGateway | None]:
    s = settings.stripe
    if s.api_key is None:
        return None, None
    settings.require("stripe.webhook_secret")  # taking money without hearing back is unsafe
    gateway = StripeGateway(
        s.api_key.get_secret_value(),
        api_base=s.api_base,
        success_url=lambda: success_url(settings, bot_username()),
        timeout_seconds=s.timeout_seconds,
    )
    service = PaymentService(
        store, clock, gateway,
        policy=policy,
        session_ttl=timedelta(minutes=s.session_expiry_minutes),
        annual_discount_percent=s.annual_discount_percent,
    )
    return service, gateway


async def open_services(
    settings: Settings, bot_username: BotUsername | None = None, *, writes: bool = True
) -> Services:
    """`bot_username`: asked when a payment link is made (the payer's way back to the
    bot); by default the configured `telegram.bot_username`. `partnerbot run` passes the
    running bot's own (getMe). `writes=False` (ledger verify) opens without
    ledger.chain_key, so checking a ledger never starts its keyed chain first."""
    store = await open_store(
        settings.database, chain_key=settings.ledger.chain_key_bytes if writes else None
    )
    clock = SystemClock()
    policy = policy_from(settings)
    try:
        payments, gateway = payments_from(
            settings, store, clock, policy,
            bot_username or (lambda: settings.telegram.bot_username),
        )
    except BaseException:
        await store.close()
        raise
    billing = BillingService(store, clock, policy)
    return Services(settings, store, clock, billing, payments, gateway)
