"""A partner's books over the in-memory store, for tests of core's use case functions.

`Book.run` hands a use case the store's ledger in one transaction and keeps the audit
events and provider events it recorded (only when the transaction commits, as a real
store would). Notices are counted by who they reach: support (SUPPORT) or, once added,
the partner's member, and read back typed through core.notices.decode (the codec the bot
reads them with).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from core import notices as codec
from core.model import Channel, Member, OrderKind, PaymentOrder, Role, partner_account
from core.orders import credit_paid_order, grant_days, open_order
from core.partners import create_partner
from core.policy import BillingPolicy
from core.ports import Ledger
from storage.memory import MemoryStore

T = TypeVar("T")
T0 = datetime(2030, 1, 14, 9, 30, tzinfo=UTC)
SUPPORT = 900
MEMBER = 700


@dataclass(frozen=True, slots=True)
class Event:
    actor: str
    action: str
    partner_id: int | None
    detail: str


def _instant(at: object) -> datetime:
    # SQLite stores these instants NOT NULL; the memory store would keep a None silently.
    assert isinstance(at, datetime) and at.utcoffset() is not None, f"not an instant: {at!r}"
    return at


@dataclass(frozen=True, slots=True)
class Delivered:
    """A provider event as recorded (the memory store keeps only its id and result)."""

    event_id: str
    kind: str
    at: datetime
    result: str


@dataclass(frozen=True, slots=True)
class Told:
    user_id: int
    kind: str  # the stored kind column
    notice: codec.AnyNotice  # the stored payload, decoded


class _Recording:
    """The store's ledger, with each audit event also noted for the test, and the
    instants the SQLite store requires checked as it would."""

    def __init__(self, inner: Ledger, seen: list[Event], delivered: list[Delivered]) -> None:
        self.inner, self.seen, self.delivered = inner, seen, delivered

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def record_event(
        self, at: datetime, actor: str, action: str, partner_id: int | None, detail: str
    ) -> None:
        self.inner.record_event(_instant(at), actor, action, partner_id, detail)
        self.seen.append(Event(actor, action, partner_id, detail))

    def record_provider_event(
        self, event_id: str, event_type: str, at: datetime, result: str
    ) -> None:
        self.inner.record_provider_event(event_id, event_type, _instant(at), result)
        self.delivered.append(Delivered(event_id, event_type, at, result))

    def save_outcome(self, key: str, kind: str, payload: str, at: datetime) -> None:
        self.inner.save_outcome(key, kind, payload, _instant(at))


class Book:
    def __init__(self, store: MemoryStore, price: int = 1000, currency: str = "usd") -> None:
        self.store = store
        self.price, self.currency = price, currency
        self.partner_id = 0
        self.events: list[Event] = []
        self.provider_events: list[Delivered] = []

    async def start(self, name: str = "Acme") -> Book:
        self.partner_id = await self.store.write(lambda lg: create_partner(
            lg, T0, BillingPolicy(), name, "cli", monthly_price=self.price,
            currency=self.currency,
        ).id)
        return self

    async def run(self, work: Callable[[Ledger], T]) -> T:
        seen: list[Event] = []
        delivered: list[Delivered] = []
        result = await self.store.write(
            lambda lg: work(_Recording(lg, seen, delivered))  # type: ignore[arg-type]
        )
        self.events.extend(seen)
        self.provider_events.extend(delivered)
        return result

    @property
    def recorded(self) -> _RecordingStore:
        """The store for a service under test, its audit events noted as Book.run does."""
        return _RecordingStore(self)

    def actions(self) -> list[str]:
        return [e.action for e in self.events]

    async def read(self, work: Callable[[Ledger], T]) -> T:
        return await self.store.read(work)

    async def balance(self, account: str | None = None) -> int:
        code = partner_account(self.partner_id) if account is None else account
        return await self.store.read(lambda lg: lg.balance(code))

    async def order(self, order_id: int) -> PaymentOrder:
        found = await self.store.read(lambda lg: lg.get_order(order_id))
        assert found is not None
        return found

    async def channel(self, channel_id: int) -> Channel:
        found = await self.store.read(lambda lg: lg.get_channel(channel_id))
        assert found is not None
        return found

    async def add_member(self, user_id: int = MEMBER) -> None:
        await self.store.write(lambda lg: lg.save_member(
            Member(user_id, self.partner_id, Role.OWNER, T0)
        ))

    async def told(self) -> list[int]:
        """Who was told something so far, one user id per notice delivered to them."""
        await self.store.write(lambda lg: lg.expand_notices([SUPPORT], T0))
        due = await self.store.read(lambda lg: lg.due_deliveries(T0 + timedelta(days=9000), 999))
        return [d.user_id for d in due]

    async def notices(self) -> list[Told]:
        """Every notice delivered so far: to whom, which kind, and its typed facts. (The
        one place that reads a notice's stored form.)"""
        await self.store.write(lambda lg: lg.expand_notices([SUPPORT], T0))
        due = await self.store.read(lambda lg: lg.due_deliveries(T0 + timedelta(days=9000), 999))
        return [
            Told(d.user_id, d.notice.kind, codec.decode(d.notice.kind, d.notice.payload))
            for d in due
        ]

    async def support_told(self) -> int:
        """How many notices reached support so far."""
        return (await self.told()).count(SUPPORT)

    async def grant(self, days: int, key: str = "g") -> int:
        done = await self.run(lambda lg: grant_days(
            lg, T0, self.partner_id, days, "goodwill", "support:1", key
        ))
        return done.balance

    async def open(self, days: int, **kw: Any) -> PaymentOrder:
        return await self.run(lambda lg: open_order(
            lg, T0, self.partner_id, OrderKind.TOPUP, days, "user:1", **kw
        ))

    async def paid(self, days: int) -> PaymentOrder:
        order = await self.open(days)
        await self.run(lambda lg: credit_paid_order(
            lg, T0, order.id, order.amount, order.currency, "stripe:evt"
        ))
        return await self.order(order.id)


class _RecordingStore:
    """core.ports.Store over the book's store: writes go through Book.run."""

    def __init__(self, book: Book) -> None:
        self.book = book

    async def write(self, work: Callable[[Ledger], T]) -> T:
        return await self.book.run(work)

    async def read(self, work: Callable[[Ledger], T]) -> T:
        return await self.book.store.read(work)

    async def lookup(self, work: Callable[[Ledger], T]) -> T:
        return await self.book.store.lookup(work)

    async def verify(self, work: Callable[[Any], T]) -> T:
        return await self.book.store.verify(work)
