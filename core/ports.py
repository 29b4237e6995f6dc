"""What the domain needs from the outside, as protocols.

The store runs a whole use case as one synchronous function against a `Ledger` inside
one transaction: the SQLite store runs it on its database thread in one trip, the fake
store under a lock. Writes are serialized; an exception rolls everything back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from core.inbox import InboxUpdate
from core.model import (
    AlertState,
    ChainStart,
    Channel,
    CheckoutLink,
    CheckoutRequest,
    Delivery,
    Invite,
    Member,
    NewTransfer,
    OrderKind,
    OrderStatus,
    Partner,
    PaymentOrder,
    Role,
    SessionState,
    Transfer,
)

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware."""
        ...


class Ledger(Protocol):
    """One transaction's view of the store. Every method is synchronous."""

    # partners
    def add_partner(
        self,
        name: str,
        currency: str,
        monthly_price: int,
        low_balance_days: int,
        billing_day: int,
        created_at: datetime,
    ) -> Partner: ...
    def get_partner(self, partner_id: int) -> Partner | None: ...
    def find_partner_by_name(self, name: str) -> Partner | None: ...
    def list_partners(self) -> list[Partner]: ...
    def update_partner(self, partner: Partner) -> None: ...

    # members and invites
    def save_member(self, member: Member) -> None:
        """Insert or replace the member row of member.user_id."""
        ...
    def get_member(self, user_id: int) -> Member | None: ...
    def list_members(self, partner_id: int) -> list[Member]: ...
    def add_invite(
        self,
        partner_id: int,
        role: Role,
        code_hash: str,
        created_at: datetime,
        expires_at: datetime,
        created_by: str,
    ) -> Invite: ...
    def find_invite(self, code_hash: str) -> Invite | None: ...
    def use_invite(self, invite_id: int, user_id: int, at: datetime) -> None: ...

    # channels
    def add_channel(self, partner_id: int, name: str, created_at: datetime) -> Channel: ...
    def get_channel(self, channel_id: int) -> Channel | None: ...
    def find_live_channel(self, partner_id: int, name: str) -> Channel | None:
        """The partner's live channel of that name, compared case-insensitively."""
        ...
    def list_channels(self, partner_id: int, *, include_deleted: bool = False) -> list[Channel]: ...
    def update_channel(self, channel: Channel) -> None: ...

    # accounts and transfers
    def balance(self, account: str) -> int: ...
    def add_transfer(self, transfer: NewTransfer) -> Transfer:
        """Append a transfer (unique key), moving its days between the two accounts."""
        ...
    def find_transfer(self, key: str) -> Transfer | None: ...
    def list_transfers(
        self, account: str, *, limit: int, before_id: int | None = None
    ) -> list[Transfer]:
        """Newest first: transfers that debit or credit the account."""
        ...

    # the audit trail of changes that move no days (who set a price, linked a member...)
    def record_event(
        self, at: datetime, actor: str, action: str, partner_id: int | None, detail: str
    ) -> None: ...

    # outcomes of idempotent operations
    def find_outcome(self, key: str) -> tuple[str, str] | None: ...
    def save_outcome(self, key: str, kind: str, payload: str, at: datetime) -> None: ...

    # payment orders
    def add_order(
        self,
        partner_id: int,
        kind: OrderKind,
        days: int,
        amount: int,
        currency: str,
        created_at: datetime,
        created_by: str,
        *,
        period: str | None = None,
        channels: int | None = None,
        channel_id: int | None = None,
    ) -> PaymentOrder: ...
    def get_order(self, order_id: int) -> PaymentOrder | None: ...
    def find_invoice(self, partner_id: int, period: str) -> PaymentOrder | None: ...
    def list_orders(
        self, partner_id: int | None = None, *, statuses: Sequence[OrderStatus] = ()
    ) -> list[PaymentOrder]: ...
    def update_order(self, order: PaymentOrder) -> None: ...
    def find_order_by_ref(self, provider_ref: str) -> PaymentOrder | None: ...
    def find_order_by_payment(self, payment_ref: str) -> PaymentOrder | None: ...
    def find_channel_by_subscription(self, subscription_ref: str) -> Channel | None: ...

    # payment provider events handled (each once)
    def find_provider_event(self, event_id: str) -> str | None:
        """The recorded result of a provider event, or None if it is new."""
        ...
    def record_provider_event(
        self, event_id: str, event_type: str, at: datetime, result: str
    ) -> None: ...

    # scheduler sweeps: a few set-based queries over all partners and channels
    def alert_state(self, partner_id: int) -> AlertState: ...
    def alert_candidates(self) -> list[AlertState]:
        """Partners whose balance is on the other side of the threshold than recorded."""
        ...
    def set_alert_state(
        self, partner_id: int, below: bool, crossings: int, at: datetime
    ) -> None: ...
    def running_until(
        self, partner_ids: Sequence[int], now: datetime
    ) -> dict[int, list[datetime]]:
        """active_until of each live channel still running, by partner."""
        ...
    def channels_expiring(self, after: datetime, until: datetime) -> list[Channel]:
        """Live channels whose active_until is in (after, until]."""
        ...
    def record_expiry_warnings(
        self, warnings: Sequence[tuple[int, datetime, int]], at: datetime
    ) -> list[tuple[int, datetime, int]]:
        """Record (channel id, active_until, stage) warnings; return those new."""
        ...
    def channels_to_renew(self, until: datetime) -> list[Channel]:
        """Live auto-renew channels on the balance whose active_until is at most `until`."""
        ...
    def invoices_to_remind(self, created_before: datetime) -> list[PaymentOrder]: ...
    def invoices_to_flag_overdue(self, created_before: datetime) -> list[PaymentOrder]: ...
    def mark_invoices(self, order_ids: Sequence[int], field: str, at: datetime) -> None:
        """Set reminded_at or overdue_at."""
        ...
    def start_job_run(self, job: str, at: datetime) -> int: ...
    def finish_job_run(self, run_id: int, at: datetime, ok: bool, summary: str) -> None: ...

    # the notice outbox
    def add_notice(
        self, key: str, partner_id: int | None, kind: str, payload: str, at: datetime
    ) -> bool:
        """Queue a notice; False (and nothing queued) if the key was used before."""
        ...
    def expand_notices(self, support_ids: Sequence[int], at: datetime) -> int:
        """Turn new notices into one delivery per recipient (members or support)."""
        ...
    def due_deliveries(self, now: datetime, limit: int) -> list[Delivery]: ...
    def finish_delivery(
        self,
        delivery_id: int,
        *,
        sent: bool,
        at: datetime,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        """Sent; or failed for good (retry_at None); or to be retried at retry_at."""
        ...

    # leadership (partnerbot/cluster.py): the fence between a leader and the one before
    def begin_leadership(self, at: datetime) -> int:
        """Take the next leader epoch and return it: from now on only a claim under it
        claims deliveries (a deposed leader's claims claim nothing)."""
        ...
    def claim_deliveries(
        self, epoch: int | None, support_ids: Sequence[int], now: datetime, limit: int
    ) -> list[Delivery] | None:
        """As the leader of `epoch`: expand new notices, return up to `limit` due
        deliveries. None, and nothing written, when a later epoch has begun (this leader
        was deposed). `epoch` None: no fence (a dispatcher outside `run`, the tests)."""
        ...

    # the update inbox (core/inbox.py)
    def add_updates(self, updates: Sequence[InboxUpdate]) -> list[int]:
        """Record the updates not recorded before; the ids of those newly recorded (a
        redelivered update is recorded, and so handled, once)."""
        ...
    def mark_updates_handled(self, update_ids: Sequence[int], at: datetime) -> None:
        """Mark them handled (the first time counts) and release their claims."""
        ...
    def pending_updates(self) -> list[InboxUpdate]:
        """Updates recorded and not yet handled, in update-id order."""
        ...
    def prune_updates(self, handled_before: datetime) -> int:
        """Forget the updates handled before that instant; how many were forgotten."""
        ...
    # claims on the inbox (webhook mode, bot/claims.py): the store decides which instance
    # handles which update; every claim step runs in a serialized write transaction.
    def claim_next_update(
        self, sender: int, instance: str, now: datetime, until: datetime
    ) -> InboxUpdate | None:
        """Claim the sender's earliest unhandled update for `instance` until `until`; None
        when the sender has none, or when one of its updates holds a live claim (its
        holder drains the sender's queue: marking handled and claiming the next go in
        one transaction)."""
        ...
    def claim_update(
        self, update_id: int, instance: str, now: datetime, until: datetime
    ) -> InboxUpdate | None:
        """Claim one update (one without a sender) unless handled or claimed live."""
        ...
    def claim_orphans(
        self, instance: str, now: datetime, until: datetime, limit: int
    ) -> list[InboxUpdate]:
        """The sweep: claim the earliest unhandled update of every sender without a live
        claim, and every unhandled update without a sender nor a live claim (at most
        `limit`, in update-id order)."""
        ...
    def renew_claims(self, instance: str, until: datetime) -> int:
        """Extend the live claims `instance` holds on unhandled updates; how many."""
        ...
    def release_claims(self, instance: str) -> int:
        """Drop the claims `instance` holds on unhandled updates (a graceful stop)."""
        ...


class LedgerSnapshot(Protocol):
    """Everything `ledger verify` reads, in a consistent snapshot."""

    def transfers(self) -> Iterator[Transfer]:
        """Every transfer in id order."""
        ...
    def account_balances(self) -> dict[str, int]:
        """Every account with its stored (cached) balance."""
        ...
    def channels(self) -> list[Channel]: ...
    def orders(self) -> list[PaymentOrder]: ...
    def partners(self) -> list[Partner]: ...
    def outcomes(self) -> Iterator[tuple[str, str, str]]:
        """Every stored outcome as (key, kind, payload)."""
        ...
    def chain_start(self) -> ChainStart | None:
        """Where the chain starts being sealed with ledger.chain_key (None: never)."""
        ...


class Store(Protocol):
    async def write(self, work: Callable[[Ledger], T]) -> T:
        """Run `work` in one serialized write transaction; commit if it returns."""
        ...

    async def read(self, work: Callable[[Ledger], T]) -> T:
        """Run `work` against a consistent snapshot; it must not write."""
        ...

    async def lookup(self, work: Callable[[Ledger], T]) -> T:
        """Like `read`, for a few indexed rows (what one chat update needs), run where it
        costs least: SQLite runs it on the caller's thread. Never for reads that grow
        with the book (sweeps, lists of all partners)."""
        ...

    async def verify(self, work: Callable[[LedgerSnapshot], T]) -> T:
        """Run `work` against a snapshot of the whole ledger."""
        ...


class PaymentGateway(Protocol):
    """The payment provider (Stripe), as far as the use cases need it."""

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutLink:
        """A payment link for the order; PaymentUnavailable if the provider fails.

        Idempotent per order: asking again for the same order returns the same link.
        """
        ...

    async def session_state(self, provider_ref: str) -> SessionState: ...
