"""An in-memory store with the SQLite store's behaviour, for fast service-layer tests.

The contract suite (tests/contract) runs against this and the SQLite store alike, so the
two stay interchangeable. Each transaction works on a copy of the state and replaces the
state only if it returns; constraints the SQL schema enforces are enforced here too.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TypeVar

from core.errors import StorageError
from core.ledger import GENESIS, transfer_digest
from core.model import (
    EXTERNAL_ACCOUNTS,
    AlertState,
    ChainStart,
    Channel,
    Delivery,
    Invite,
    Member,
    NewTransfer,
    Notice,
    OrderKind,
    OrderStatus,
    Partner,
    PaymentOrder,
    Role,
    Transfer,
    TransferKind,
    channel_account,
    partner_account,
    partner_of,
)
from core.names import name_key
from core.ports import Ledger, LedgerSnapshot
from storage.memory_inbox import InboxRow, MemoryInbox

T = TypeVar("T")


@dataclass
class _Delivery:
    id: int
    notice: Notice
    user_id: int
    due_at: datetime
    status: str = "pending"
    attempts: int = 0
    error: str | None = None


@dataclass
class _State:
    partners: dict[int, Partner] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    invites: dict[int, Invite] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    balances: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(EXTERNAL_ACCOUNTS, 0)
    )
    transfers: list[Transfer] = field(default_factory=list)
    transfer_keys: set[str] = field(default_factory=set)
    orders: dict[int, PaymentOrder] = field(default_factory=dict)
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)
    events: list[tuple[datetime, str, str, int | None, str]] = field(default_factory=list)
    provider_events: dict[str, str] = field(default_factory=dict)
    notices: list[tuple[Notice, bool]] = field(default_factory=list)  # (notice, expanded)
    deliveries: dict[int, _Delivery] = field(default_factory=dict)
    leader_epoch: int = 0
    alerts: dict[int, tuple[bool, int]] = field(default_factory=dict)  # below, crossings
    expiry_warnings: set[tuple[int, datetime, int]] = field(default_factory=set)
    marks: dict[tuple[int, str], datetime] = field(default_factory=dict)
    job_runs: dict[int, tuple[str, datetime, datetime | None, bool | None, str]] = field(
        default_factory=dict
    )
    inbox: dict[int, InboxRow] = field(default_factory=dict)


def _fail(message: str) -> None:
    raise StorageError(f"database: constraint failed: {message}")


class MemoryLedger(MemoryInbox):
    s: _State

    def __init__(self, state: _State) -> None:
        self.s = state

    def add_partner(
        self,
        name: str,
        currency: str,
        monthly_price: int,
        low_balance_days: int,
        billing_day: int,
        created_at: datetime,
    ) -> Partner:
        if self.find_partner_by_name(name) is not None:
            _fail("UNIQUE constraint failed: partners.name_key")
        partner = Partner(
            len(self.s.partners) + 1, name, currency, monthly_price, low_balance_days,
            billing_day, created_at,
        )
        self.s.partners[partner.id] = partner
        self.s.balances[partner_account(partner.id)] = 0
        return partner

    def get_partner(self, partner_id: int) -> Partner | None:
        return self.s.partners.get(partner_id)

    def find_partner_by_name(self, name: str) -> Partner | None:
        key = name_key(name)
        return next((p for p in self.s.partners.values() if name_key(p.name) == key), None)

    def list_partners(self) -> list[Partner]:
        return sorted(self.s.partners.values(), key=lambda p: p.id)

    def update_partner(self, partner: Partner) -> None:
        other = self.find_partner_by_name(partner.name)
        if other is not None and other.id != partner.id:
            _fail("UNIQUE constraint failed: partners.name_key")
        self.s.partners[partner.id] = partner

    def save_member(self, member: Member) -> None:
        if member.partner_id not in self.s.partners:
            _fail("FOREIGN KEY constraint failed")
        self.s.members[member.user_id] = member

    def get_member(self, user_id: int) -> Member | None:
        return self.s.members.get(user_id)

    def list_members(self, partner_id: int) -> list[Member]:
        found = [m for m in self.s.members.values() if m.partner_id == partner_id]
        return sorted(found, key=lambda m: (m.linked_at, m.user_id))

    def add_invite(
        self,
        partner_id: int,
        role: Role,
        code_hash: str,
        created_at: datetime,
        expires_at: datetime,
        created_by: str,
    ) -> Invite:
        if partner_id not in self.s.partners:
            _fail("FOREIGN KEY constraint failed")
        if any(i.code_hash == code_hash for i in self.s.invites.values()):
            _fail("UNIQUE constraint failed: invites.code_hash")
        invite = Invite(
            len(self.s.invites) + 1, partner_id, role, code_hash, created_at, expires_at,
            created_by,
        )
        self.s.invites[invite.id] = invite
        return invite

    def find_invite(self, code_hash: str) -> Invite | None:
        return next((i for i in self.s.invites.values() if i.code_hash == code_hash), None)

    def use_invite(self, invite_id: int, user_id: int, at: datetime) -> None:
        invite = self.s.invites[invite_id]
        if invite.used_at is None:
            self.s.invites[invite_id] = replace(invite, used_at=at, used_by=user_id)

    def add_channel(self, partner_id: int, name: str, created_at: datetime) -> Channel:
        if partner_id not in self.s.partners:
            _fail("FOREIGN KEY constraint failed")
        if self.find_live_channel(partner_id, name) is not None:
            _fail("UNIQUE constraint failed: channels.partner_id, channels.name_key")
        channel = Channel(len(self.s.channels) + 1, partner_id, name, created_at)
        self.s.channels[channel.id] = channel
        self.s.balances[channel_account(channel.id)] = 0
        return channel

    def get_channel(self, channel_id: int) -> Channel | None:
        return self.s.channels.get(channel_id)

    def find_live_channel(self, partner_id: int, name: str) -> Channel | None:
        key = name_key(name)
        return next(
            (
                c
                for c in self.s.channels.values()
                if c.partner_id == partner_id and c.live and name_key(c.name) == key
            ),
            None,
        )

    def list_channels(self, partner_id: int, *, include_deleted: bool = False) -> list[Channel]:
        return [
            c
            for c in sorted(self.s.channels.values(), key=lambda c: c.id)
            if c.partner_id == partner_id and (include_deleted or c.live)
        ]

    def update_channel(self, channel: Channel) -> None:
        if channel.subscription_ref is not None and any(
            c.subscription_ref == channel.subscription_ref and c.id != channel.id
            for c in self.s.channels.values()
        ):
            _fail("UNIQUE constraint failed: channels.subscription_ref")
        if channel.live:
            twin = self.find_live_channel(channel.partner_id, channel.name)
            if twin is not None and twin.id != channel.id:
                _fail("UNIQUE constraint failed: channels.partner_id, channels.name_key")
        self.s.channels[channel.id] = channel

    def balance(self, account: str) -> int:
        return self.s.balances.get(account, 0)

    def add_transfer(self, transfer: NewTransfer) -> Transfer:
        t = transfer
        if t.key in self.s.transfer_keys:
            _fail("UNIQUE constraint failed: transfers.key")
        if t.debit not in self.s.balances or t.credit not in self.s.balances or (
            t.order_id is not None and t.order_id not in self.s.orders
        ):
            _fail("FOREIGN KEY constraint failed")
        if t.days <= 0 or t.debit == t.credit:
            _fail("CHECK constraint failed: transfers")
        if (
            t.kind is not TransferKind.REFUND
            and partner_of(t.debit) is not None
            and self.s.balances[t.debit] < t.days
        ):
            raise StorageError("database: overdraft: the partner balance does not cover it")
        if t.kind is TransferKind.PURCHASE and any(
            x.kind is TransferKind.PURCHASE and x.order_id == t.order_id
            for x in self.s.transfers
        ):
            _fail("UNIQUE constraint failed: transfers.order_id")
        previous = self.s.transfers[-1].digest if self.s.transfers else GENESIS
        transfer_id = len(self.s.transfers) + 1
        stored = Transfer(
            transfer_id, t.key, t.debit, t.credit, t.days, t.kind, t.actor, t.reason,
            t.created_at, t.order_id, transfer_digest(previous, transfer_id, t),
        )
        self.s.transfers.append(stored)
        self.s.transfer_keys.add(t.key)
        self.s.balances[t.debit] -= t.days
        self.s.balances[t.credit] += t.days
        return stored

    def find_transfer(self, key: str) -> Transfer | None:
        return next((t for t in self.s.transfers if t.key == key), None)

    def list_transfers(
        self, account: str, *, limit: int, before_id: int | None = None
    ) -> list[Transfer]:
        found = [
            t
            for t in reversed(self.s.transfers)
            if account in (t.debit, t.credit) and (before_id is None or t.id < before_id)
        ]
        return found[:limit]

    def record_event(
        self, at: datetime, actor: str, action: str, partner_id: int | None, detail: str
    ) -> None:
        if not actor:
            _fail("CHECK constraint failed: events.actor")
        self.s.events.append((at, actor, action, partner_id, detail))

    def find_outcome(self, key: str) -> tuple[str, str] | None:
        return self.s.outcomes.get(key)

    def save_outcome(self, key: str, kind: str, payload: str, at: datetime) -> None:
        if key in self.s.outcomes:
            _fail("UNIQUE constraint failed: operations.key")
        self.s.outcomes[key] = (kind, payload)

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
    ) -> PaymentOrder:
        if partner_id not in self.s.partners or (
            channel_id is not None and channel_id not in self.s.channels
        ):
            _fail("FOREIGN KEY constraint failed")
        if period is not None and self.find_invoice(partner_id, period) is not None:
            _fail("UNIQUE constraint failed: orders.partner_id, orders.period")
        if kind is OrderKind.SUBSCRIPTION:
            self._one_pending_subscription(channel_id, None)
        order = PaymentOrder(
            id=len(self.s.orders) + 1, partner_id=partner_id, kind=kind, days=days,
            amount=amount, currency=currency, status=OrderStatus.OPEN, created_at=created_at,
            created_by=created_by, period=period, channels=channels, channel_id=channel_id,
        )
        self.s.orders[order.id] = order
        return order

    def get_order(self, order_id: int) -> PaymentOrder | None:
        return self.s.orders.get(order_id)

    def find_invoice(self, partner_id: int, period: str) -> PaymentOrder | None:
        return next(
            (
                o
                for o in self.s.orders.values()
                if o.partner_id == partner_id and o.period == period
            ),
            None,
        )

    def list_orders(
        self, partner_id: int | None = None, *, statuses: Sequence[OrderStatus] = ()
    ) -> list[PaymentOrder]:
        return [
            o
            for o in sorted(self.s.orders.values(), key=lambda o: -o.id)
            if (partner_id is None or o.partner_id == partner_id)
            and (not statuses or o.status in statuses)
        ]

    def update_order(self, order: PaymentOrder) -> None:
        if order.provider_ref is not None and any(
            o.provider_ref == order.provider_ref and o.id != order.id
            for o in self.s.orders.values()
        ):
            _fail("UNIQUE constraint failed: orders.provider_ref")
        if order.kind is OrderKind.SUBSCRIPTION and order.status is OrderStatus.OPEN:
            self._one_pending_subscription(order.channel_id, order.id)
        self.s.orders[order.id] = order

    def _one_pending_subscription(self, channel_id: int | None, order_id: int | None) -> None:
        """SQLite's partial unique index orders_one_pending_subscription (migration 0006)."""
        if any(
            o.kind is OrderKind.SUBSCRIPTION and o.status is OrderStatus.OPEN
            and o.channel_id == channel_id and o.id != order_id
            for o in self.s.orders.values()
        ):
            _fail("UNIQUE constraint failed: orders.channel_id")


    def find_order_by_ref(self, provider_ref: str) -> PaymentOrder | None:
        return next((o for o in self.s.orders.values() if o.provider_ref == provider_ref), None)

    def find_order_by_payment(self, payment_ref: str) -> PaymentOrder | None:
        return next((o for o in self.s.orders.values() if o.payment_ref == payment_ref), None)

    def find_channel_by_subscription(self, subscription_ref: str) -> Channel | None:
        return next(
            (c for c in self.s.channels.values() if c.subscription_ref == subscription_ref),
            None,
        )

    def find_provider_event(self, event_id: str) -> str | None:
        return self.s.provider_events.get(event_id)

    def record_provider_event(
        self, event_id: str, event_type: str, at: datetime, result: str
    ) -> None:
        self.s.provider_events.setdefault(event_id, result)

    def add_notice(
        self, key: str, partner_id: int | None, kind: str, payload: str, at: datetime
    ) -> bool:
        if partner_id is not None and partner_id not in self.s.partners:
            _fail("FOREIGN KEY constraint failed")
        if any(n.key == key for n, _ in self.s.notices):
            return False
        notice = Notice(len(self.s.notices) + 1, key, partner_id, kind, payload, at)
        self.s.notices.append((notice, False))
        return True

    def expand_notices(self, support_ids: Sequence[int], at: datetime) -> int:
        added = 0
        for index, (notice, expanded) in enumerate(self.s.notices):
            if expanded:
                continue
            if notice.partner_id is None:
                users = list(support_ids)
            else:
                users = [
                    m.user_id
                    for m in self.list_members(notice.partner_id)
                    if not m.unreachable
                ]
            for user_id in users:
                if any(
                    d.notice.id == notice.id and d.user_id == user_id
                    for d in self.s.deliveries.values()
                ):
                    continue
                delivery_id = len(self.s.deliveries) + 1
                self.s.deliveries[delivery_id] = _Delivery(delivery_id, notice, user_id, at)
                added += 1
            self.s.notices[index] = (notice, True)
        return added

    def due_deliveries(self, now: datetime, limit: int) -> list[Delivery]:
        due = sorted(
            (d for d in self.s.deliveries.values() if d.status == "pending" and d.due_at <= now),
            key=lambda d: (d.due_at, d.id),
        )
        return [Delivery(d.id, d.notice, d.user_id, d.attempts) for d in due[:limit]]

    def finish_delivery(
        self,
        delivery_id: int,
        *,
        sent: bool,
        at: datetime,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        d = self.s.deliveries[delivery_id]
        d.attempts += 1
        if sent:
            d.status, d.error = "sent", None
        elif retry_at is not None:
            d.status, d.error, d.due_at = "pending", error, retry_at
        else:
            d.status, d.error = "failed", error


    def begin_leadership(self, at: datetime) -> int:
        self.s.leader_epoch += 1
        return self.s.leader_epoch

    def claim_deliveries(
        self, epoch: int | None, support_ids: Sequence[int], now: datetime, limit: int
    ) -> list[Delivery] | None:
        if epoch is not None and epoch != self.s.leader_epoch:
            return None
        self.expand_notices(support_ids, now)
        return self.due_deliveries(now, limit) if limit > 0 else []

    def alert_state(self, partner_id: int) -> AlertState:
        partner = self.s.partners[partner_id]
        below, crossings = self.s.alerts.get(partner_id, (False, 0))
        return AlertState(partner, self.balance(partner_account(partner_id)), below, crossings)

    def alert_candidates(self) -> list[AlertState]:
        states = [self.alert_state(p) for p in sorted(self.s.partners)]
        return [a for a in states if (a.balance < a.partner.low_balance_days) != a.below]

    def set_alert_state(self, partner_id: int, below: bool, crossings: int, at: datetime) -> None:
        self.s.alerts[partner_id] = (below, crossings)

    def running_until(
        self, partner_ids: Sequence[int], now: datetime
    ) -> dict[int, list[datetime]]:
        return {
            p: [
                c.active_until
                for c in self.list_channels(p)
                if c.active_until is not None and c.active_until > now
            ]
            for p in partner_ids
        }

    def channels_expiring(self, after: datetime, until: datetime) -> list[Channel]:
        found = [
            c
            for c in self.s.channels.values()
            if c.live and c.active_until is not None and after < c.active_until <= until
        ]
        return sorted(found, key=lambda c: (c.partner_id, c.active_until or until))

    def record_expiry_warnings(
        self, warnings: Sequence[tuple[int, datetime, int]], at: datetime
    ) -> list[tuple[int, datetime, int]]:
        new = [w for w in warnings if w not in self.s.expiry_warnings]
        self.s.expiry_warnings.update(new)
        return new

    def channels_to_renew(self, until: datetime) -> list[Channel]:
        found = [
            c
            for c in self.s.channels.values()
            if c.live and c.auto_renew and c.billing.value == "balance"
            and c.active_until is not None and c.active_until <= until
        ]
        return sorted(found, key=lambda c: (c.partner_id, c.active_until or until))

    def _open_invoices(self, created_before: datetime, mark: str) -> list[PaymentOrder]:
        return sorted(
            (
                o
                for o in self.s.orders.values()
                if o.status is OrderStatus.OPEN and o.kind is OrderKind.INVOICE
                and o.created_at <= created_before and (o.id, mark) not in self.s.marks
            ),
            key=lambda o: o.id,
        )

    def invoices_to_remind(self, created_before: datetime) -> list[PaymentOrder]:
        return self._open_invoices(created_before, "reminded_at")

    def invoices_to_flag_overdue(self, created_before: datetime) -> list[PaymentOrder]:
        return self._open_invoices(created_before, "overdue_at")

    def mark_invoices(self, order_ids: Sequence[int], field: str, at: datetime) -> None:
        if field not in ("reminded_at", "overdue_at"):
            raise KeyError(field)
        for order_id in order_ids:
            self.s.marks[(order_id, field)] = at

    def start_job_run(self, job: str, at: datetime) -> int:
        run_id = len(self.s.job_runs) + 1
        self.s.job_runs[run_id] = (job, at, None, None, "")
        return run_id

    def finish_job_run(self, run_id: int, at: datetime, ok: bool, summary: str) -> None:
        job, started, _, _, _ = self.s.job_runs[run_id]
        self.s.job_runs[run_id] = (job, started, at, ok, summary)


class MemorySnapshot:
    def __init__(self, state: _State) -> None:
        self.s = state

    def transfers(self) -> Iterator[Transfer]:
        return iter(list(self.s.transfers))

    def account_balances(self) -> dict[str, int]:
        return dict(self.s.balances)

    def channels(self) -> list[Channel]:
        return sorted(self.s.channels.values(), key=lambda c: c.id)

    def orders(self) -> list[PaymentOrder]:
        return sorted(self.s.orders.values(), key=lambda o: o.id)

    def partners(self) -> list[Partner]:
        return sorted(self.s.partners.values(), key=lambda p: p.id)

    def chain_start(self) -> ChainStart | None:
        return None  # the fake never seals with a key

    def outcomes(self) -> Iterator[tuple[str, str, str]]:
        return iter([(k, kind, payload) for k, (kind, payload) in self.s.outcomes.items()])


class MemoryStore:
    def __init__(self) -> None:
        self._state = _State()
        self._lock = asyncio.Lock()

    async def write(self, work: Callable[[Ledger], T]) -> T:
        async with self._lock:
            draft = copy.deepcopy(self._state)
            result = work(MemoryLedger(draft))
            self._state = draft
            return result

    async def read(self, work: Callable[[Ledger], T]) -> T:
        async with self._lock:
            return work(MemoryLedger(copy.deepcopy(self._state)))

    async def lookup(self, work: Callable[[Ledger], T]) -> T:
        return await self.read(work)

    async def verify(self, work: Callable[[LedgerSnapshot], T]) -> T:
        async with self._lock:
            return work(MemorySnapshot(self._state))

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
