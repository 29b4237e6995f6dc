"""The service layer: one async method per use case, each one store transaction.

Created once at start-up with the store, the clock and the policy; the bot, the CLI,
the webhook and the scheduler all go through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core import channels, orders, partners, queries
from core.invariants import VerifyReport, verify
from core.model import (
    Channel,
    Member,
    OrderKind,
    OrderStatus,
    Partner,
    PaymentOrder,
    Role,
    Transfer,
)
from core.outcomes import (
    ChannelCreated,
    ChannelDeleted,
    ChannelRenewed,
    DaysAllocated,
    DaysGranted,
    OrderCredited,
    OrderRefunded,
    SubscriptionPeriodPaid,
)
from core.policy import BillingPolicy
from core.ports import Clock, Ledger, Store


@dataclass(frozen=True, slots=True)
class NewPartner:
    partner: Partner
    invite_code: str  # shown once; only its hash is stored
    invite_expires_at: datetime


@dataclass(frozen=True, slots=True)
class NewInvite:
    partner_id: int
    code: str
    expires_at: datetime


class BillingService:
    def __init__(self, store: Store, clock: Clock, policy: BillingPolicy) -> None:
        self.store = store
        self.clock = clock
        self.policy = policy

    def now(self) -> datetime:
        return self.clock.now()

    # partners, members, invites -------------------------------------------------

    async def create_partner(
        self,
        name: str,
        actor: str,
        *,
        monthly_price: int | None = None,
        currency: str | None = None,
    ) -> NewPartner:
        code = partners.new_invite_code()
        now = self.now()

        def work(ledger: Ledger) -> NewPartner:
            partner = partners.create_partner(
                ledger, now, self.policy, name, actor,
                monthly_price=monthly_price, currency=currency,
            )
            invite = partners.create_invite(
                ledger, now, self.policy, partner.id, Role.OWNER, actor, code
            )
            return NewPartner(partner, code, invite.expires_at)

        return await self.store.write(work)

    async def create_invite(self, partner_id: int, actor: str) -> NewInvite:
        code = partners.new_invite_code()
        now = self.now()

        def work(ledger: Ledger) -> NewInvite:
            invite = partners.create_invite(
                ledger, now, self.policy, partner_id, Role.MEMBER, actor, code
            )
            return NewInvite(partner_id, code, invite.expires_at)

        return await self.store.write(work)

    async def redeem_invite(self, code: str, user_id: int) -> Member:
        now = self.now()
        return await self.store.write(lambda lg: partners.redeem_invite(lg, now, code, user_id))

    async def member(self, user_id: int) -> Member | None:
        return await self.store.lookup(lambda lg: lg.get_member(user_id))

    async def partner(self, partner_id: int) -> Partner:
        return await self.store.lookup(lambda lg: partners.get_partner(lg, partner_id))

    async def resolve_partner(self, ref: str) -> Partner:
        return await self.store.read(lambda lg: partners.resolve_partner(lg, ref))

    async def list_partners(self) -> list[tuple[Partner, int, int]]:
        """Every partner with its balance and live channel count, by id."""

        def work(ledger: Ledger) -> list[tuple[Partner, int, int]]:
            from core.model import partner_account

            return [
                (p, ledger.balance(partner_account(p.id)), len(ledger.list_channels(p.id)))
                for p in ledger.list_partners()
            ]

        return await self.store.read(work)

    async def set_price(self, partner_id: int, amount: int, actor: str) -> Partner:
        now = self.now()
        return await self.store.write(
            lambda lg: partners.set_price(lg, now, partner_id, amount, actor)
        )

    async def set_alert_threshold(self, partner_id: int, days: int, actor: str) -> Partner:
        now = self.now()
        return await self.store.write(
            lambda lg: partners.set_alert_threshold(lg, now, partner_id, days, actor)
        )

    async def set_member_reachable(self, user_id: int, reachable: bool, actor: str) -> None:
        now = self.now()
        await self.store.write(
            lambda lg: partners.set_member_reachable(lg, now, user_id, reachable, actor)
        )

    # channels ------------------------------------------------------------------

    async def create_channel(
        self, partner_id: int, name: str, actor: str, key: str
    ) -> ChannelCreated:
        now = self.now()
        return await self.store.write(
            lambda lg: channels.create_channel(lg, now, partner_id, name, actor, key)
        )

    async def allocate_days(
        self, partner_id: int, channel_name: str, days: int, actor: str, key: str
    ) -> DaysAllocated:
        now = self.now()
        return await self.store.write(
            lambda lg: channels.allocate_days(lg, now, partner_id, channel_name, days, actor, key)
        )

    async def deletion_preview(self, partner_id: int, channel_name: str) -> tuple[Channel, int]:
        now = self.now()
        return await self.store.lookup(
            lambda lg: channels.deletion_preview(lg, now, partner_id, channel_name)
        )

    async def delete_channel(
        self,
        partner_id: int,
        channel_id: int,
        actor: str,
        key: str,
        *,
        expected_until: datetime | None = None,
        check_expected: bool = False,
    ) -> ChannelDeleted:
        now = self.now()
        return await self.store.write(
            lambda lg: channels.delete_channel(
                lg, now, partner_id, channel_id, actor, key,
                expected_until=expected_until, check_expected=check_expected,
            )
        )

    async def set_auto_renew(
        self, partner_id: int, channel_name: str, on: bool, actor: str
    ) -> Channel:
        now = self.now()
        return await self.store.write(
            lambda lg: channels.set_auto_renew(lg, now, partner_id, channel_name, on, actor)
        )

    async def renew_channel(self, channel_id: int, actor: str) -> ChannelRenewed:
        now = self.now()
        return await self.store.write(
            lambda lg: channels.renew_channel(lg, now, channel_id, actor)
        )

    async def credit_subscription_period(
        self, channel_id: int, days: int, period_ref: str, actor: str
    ) -> SubscriptionPeriodPaid:
        now = self.now()
        return await self.store.write(
            lambda lg: channels.credit_subscription_period(
                lg, now, channel_id, days, period_ref, actor
            )
        )

    # days in and out -------------------------------------------------------------

    async def grant_days(
        self, partner_id: int, days: int, reason: str, actor: str, key: str
    ) -> DaysGranted:
        now = self.now()
        return await self.store.write(
            lambda lg: orders.grant_days(lg, now, partner_id, days, reason, actor, key)
        )

    async def open_order(
        self,
        partner_id: int,
        kind: OrderKind,
        days: int,
        actor: str,
        *,
        period: str | None = None,
        channels: int | None = None,
        channel_id: int | None = None,
    ) -> PaymentOrder:
        now = self.now()
        return await self.store.write(
            lambda lg: orders.open_order(
                lg, now, partner_id, kind, days, actor, period=period,
                channels=channels, channel_id=channel_id,
                max_days=self.policy.max_topup_days if kind is OrderKind.TOPUP else 10**5,
            )
        )

    async def attach_payment_link(
        self, order_id: int, provider_ref: str, url: str
    ) -> PaymentOrder:
        return await self.store.write(
            lambda lg: orders.attach_payment_link(lg, order_id, provider_ref, url)
        )

    async def close_order(self, order_id: int, status: OrderStatus, actor: str) -> PaymentOrder:
        now = self.now()
        return await self.store.write(
            lambda lg: orders.close_order(lg, now, order_id, status, actor)
        )

    async def credit_paid_order(
        self,
        order_id: int,
        paid_amount: int,
        paid_currency: str,
        actor: str,
        *,
        payment_ref: str | None = None,
    ) -> OrderCredited:
        now = self.now()
        return await self.store.write(
            lambda lg: orders.credit_paid_order(
                lg, now, order_id, paid_amount, paid_currency, actor, payment_ref=payment_ref
            )
        )

    async def refund_order(
        self, order_id: int, refunded_amount: int, actor: str
    ) -> OrderRefunded:
        now = self.now()
        return await self.store.write(
            lambda lg: orders.refund_order(lg, now, order_id, refunded_amount, actor)
        )

    # reading ---------------------------------------------------------------------

    async def summary(self, partner_id: int) -> queries.AccountSummary:
        now = self.now()
        return await self.store.lookup(lambda lg: queries.account_summary(lg, now, partner_id))

    async def channel_list(
        self, partner_id: int
    ) -> tuple[Partner, list[queries.ChannelView]]:
        """The partner and its channels in one read (one trip, one snapshot)."""
        now = self.now()
        return await self.store.lookup(lambda lg: (
            partners.get_partner(lg, partner_id), queries.channel_views(lg, now, partner_id)
        ))

    async def history_view(
        self, partner_id: int, *, limit: int = 20, before_id: int | None = None
    ) -> tuple[Partner, list[Transfer], dict[int, str]]:
        """The partner, a page of its history and the names of all its channels (deleted
        ones included) in one read."""

        def read(lg: Ledger) -> tuple[Partner, list[Transfer], dict[int, str]]:
            partner = partners.get_partner(lg, partner_id)
            rows = queries.history(lg, partner_id, limit=limit, before_id=before_id)
            names = (
                {c.id: c.name for c in lg.list_channels(partner_id, include_deleted=True)}
                if rows else {}
            )
            return partner, rows, names

        return await self.store.lookup(read)

    async def channel_views(self, partner_id: int) -> list[queries.ChannelView]:
        now = self.now()
        return await self.store.read(lambda lg: queries.channel_views(lg, now, partner_id))

    async def history(
        self, partner_id: int, *, limit: int = 20, before_id: int | None = None
    ) -> list[Transfer]:
        return await self.store.read(
            lambda lg: queries.history(lg, partner_id, limit=limit, before_id=before_id)
        )

    async def channel_names(self, partner_id: int) -> dict[int, str]:
        """Names of all the partner's channels, deleted ones included (for history)."""
        return await self.store.read(
            lambda lg: {c.id: c.name for c in lg.list_channels(partner_id, include_deleted=True)}
        )

    async def orders(
        self, partner_id: int, statuses: tuple[OrderStatus, ...] = ()
    ) -> list[PaymentOrder]:
        return await self.store.read(lambda lg: lg.list_orders(partner_id, statuses=statuses))

    async def verify(self) -> VerifyReport:
        return await self.store.verify(verify)
