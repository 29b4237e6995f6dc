"""Store contract: transfers, and the all-or-nothing transaction around a work function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from core.errors import StorageError
from core.model import (
    GRANTS,
    PURCHASES,
    Member,
    NewTransfer,
    OrderKind,
    Role,
    TransferKind,
    channel_account,
    partner_account,
)
from core.ports import Ledger, Store
from core.service import BillingService
from tests.conftest import START
from tests.contract.store.helpers import (
    DAY,
    SUPPORT,
    balance,
    buy,
    everything,
    fresh_key,
    grant,
    new_partner,
    raw_partner,
    raw_transfer,
)

# transfers --------------------------------------------------------------------------


async def test_a_transfer_moves_its_days_between_its_two_accounts(store: Store) -> None:
    pid = await store.write(raw_partner)

    written = await store.write(
        lambda lg: lg.add_transfer(raw_transfer("t1", GRANTS, partner_account(pid), 5))
    )

    assert await balance(store, partner_account(pid)) == 5
    assert await balance(store, GRANTS) == -5
    assert await store.read(lambda lg: lg.find_transfer("t1")) == written
    assert await store.read(lambda lg: lg.find_transfer("t2")) is None


async def test_a_transfer_key_is_used_once_and_a_repeat_is_a_storage_error(store: Store) -> None:
    pid = await store.write(raw_partner)
    account = partner_account(pid)
    await store.write(lambda lg: lg.add_transfer(raw_transfer("t1", GRANTS, account, 5)))
    before = await everything(store)

    with pytest.raises(StorageError):
        await store.write(lambda lg: lg.add_transfer(raw_transfer("t1", GRANTS, account, 7)))
    assert await everything(store) == before


@pytest.mark.parametrize(
    "bad",
    [
        raw_transfer("zero", GRANTS, "partner:1", 0),
        raw_transfer("self", GRANTS, GRANTS, 3),
        raw_transfer("nowhere", GRANTS, "partner:999", 3),
    ],
    ids=["no days", "to itself", "to an unknown account"],
)
async def test_a_malformed_transfer_is_a_storage_error(store: Store, bad: NewTransfer) -> None:
    await store.write(raw_partner)
    before = await everything(store)

    with pytest.raises(StorageError):
        await store.write(lambda lg: lg.add_transfer(bad))
    assert await everything(store) == before


async def test_transfers_are_listed_newest_first_and_page_backwards(
    billing: BillingService, store: Store
) -> None:
    acme, beta = await new_partner(billing, "Acme"), await new_partner(billing, "Beta")
    for days in range(1, 6):
        await grant(billing, acme, days)
        await grant(billing, beta, 100 + days)
    account = partner_account(acme)

    def page(before_id: int | None) -> Callable[[Ledger], list[int]]:
        return lambda lg: [
            t.days for t in lg.list_transfers(account, limit=2, before_id=before_id)
        ]

    first = await store.read(lambda lg: lg.list_transfers(account, limit=2))
    assert [t.days for t in first] == [5, 4]
    second = await store.read(
        lambda lg: lg.list_transfers(account, limit=2, before_id=first[-1].id)
    )
    assert [t.days for t in second] == [3, 2]
    assert await store.read(page(second[-1].id)) == [1]
    oldest = await store.read(lambda lg: lg.list_transfers(account, limit=5))
    assert await store.read(page(oldest[-1].id)) == []
    assert await billing.history(acme, limit=2) == first


async def test_a_partners_transfers_show_both_what_came_in_and_what_went_out(
    billing: BillingService, store: Store
) -> None:
    pid = await new_partner(billing)
    await grant(billing, pid, 10)
    await billing.create_channel(pid, "Shop", SUPPORT, fresh_key())
    await billing.allocate_days(pid, "Shop", 4, SUPPORT, fresh_key())

    listed = await store.read(lambda lg: lg.list_transfers(partner_account(pid), limit=10))

    assert [(t.kind, t.days) for t in listed] == [
        (TransferKind.ALLOCATION, 4), (TransferKind.GRANT, 10)
    ]
    assert listed[0].debit == partner_account(pid) and listed[1].credit == partner_account(pid)


@pytest.mark.parametrize(
    "kind", [TransferKind.ALLOCATION, TransferKind.RENEWAL, TransferKind.REMOVAL]
)
async def test_the_store_itself_refuses_a_transfer_that_would_overdraw_a_partner(
    billing: BillingService, store: Store, kind: TransferKind
) -> None:
    pid = await new_partner(billing)
    await grant(billing, pid, 5)
    shop = await billing.create_channel(pid, "Shop", SUPPORT, fresh_key())
    to = GRANTS if kind is TransferKind.REMOVAL else channel_account(shop.channel_id)
    before = await everything(store)

    def forgot_to_check(lg: Ledger) -> None:
        # A use case that skipped its balance check: the first 3 fit, the next 3 do not.
        lg.add_transfer(raw_transfer(fresh_key(), partner_account(pid), to, 3, kind))
        lg.add_transfer(raw_transfer(fresh_key(), partner_account(pid), to, 3, kind))

    with pytest.raises(StorageError):
        await store.write(forgot_to_check)
    assert await everything(store) == before


async def test_only_a_refund_may_take_a_partner_below_zero(store: Store) -> None:
    pid = await store.write(raw_partner)

    await store.write(lambda lg: lg.add_transfer(
        raw_transfer("r1", partner_account(pid), PURCHASES, 3, TransferKind.REFUND)
    ))

    assert await balance(store, partner_account(pid)) == -3


async def test_a_paid_order_cannot_be_credited_twice_even_by_hand(
    billing: BillingService, store: Store
) -> None:
    pid = await new_partner(billing)
    credited = await buy(billing, pid, 30)
    before = await everything(store)

    with pytest.raises(StorageError):
        await store.write(lambda lg: lg.add_transfer(raw_transfer(
            fresh_key(), PURCHASES, partner_account(pid), 30, TransferKind.PURCHASE,
            order_id=credited.order_id,
        )))
    assert await everything(store) == before


# transactions -----------------------------------------------------------------------


class Boom(Exception):
    pass


async def test_a_work_function_that_raises_leaves_no_trace(store: Store) -> None:
    pid = await store.write(raw_partner)
    before = await everything(store)

    def half_done(lg: Ledger) -> None:
        other = raw_partner(lg, "Ghost")
        channel = lg.add_channel(other, "Shop", START)
        lg.add_transfer(raw_transfer("g1", GRANTS, partner_account(other), 9))
        lg.add_transfer(raw_transfer("a1", partner_account(other), channel_account(channel.id), 4))
        lg.add_invite(other, Role.OWNER, "b" * 64, START, START + DAY, SUPPORT)
        lg.save_member(Member(100, other, Role.OWNER, START))
        lg.add_order(other, OrderKind.TOPUP, 30, 1000, "usd", START, SUPPORT)
        lg.save_outcome("op1", "DaysGranted", "{}", START)
        lg.record_event(START, SUPPORT, "test", other, "")
        partner = lg.get_partner(pid)
        assert partner is not None
        lg.update_partner(replace(partner, monthly_price=5))
        raise Boom

    with pytest.raises(Boom):
        await store.write(half_done)

    assert await everything(store) == before
    assert await store.read(lambda lg: lg.find_outcome("op1")) is None
    assert await store.read(lambda lg: lg.find_transfer("g1")) is None
    assert await store.read(lambda lg: lg.find_invite("b" * 64)) is None
    assert await store.read(lambda lg: lg.get_member(100)) is None
    assert await store.read(lambda lg: lg.list_orders()) == []


async def test_a_refusal_caught_inside_a_work_function_keeps_the_rest_of_it(
    store: Store,
) -> None:
    pid = await store.write(raw_partner)
    account = partner_account(pid)

    def carry_on(lg: Ledger) -> None:
        lg.add_transfer(raw_transfer("t1", GRANTS, account, 5))
        with pytest.raises(StorageError):
            lg.add_transfer(raw_transfer("t1", GRANTS, account, 7))
        lg.add_transfer(raw_transfer("t2", GRANTS, account, 2))

    await store.write(carry_on)

    assert await balance(store, account) == 7
