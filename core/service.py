"""The service layer: one async entry per use case, each one store transaction.

Created once at start-up with the store, the clock and the policy; the bot, the CLI,
the webhook and the scheduler all go through it.

Most use cases in core are functions ``f(ledger, now, *args)``: the service runs one in a
store transaction at the clock's now (:meth:`BillingService.run`), and its table below
names them (``allocate_days = writes(channels.allocate_days)``), so a caller writes
``await billing.allocate_days(partner_id, name, days, actor, key)`` and mypy checks those
arguments against the core function's own signature. Methods written out in full are the
ones that add something: a policy, a generated code, several reads at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from core import channels, orders, partners, queries
from core.days import MAX_DAYS_PER_OPERATION
from core.invariants import VerifyReport, verify
from core.model import (
    Member,
    OrderKind,
    OrderStatus,
    Partner,
    PaymentOrder,
    Role,
    Transfer,
    partner_account,
)
from core.policy import BillingPolicy
from core.ports import Clock, Ledger, Store

P = ParamSpec("P")
T = TypeVar("T")


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


class Trip(Enum):
    """Which kind of store transaction a use case runs in (see :class:`core.ports.Store`)."""

    WRITE = "write"
    READ = "read"
    LOOKUP = "lookup"


class UseCase(Generic[P, T]):
    """A core function ``f(ledger, now, *args)`` as a method of the service taking ``*args``.

    A descriptor: ``billing.allocate_days`` is a coroutine function with the core function's
    parameters after ``ledger, now`` (a ParamSpec, so mypy checks every call).
    """

    def __init__(
        self, trip: Trip, function: Callable[Concatenate[Ledger, datetime, P], T]
    ) -> None:
        self.trip = trip
        self.function = function

    @overload
    def __get__(self, service: None, owner: type[Any]) -> UseCase[P, T]: ...
    @overload
    def __get__(
        self, service: BillingService, owner: type[Any]
    ) -> Callable[P, Awaitable[T]]: ...
    def __get__(
        self, service: BillingService | None, owner: type[Any]
    ) -> UseCase[P, T] | Callable[P, Awaitable[T]]:
        if service is None:
            return self
        trip, function = self.trip, self.function

        async def call(*args: P.args, **kwargs: P.kwargs) -> T:
            return await service.run(trip, function, *args, **kwargs)

        call.__name__ = call.__qualname__ = getattr(function, "__name__", "use_case")
        call.__doc__ = function.__doc__
        return call


def writes(function: Callable[Concatenate[Ledger, datetime, P], T]) -> UseCase[P, T]:
    """A use case that changes the ledger: one write transaction."""
    return UseCase(Trip.WRITE, function)


def reads(function: Callable[Concatenate[Ledger, datetime, P], T]) -> UseCase[P, T]:
    """A read of one consistent snapshot (the database thread)."""
    return UseCase(Trip.READ, function)


def looks_up(function: Callable[Concatenate[Ledger, datetime, P], T]) -> UseCase[P, T]:
    """A small read a chat update needs (see :meth:`core.ports.Store.lookup`)."""
    return UseCase(Trip.LOOKUP, function)


class BillingService:
    def __init__(self, store: Store, clock: Clock, policy: BillingPolicy) -> None:
        self.store = store
        self.clock = clock
        self.policy = policy

    def now(self) -> datetime:
        return self.clock.now()

    async def run(
        self,
        trip: Trip,
        use_case: Callable[Concatenate[Ledger, datetime, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``use_case(ledger, now, *args, **kwargs)`` as one store transaction."""
        now = self.now()

        def work(ledger: Ledger) -> T:
            return use_case(ledger, now, *args, **kwargs)

        if trip is Trip.WRITE:
            return await self.store.write(work)
        if trip is Trip.READ:
            return await self.store.read(work)
        return await self.store.lookup(work)

    # The use cases that are a core function as it stands, by the transaction each needs.

    redeem_invite = writes(partners.redeem_invite)
    set_price = writes(partners.set_price)
    set_alert_threshold = writes(partners.set_alert_threshold)
    set_member_reachable = writes(partners.set_member_reachable)

    create_channel = writes(channels.create_channel)
    allocate_days = writes(channels.allocate_days)
    delete_channel = writes(channels.delete_channel)
    set_auto_renew = writes(channels.set_auto_renew)
    renew_channel = writes(channels.renew_channel)
    credit_subscription_period = writes(channels.credit_subscription_period)
    deletion_preview = looks_up(channels.deletion_preview)

    grant_days = writes(orders.grant_days)
    close_order = writes(orders.close_order)
    credit_paid_order = writes(orders.credit_paid_order)
    refund_order = writes(orders.refund_order)

    summary = looks_up(queries.account_summary)
    account_view = reads(queries.account_view)
    channel_views = reads(queries.channel_views)

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

    async def member(self, user_id: int) -> Member | None:
        return await self.store.lookup(lambda lg: lg.get_member(user_id))

    async def partner(self, partner_id: int) -> Partner:
        return await self.store.lookup(lambda lg: partners.get_partner(lg, partner_id))

    async def resolve_partner(self, ref: str) -> Partner:
        return await self.store.read(lambda lg: partners.resolve_partner(lg, ref))

    async def list_partners(self) -> list[tuple[Partner, int, int]]:
        """Every partner with its balance and live channel count, by id."""

        def work(ledger: Ledger) -> list[tuple[Partner, int, int]]:
            return [
                (p, ledger.balance(partner_account(p.id)), len(ledger.list_channels(p.id)))
                for p in ledger.list_partners()
            ]

        return await self.store.read(work)

    # orders ------------------------------------------------------------------------

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
                max_days=(
                    self.policy.max_topup_days if kind is OrderKind.TOPUP
                    else MAX_DAYS_PER_OPERATION
                ),
            )
        )

    async def attach_payment_link(
        self, order_id: int, provider_ref: str, url: str
    ) -> PaymentOrder:
        return await self.store.write(
            lambda lg: orders.attach_payment_link(lg, order_id, provider_ref, url)
        )

    # reading ---------------------------------------------------------------------

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
            # queries.history without its own check that the partner exists: done above.
            rows = lg.list_transfers(
                partner_account(partner_id), limit=limit, before_id=before_id
            )
            names = (
                {c.id: c.name for c in lg.list_channels(partner_id, include_deleted=True)}
                if rows else {}
            )
            return partner, rows, names

        return await self.store.lookup(read)

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

    async def verify(self, chain_key: bytes | None = None) -> VerifyReport:
        """Every invariant; `chain_key` (ledger.chain_key) checks the keyed chain."""
        return await self.store.verify(lambda snapshot: verify(snapshot, chain_key))
