"""One read model for an account: what support's /account and `partnerbot partner show`
render, read in one store transaction, against the fake and SQLite alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

from core.errors import PartnerNotFound
from core.model import OrderKind, OrderStatus, TransferKind
from core.policy import BillingPolicy
from core.ports import Ledger, LedgerSnapshot, Store
from core.service import BillingService
from tests.conftest import FakeClock

T = TypeVar("T")
SUPPORT = "support:1"


class CountingStore:
    """A Store that counts its transactions and hands each to the real one."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.trips: list[str] = []

    async def write(self, work: Callable[[Ledger], T]) -> T:
        self.trips.append("write")
        return await self.inner.write(work)

    async def read(self, work: Callable[[Ledger], T]) -> T:
        self.trips.append("read")
        return await self.inner.read(work)

    async def lookup(self, work: Callable[[Ledger], T]) -> T:
        self.trips.append("lookup")
        return await self.inner.lookup(work)

    async def verify(self, work: Callable[[LedgerSnapshot], T]) -> T:
        self.trips.append("verify")
        return await self.inner.verify(work)


async def test_the_account_view_holds_summary_recent_ledger_channel_names_and_orders(
    billing: BillingService,
) -> None:
    pid = (await billing.create_partner("Acme", SUPPORT)).partner.id
    other = (await billing.create_partner("Other", SUPPORT)).partner.id
    await billing.grant_days(pid, 100, "goodwill", SUPPORT, "g1")
    await billing.grant_days(other, 7, "goodwill", SUPPORT, "g2")
    shop = await billing.create_channel(pid, "shop", SUPPORT, "c1")
    gone = await billing.create_channel(pid, "gone", SUPPORT, "c2")
    await billing.allocate_days(pid, "shop", 30, SUPPORT, "a1")
    await billing.allocate_days(pid, "gone", 10, SUPPORT, "a2")
    await billing.delete_channel(pid, gone.channel_id, SUPPORT, "d1")
    order = await billing.open_order(pid, OrderKind.TOPUP, 60, SUPPORT)
    await billing.open_order(other, OrderKind.TOPUP, 90, SUPPORT)

    view = await billing.account_view(pid, recent=3)

    assert view.partner.name == "Acme" and view.summary.partner.id == pid
    assert view.summary.balance == 100 - 30 - 10 + 10  # the deleted channel's days came back
    assert [c.channel.name for c in view.summary.channels] == ["shop"]
    # Newest first, only the partner's own balance, at most `recent` of them.
    assert [t.kind for t in view.recent] == [
        TransferKind.RETURN, TransferKind.ALLOCATION, TransferKind.ALLOCATION,
    ]
    assert [t.id for t in view.recent] == sorted((t.id for t in view.recent), reverse=True)
    # A deleted channel keeps its name for the history rows that move days to it.
    assert view.channel_names == {shop.channel_id: "shop", gone.channel_id: "gone"}
    assert [(o.id, o.status) for o in view.orders] == [(order.id, OrderStatus.OPEN)]


async def test_the_account_view_of_a_new_partner_is_empty(billing: BillingService) -> None:
    pid = (await billing.create_partner("Acme", SUPPORT)).partner.id
    view = await billing.account_view(pid, recent=8)
    assert view.summary.balance == 0 and view.summary.runway is None
    assert (view.summary.channels, view.recent, view.channel_names, view.orders) == (
        [], [], {}, [],
    )


async def test_the_account_view_of_an_unknown_partner_is_refused(
    billing: BillingService,
) -> None:
    with pytest.raises(PartnerNotFound):
        await billing.account_view(404, recent=8)


async def test_the_account_view_is_one_store_transaction(
    store: Store, clock: FakeClock, policy: BillingPolicy
) -> None:
    counting = CountingStore(store)
    billing = BillingService(counting, clock, policy)
    pid = (await billing.create_partner("Acme", SUPPORT)).partner.id
    await billing.grant_days(pid, 5, "goodwill", SUPPORT, "g1")
    counting.trips.clear()
    view = await billing.account_view(pid, recent=8)
    assert counting.trips == ["read"]
    assert view.summary.balance == 5 and len(view.recent) == 1
