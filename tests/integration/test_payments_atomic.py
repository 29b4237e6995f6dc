"""A Stripe event and its effect commit together: one transaction holds the duplicate
check, the effect and the record of the event.

The PaymentService writes through a store that fails, on cue, at the moment the event is
recorded, after the effect has run (a disk error, a crash): the webhook answers 500, the
database holds neither the effect nor the event, and Stripe's redelivery applies it once.
Also: what the webhook's result hook hears, typed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from core.model import OrderStatus, TransferKind
from core.payments import EventHandled, EventResult
from core.ports import Ledger, LedgerSnapshot
from payments.webhook import Refused
from storage.sqlite import SqliteStore
from tests.integration.payments_harness import (
    HTTPX_DEPRECATION,
    PaymentsHarness,
    payments_harness,
)

pytestmark = pytest.mark.filterwarnings(HTTPX_DEPRECATION)

T = TypeVar("T")


class RecordFails(Exception):
    """The write of the event's record failed (the disk, the process...)."""


class CrashingLedger:
    """The ledger of one write transaction; recording a provider event fails when armed."""

    def __init__(self, inner: Ledger, store: CrashingStore) -> None:
        self._inner, self._store = inner, store

    def record_provider_event(self, event_id: str, event_type: str, at: datetime,
                              result: str) -> None:  # fmt: skip
        if self._store.armed:
            self._store.crashes += 1
            raise RecordFails(event_id)
        self._inner.record_provider_event(event_id, event_type, at, result)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class CrashingStore:
    """The SQLite store, whose write transactions see a CrashingLedger."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.armed = False
        self.crashes = 0

    async def write(self, work: Callable[[Ledger], T]) -> T:
        return await self.inner.write(lambda lg: work(CrashingLedger(lg, self)))  # type: ignore[arg-type]

    async def read(self, work: Callable[[Ledger], T]) -> T:
        return await self.inner.read(work)

    async def lookup(self, work: Callable[[Ledger], T]) -> T:
        return await self.inner.lookup(work)

    async def verify(self, work: Callable[[LedgerSnapshot], T]) -> T:
        return await self.inner.verify(work)


@pytest.fixture
async def crashing(tmp_path: Path) -> AsyncIterator[tuple[PaymentsHarness, CrashingStore]]:
    made: list[CrashingStore] = []

    def wrap(store: SqliteStore) -> CrashingStore:
        made.append(CrashingStore(store))
        return made[-1]

    async with payments_harness(tmp_path, payments_store=wrap) as h:
        [store] = made
        yield h, store


async def test_a_crash_while_recording_a_payment_event_keeps_nothing_and_redelivery_credits_once(
    crashing: tuple[PaymentsHarness, CrashingStore],
) -> None:
    h, store = crashing
    acme = await h.new_partner("Acme")
    order = await h.payments.start_topup(acme.id, 30, "user:1")
    assert order.provider_ref is not None
    event = h.fake.complete_session(order.provider_ref)

    store.armed = True
    status, body = await h.post(event)
    assert (status, body) == (500, {"status": "error"})
    assert store.crashes == 1
    # Neither the credit nor the event's record: the effect rolled back with the record.
    assert (await h.order(order.id)).status is OrderStatus.OPEN
    assert await h.balance(acme.id) == 0
    assert await h.transfers(TransferKind.PURCHASE) == []
    assert await h.stripe_events() == {}

    store.armed = False
    status, body = await h.post(event)  # Stripe delivers it again
    assert (status, body) == (200, {"status": "ok", "result": "credited"})
    assert await h.post(event) == (200, {"status": "duplicate", "result": "credited"})
    assert (await h.order(order.id)).status is OrderStatus.PAID
    assert await h.balance(acme.id) == 30
    assert len(await h.transfers(TransferKind.PURCHASE)) == 1
    assert await h.stripe_events() == {event["id"]: (event["type"], "credited")}


async def test_a_crash_while_recording_a_refund_event_takes_the_days_back_once(
    crashing: tuple[PaymentsHarness, CrashingStore],
) -> None:
    h, store = crashing
    acme = await h.new_partner("Acme")
    order = await h.payments.start_topup(acme.id, 60, "user:1")
    assert order.provider_ref is not None
    assert await h.deliver(h.fake.complete_session(order.provider_ref)) == "credited"
    payment_intent = h.session(order)["payment_intent"]
    refund = h.fake.refund(payment_intent, 1000)  # half of the 20.00 paid: 30 days

    store.armed = True
    assert (await h.post(refund))[0] == 500
    assert await h.balance(acme.id) == 60
    assert await h.transfers(TransferKind.REFUND) == []
    assert refund["id"] not in await h.stripe_events()

    store.armed = False
    assert await h.deliver(refund) == "refunded"
    assert (await h.post(refund))[1] == {"status": "duplicate", "result": "refunded"}
    assert await h.balance(acme.id) == 30
    assert len(await h.transfers(TransferKind.REFUND)) == 1


async def test_the_result_hook_hears_each_delivery_typed(tmp_path: Path) -> None:
    async with payments_harness(tmp_path) as h:
        acme = await h.new_partner("Acme")
        order = await h.payments.start_topup(acme.id, 30, "user:1")
        assert order.provider_ref is not None
        event = h.fake.complete_session(order.provider_ref)

        await h.post(event)
        await h.post(event)
        await h.post(event, secret="whsec_not_the_right_one")
        await h.post(b"{}")  # signed, but not an event
        await h.post(h.variant(event, id="cs_not_ours"))
        await h.post(dict(event, id="evt_of_another_kind", type="customer.created"))

        assert h.webhook_results == [
            EventHandled(EventResult.CREDITED),
            EventHandled(EventResult.CREDITED, duplicate=True),
            Refused.BAD_SIGNATURE,
            Refused.MALFORMED,
            EventHandled(EventResult.UNKNOWN),
            EventHandled(EventResult.IGNORED),  # not recorded: a kind we never act on
        ]
        events = await h.stripe_events()
        assert "evt_of_another_kind" not in events
        assert [result for _, result in events.values()] == ["credited", "unknown"]
