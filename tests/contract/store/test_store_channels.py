"""Store contract: channels, allocating days to them and deleting them (rules 4 and 5)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.errors import (
    ChannelChanged,
    ChannelNameTaken,
    ChannelNotFound,
    InsufficientBalance,
    StorageError,
)
from core.model import CONSUMED, channel_account, partner_account
from core.ports import Store
from core.service import BillingService
from tests.conftest import START, FakeClock
from tests.contract.store.helpers import (
    DAY,
    SUPPORT,
    balance,
    everything,
    fresh_key,
    grant,
    new_partner,
    raw_partner,
)

# channels ---------------------------------------------------------------------------


async def test_a_live_channel_name_is_unique_per_partner_whatever_its_case(
    billing: BillingService,
) -> None:
    pid = await new_partner(billing)
    await billing.create_channel(pid, "Shop", SUPPORT, fresh_key())

    with pytest.raises(ChannelNameTaken):
        await billing.create_channel(pid, "  SHOP ", SUPPORT, fresh_key())
    assert [v.channel.name for v in await billing.channel_views(pid)] == ["Shop"]


async def test_two_partners_may_each_have_a_channel_of_the_same_name(
    billing: BillingService,
) -> None:
    acme, beta = await new_partner(billing, "Acme"), await new_partner(billing, "Beta")

    one = await billing.create_channel(acme, "Shop", SUPPORT, fresh_key())
    two = await billing.create_channel(beta, "shop", SUPPORT, fresh_key())

    assert one.channel_id != two.channel_id


async def test_the_store_itself_refuses_two_live_channels_of_the_same_name(store: Store) -> None:
    pid = await store.write(raw_partner)
    await store.write(lambda lg: lg.add_channel(pid, "Shop", START))

    with pytest.raises(StorageError):
        await store.write(lambda lg: lg.add_channel(pid, "sHOP", START))
    assert len(await store.read(lambda lg: lg.list_channels(pid))) == 1


async def test_a_deleted_channels_name_may_be_reused(billing: BillingService, store: Store) -> None:
    pid = await new_partner(billing)
    old = await billing.create_channel(pid, "Shop", SUPPORT, fresh_key())
    await billing.delete_channel(pid, old.channel_id, SUPPORT, fresh_key())

    new = await billing.create_channel(pid, "shop", SUPPORT, fresh_key())

    assert new.channel_id != old.channel_id
    live = await store.read(lambda lg: lg.list_channels(pid))
    every = await store.read(lambda lg: lg.list_channels(pid, include_deleted=True))
    assert [c.id for c in live] == [new.channel_id]
    assert [c.id for c in every] == [old.channel_id, new.channel_id]
    assert every[0].deleted_at == START and every[1].deleted_at is None


async def test_a_live_channel_is_found_by_name_in_any_case(store: Store) -> None:
    pid = await store.write(raw_partner)
    shop = await store.write(lambda lg: lg.add_channel(pid, "Shop", START))

    assert await store.read(lambda lg: lg.find_live_channel(pid, "sHoP")) == shop
    assert await store.read(lambda lg: lg.get_channel(shop.id)) == shop
    assert await store.read(lambda lg: lg.find_live_channel(pid, "Shop 2")) is None
    assert await store.read(lambda lg: lg.get_channel(999)) is None


async def test_a_deleted_channel_is_neither_found_nor_listed(
    billing: BillingService, store: Store
) -> None:
    pid = await new_partner(billing)
    shop = await billing.create_channel(pid, "Shop", SUPPORT, fresh_key())
    await billing.create_channel(pid, "Blog", SUPPORT, fresh_key())

    await billing.delete_channel(pid, shop.channel_id, SUPPORT, fresh_key())

    assert await store.read(lambda lg: lg.find_live_channel(pid, "Shop")) is None
    assert [c.name for c in await store.read(lambda lg: lg.list_channels(pid))] == ["Blog"]
    with pytest.raises(ChannelNotFound):
        await billing.delete_channel(pid, shop.channel_id, SUPPORT, fresh_key())


async def test_another_partners_channel_reads_as_absent(billing: BillingService) -> None:
    acme, beta = await new_partner(billing, "Acme"), await new_partner(billing, "Beta")
    await grant(billing, beta, 10)
    shop = await billing.create_channel(acme, "Shop", SUPPORT, fresh_key())

    with pytest.raises(ChannelNotFound):
        await billing.allocate_days(beta, "Shop", 1, SUPPORT, fresh_key())
    with pytest.raises(ChannelNotFound):
        await billing.deletion_preview(beta, "Shop")
    with pytest.raises(ChannelNotFound):
        await billing.delete_channel(beta, shop.channel_id, SUPPORT, fresh_key())


# allocation and deletion (rules 4 and 5) --------------------------------------------


async def test_allocating_moves_days_from_the_balance_to_the_channel(
    billing: BillingService, store: Store
) -> None:
    pid = await new_partner(billing)
    await grant(billing, pid, 40)
    shop = await billing.create_channel(pid, "Shop", SUPPORT, fresh_key())

    done = await billing.allocate_days(pid, "shop", 10, "user:100", fresh_key())

    assert (done.balance, done.active_until, done.replayed) == (30, START + 10 * DAY, False)
    assert await balance(store, partner_account(pid)) == 30
    assert await balance(store, channel_account(shop.channel_id)) == 10
    channel = await store.read(lambda lg: lg.get_channel(shop.channel_id))
    assert channel is not None and channel.active_until == START + 10 * DAY


async def test_allocating_to_a_running_channel_extends_it_from_its_end(
    billing: BillingService, clock: FakeClock
) -> None:
    pid = await new_partner(billing)
    await grant(billing, pid, 40)
    await billing.create_channel(pid, "Shop", SUPPORT, fresh_key())
    await billing.allocate_days(pid, "Shop", 10, SUPPORT, fresh_key())
    clock.advance(3 * DAY)

    done = await billing.allocate_days(pid, "Shop", 5, SUPPORT, fresh_key())

    assert done.active_until == START + 15 * DAY


async def test_allocating_to_an_expired_channel_restarts_it_from_now(
    billing: BillingService, clock: FakeClock
) -> None:
    pid = await new_partner(billing)
    await grant(billing, pid, 40)
    await billing.create_channel(pid, "Shop", SUPPORT, fresh_key())
    await billing.allocate_days(pid, "Shop", 2, SUPPORT, fresh_key())
    now = clock.advance(5 * DAY)

    done = await billing.allocate_days(pid, "Shop", 3, SUPPORT, fresh_key())

    assert done.active_until == now + 3 * DAY


async def test_allocating_more_than_the_balance_changes_nothing(
    billing: BillingService, store: Store
) -> None:
    pid = await new_partner(billing)
    await grant(billing, pid, 5)
    await billing.create_channel(pid, "Shop", SUPPORT, fresh_key())
    before = await everything(store)

    with pytest.raises(InsufficientBalance) as refused:
        await billing.allocate_days(pid, "Shop", 6, SUPPORT, fresh_key())

    assert (refused.value.needed, refused.value.available, refused.value.missing) == (6, 5, 1)
    assert await everything(store) == before


async def test_deleting_a_channel_returns_its_whole_unused_days_and_consumes_the_rest(
    billing: BillingService, store: Store, clock: FakeClock
) -> None:
    pid = await new_partner(billing)
    await grant(billing, pid, 30)
    shop = await billing.create_channel(pid, "Shop", SUPPORT, fresh_key())
    await billing.allocate_days(pid, "Shop", 10, SUPPORT, fresh_key())
    clock.advance(2 * DAY + timedelta(hours=1))  # 7 days 23 hours left: 7 come back

    assert (await billing.deletion_preview(pid, "Shop"))[1] == 7
    done = await billing.delete_channel(pid, shop.channel_id, SUPPORT, fresh_key())

    assert (done.returned_days, done.consumed_days, done.balance) == (7, 3, 27)
    assert await balance(store, partner_account(pid)) == 27
    assert await balance(store, channel_account(shop.channel_id)) == 0
    assert await balance(store, CONSUMED) == 3


async def test_deleting_an_expired_channel_returns_nothing(
    billing: BillingService, store: Store, clock: FakeClock
) -> None:
    pid = await new_partner(billing)
    await grant(billing, pid, 10)
    shop = await billing.create_channel(pid, "Shop", SUPPORT, fresh_key())
    await billing.allocate_days(pid, "Shop", 4, SUPPORT, fresh_key())
    clock.advance(30 * DAY)

    done = await billing.delete_channel(pid, shop.channel_id, SUPPORT, fresh_key())

    assert (done.returned_days, done.consumed_days, done.balance) == (0, 4, 6)


async def test_a_deletion_confirmed_after_the_channel_changed_changes_nothing(
    billing: BillingService, store: Store
) -> None:
    pid = await new_partner(billing)
    await grant(billing, pid, 10)
    await billing.create_channel(pid, "Shop", SUPPORT, fresh_key())
    shown, _ = await billing.deletion_preview(pid, "Shop")
    await billing.allocate_days(pid, "Shop", 4, SUPPORT, fresh_key())
    before = await everything(store)

    with pytest.raises(ChannelChanged):
        await billing.delete_channel(
            pid, shown.id, SUPPORT, fresh_key(),
            expected_until=shown.active_until, check_expected=True,
        )
    assert await everything(store) == before
