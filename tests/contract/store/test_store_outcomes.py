"""Store contract: outcomes of idempotent operations, stored once under their key."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.errors import InsufficientBalance, StorageError
from core.ports import Store
from core.service import BillingService
from tests.conftest import START, FakeClock
from tests.contract.store.helpers import DAY, SUPPORT, everything, fresh_key, grant, new_partner

# outcomes of idempotent operations ----------------------------------------------------


async def test_an_outcome_is_stored_once_under_its_key(store: Store) -> None:
    await store.write(lambda lg: lg.save_outcome("op1", "DaysGranted", '{"a":1}', START))

    assert await store.read(lambda lg: lg.find_outcome("op1")) == ("DaysGranted", '{"a":1}')
    assert await store.read(lambda lg: lg.find_outcome("op2")) is None
    with pytest.raises(StorageError):
        await store.write(lambda lg: lg.save_outcome("op1", "DaysGranted", "{}", START))


async def test_repeating_an_allocation_returns_the_first_outcome_and_changes_nothing(
    billing: BillingService, store: Store, clock: FakeClock
) -> None:
    pid = await new_partner(billing)
    await grant(billing, pid, 20)
    await billing.create_channel(pid, "Shop", SUPPORT, fresh_key())
    first = await billing.allocate_days(pid, "Shop", 5, SUPPORT, "tap:1")
    clock.advance(DAY)
    await grant(billing, pid, 10)
    before = await everything(store)

    again = await billing.allocate_days(pid, "Shop", 7, SUPPORT, "tap:1")

    assert again == replace(first, replayed=True)
    assert await everything(store) == before


async def test_repeating_a_deletion_returns_the_first_outcome_and_changes_nothing(
    billing: BillingService, store: Store, clock: FakeClock
) -> None:
    pid = await new_partner(billing)
    await grant(billing, pid, 20)
    shop = await billing.create_channel(pid, "Shop", SUPPORT, fresh_key())
    await billing.allocate_days(pid, "Shop", 5, SUPPORT, fresh_key())
    first = await billing.delete_channel(pid, shop.channel_id, SUPPORT, "confirm:1")
    clock.advance(DAY)
    before = await everything(store)

    again = await billing.delete_channel(pid, shop.channel_id, SUPPORT, "confirm:1")

    assert again == replace(first, replayed=True)
    assert await everything(store) == before


async def test_repeating_a_grant_returns_the_first_outcome_and_changes_nothing(
    billing: BillingService, store: Store
) -> None:
    pid = await new_partner(billing)
    first = await billing.grant_days(pid, 12, "late start", SUPPORT, "credit:1")
    before = await everything(store)

    again = await billing.grant_days(pid, 12, "late start", SUPPORT, "credit:1")

    assert again == replace(first, replayed=True)
    assert await everything(store) == before


async def test_repeating_a_channel_creation_returns_the_first_channel(
    billing: BillingService, store: Store
) -> None:
    pid = await new_partner(billing)
    first = await billing.create_channel(pid, "Shop", SUPPORT, "new:1")

    again = await billing.create_channel(pid, "Shop", SUPPORT, "new:1")

    assert again == replace(first, replayed=True)
    assert len(await store.read(lambda lg: lg.list_channels(pid))) == 1


async def test_a_refused_operation_stores_no_outcome_so_its_key_may_succeed_later(
    billing: BillingService,
) -> None:
    pid = await new_partner(billing)
    await billing.create_channel(pid, "Shop", SUPPORT, fresh_key())
    with pytest.raises(InsufficientBalance):
        await billing.allocate_days(pid, "Shop", 5, SUPPORT, "tap:1")
    await grant(billing, pid, 5)

    done = await billing.allocate_days(pid, "Shop", 5, SUPPORT, "tap:1")

    assert (done.balance, done.replayed) == (0, False)


async def test_a_key_reused_for_a_different_operation_is_refused_and_changes_nothing(
    billing: BillingService, store: Store
) -> None:
    pid = await new_partner(billing)
    await billing.create_channel(pid, "Shop", SUPPORT, fresh_key())
    await billing.grant_days(pid, 12, "late start", SUPPORT, "same:1")
    before = await everything(store)

    with pytest.raises(TypeError):
        await billing.allocate_days(pid, "Shop", 5, SUPPORT, "same:1")
    assert await everything(store) == before
