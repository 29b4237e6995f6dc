"""A channel's life through core.channels: created, given days (rule 4), renewed from the
balance (rule 9), paid by a subscription (rule 10), switched, deleted (rule 5).

What each step leaves is read back from the store: balances, the channel row, the
transfers and the audit trail. Expected values are written out by hand.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from core.channels import (
    allocate_days,
    channel_by_id,
    create_channel,
    credit_subscription_period,
    delete_channel,
    deletion_preview,
    find_channel,
    renew_channel,
    set_auto_renew,
)
from core.errors import (
    ChannelChanged,
    ChannelNameTaken,
    ChannelNotFound,
    InsufficientBalance,
    InvalidInput,
)
from core.model import CONSUMED, SUBSCRIPTIONS, TransferKind, channel_account
from core.outcomes import (
    ChannelCreated,
    ChannelDeleted,
    ChannelRenewed,
    DaysAllocated,
    SubscriptionPeriodPaid,
)
from storage.memory import MemoryStore
from tests.unit.book import T0, Book, Event

DAY = timedelta(days=1)


@pytest.fixture
async def book(memory_store: MemoryStore) -> Book:
    return await Book(memory_store).start()


async def _channel(book: Book, name: str = "shop", key: str = "c1") -> int:
    made = await book.run(lambda lg: create_channel(lg, T0, book.partner_id, name, "user:1", key))
    return made.channel_id


async def _allocate(book: Book, days: int, name: str = "shop", key: str = "a1",
                    at: datetime = T0) -> DaysAllocated:
    return await book.run(lambda lg: allocate_days(
        lg, at, book.partner_id, name, days, "user:1", key
    ))


# --- creating and finding ----------------------------------------------------------------


async def test_a_channel_is_created_under_its_cleaned_name_and_logged(book: Book) -> None:
    made = await book.run(lambda lg: create_channel(
        lg, T0, book.partner_id, "  main   shop ", "user:1", "c1"
    ))
    assert made == ChannelCreated(book.partner_id, 1, "main shop", T0)
    assert book.events == [Event("user:1", "channel.created", book.partner_id, "channel=1")]
    found = await book.read(lambda lg: find_channel(lg, book.partner_id, " main  shop"))
    assert (found.id, found.name, found.active_until) == (1, "main shop", None)


async def test_a_second_live_channel_of_the_same_name_is_refused(book: Book) -> None:
    await _channel(book, "shop")
    with pytest.raises(ChannelNameTaken) as caught:
        await _channel(book, " shop ", key="c2")
    assert caught.value.name == "shop"


async def test_another_partners_channel_reads_as_absent(
    book: Book, memory_store: MemoryStore
) -> None:
    other = await Book(memory_store).start("Globex")
    theirs = await _channel(other, "shop")
    with pytest.raises(ChannelNotFound) as caught:
        await book.read(lambda lg: channel_by_id(lg, book.partner_id, theirs))
    assert caught.value.name == str(theirs)
    with pytest.raises(ChannelNotFound) as caught:
        await book.read(lambda lg: find_channel(lg, book.partner_id, "shop"))
    assert caught.value.name == "shop"
    mine = await book.read(lambda lg: channel_by_id(lg, other.partner_id, theirs))
    assert mine.id == theirs


# --- allocation (rule 4) -----------------------------------------------------------------


async def test_allocating_the_whole_balance_is_allowed_and_a_day_more_is_not(book: Book) -> None:
    await book.grant(30)
    cid = await _channel(book)
    with pytest.raises(InsufficientBalance) as caught:
        await _allocate(book, 31)
    assert (caught.value.needed, caught.value.available) == (31, 30)
    done = await _allocate(book, 30)
    assert done == DaysAllocated(book.partner_id, cid, "shop", 30, 0, T0 + 30 * DAY, 2)
    assert await book.balance() == 0
    assert await book.balance(channel_account(cid)) == 30
    assert (await book.channel(cid)).active_until == T0 + 30 * DAY


async def test_allocating_again_extends_from_the_current_end(book: Book) -> None:
    await book.grant(50)
    cid = await _channel(book)
    await _allocate(book, 20, key="a1")
    done = await _allocate(book, 10, key="a2", at=T0 + 5 * DAY)
    assert (done.balance, done.active_until) == (20, T0 + 30 * DAY)
    assert (await book.channel(cid)).active_until == T0 + 30 * DAY


# --- deletion (rule 5) ---------------------------------------------------------------------


async def test_deleting_returns_the_whole_unused_days_and_consumes_the_rest(book: Book) -> None:
    await book.grant(30)
    cid = await _channel(book)
    await _allocate(book, 30)
    at = T0 + 10 * DAY + timedelta(hours=1)  # 10 days and an hour used: 19 whole days left
    preview = await book.read(lambda lg: deletion_preview(lg, at, book.partner_id, "shop"))
    assert (preview[0].id, preview[1]) == (cid, 19)
    done = await book.run(lambda lg: delete_channel(lg, at, book.partner_id, cid, "user:1", "d1"))
    assert done == ChannelDeleted(book.partner_id, cid, "shop", 19, 11, 19, at)
    assert await book.balance() == 19
    assert await book.balance(CONSUMED) == 11
    assert await book.balance(channel_account(cid)) == 0
    gone = await book.channel(cid)
    assert (gone.deleted_at, gone.auto_renew, gone.live) == (at, False, False)
    kinds = await book.read(lambda lg: [
        (t.kind, t.days, t.key) for t in lg.list_transfers(channel_account(cid), limit=9)
    ])
    assert kinds == [
        (TransferKind.CONSUMPTION, 11, "d1/consumed"),
        (TransferKind.RETURN, 19, "d1/return"),
        (TransferKind.ALLOCATION, 30, "a1"),
    ]
    assert book.events[-1] == Event("user:1", "channel.deleted", book.partner_id, "channel=1")


async def test_deleting_an_expired_channel_returns_nothing_and_consumes_all(book: Book) -> None:
    await book.grant(5)
    cid = await _channel(book)
    await _allocate(book, 5)
    at = T0 + 6 * DAY
    done = await book.run(lambda lg: delete_channel(lg, at, book.partner_id, cid, "user:1", "d1"))
    assert (done.returned_days, done.consumed_days, done.balance) == (0, 5, 0)
    keys = await book.read(lambda lg: [
        t.key for t in lg.list_transfers(channel_account(cid), limit=9)
    ])
    assert keys == ["d1/consumed", "a1"]


async def test_deleting_a_channel_at_the_instant_of_allocation_returns_everything(
    book: Book,
) -> None:
    await book.grant(7)
    cid = await _channel(book)
    await _allocate(book, 7)
    done = await book.run(lambda lg: delete_channel(lg, T0, book.partner_id, cid, "user:1", "d1"))
    assert (done.returned_days, done.consumed_days, done.balance) == (7, 0, 7)
    assert await book.balance(CONSUMED) == 0
    keys = await book.read(lambda lg: [
        t.key for t in lg.list_transfers(channel_account(cid), limit=9)
    ])
    assert keys == ["d1/return", "a1"]


async def test_deleting_a_channel_that_never_had_days_moves_nothing(book: Book) -> None:
    cid = await _channel(book)
    done = await book.run(lambda lg: delete_channel(lg, T0, book.partner_id, cid, "user:1", "d1"))
    assert (done.returned_days, done.consumed_days, done.balance) == (0, 0, 0)
    assert await book.read(lambda lg: lg.list_transfers(channel_account(cid), limit=9)) == []


async def test_a_deletion_confirmed_against_an_old_end_is_refused(book: Book) -> None:
    await book.grant(20)
    cid = await _channel(book)
    await _allocate(book, 10, key="a1")
    shown = (await book.channel(cid)).active_until
    await _allocate(book, 10, key="a2")  # the channel changed after the partner looked
    with pytest.raises(ChannelChanged) as changed:
        await book.run(lambda lg: delete_channel(
            lg, T0, book.partner_id, cid, "user:1", "d1",
            expected_until=shown, check_expected=True,
        ))
    assert changed.value.name == "shop"
    assert (await book.channel(cid)).live
    done = await book.run(lambda lg: delete_channel(
        lg, T0, book.partner_id, cid, "user:1", "d2",
        expected_until=T0 + 20 * DAY, check_expected=True,
    ))
    assert done.returned_days == 20


async def test_a_deleted_channel_cannot_be_deleted_again(book: Book) -> None:
    cid = await _channel(book)
    await book.run(lambda lg: delete_channel(lg, T0, book.partner_id, cid, "user:1", "d1"))
    with pytest.raises(ChannelNotFound) as caught:
        await book.run(lambda lg: delete_channel(lg, T0, book.partner_id, cid, "user:1", "d2"))
    assert caught.value.name == "shop"


async def test_a_deleted_channel_no_longer_renews_itself(book: Book) -> None:
    await book.grant(30)
    cid = await _channel(book)
    await book.run(lambda lg: set_auto_renew(lg, T0, book.partner_id, "shop", True, "user:1"))
    await book.run(lambda lg: delete_channel(lg, T0, book.partner_id, cid, "user:1", "d1"))
    assert (await book.channel(cid)).auto_renew is False


async def test_deleting_after_half_a_day_of_two_returns_one_and_consumes_one(
    book: Book,
) -> None:
    await book.grant(2)
    cid = await _channel(book)
    await _allocate(book, 2)
    at = T0 + timedelta(hours=12)
    done = await book.run(lambda lg: delete_channel(lg, at, book.partner_id, cid, "user:1", "d1"))
    assert (done.returned_days, done.consumed_days, done.balance) == (1, 1, 1)
    assert await book.balance(CONSUMED) == 1
    assert await book.balance(channel_account(cid)) == 0


async def test_deleting_never_returns_more_days_than_the_channel_holds(book: Book) -> None:
    """A row whose end was moved by hand claims days the ledger never gave it."""
    cid = await _channel(book)
    channel = await book.channel(cid)
    await book.run(lambda lg: lg.update_channel(replace(channel, active_until=T0 + 5 * DAY)))
    done = await book.run(lambda lg: delete_channel(lg, T0, book.partner_id, cid, "user:1", "d1"))
    assert (done.returned_days, done.consumed_days, done.balance) == (0, 0, 0)
    assert await book.balance(channel_account(cid)) == 0


# --- auto-renew (rule 9) -----------------------------------------------------------------


async def test_switching_auto_renew_is_logged_only_when_it_changes(book: Book) -> None:
    cid = await _channel(book)
    book.events.clear()
    on = await book.run(lambda lg: set_auto_renew(lg, T0, book.partner_id, "shop", True, "user:1"))
    assert on.auto_renew is True
    assert (await book.channel(cid)).auto_renew is True
    await book.run(lambda lg: set_auto_renew(lg, T0, book.partner_id, "shop", True, "user:1"))
    off = await book.run(lambda lg: set_auto_renew(lg, T0, book.partner_id, "shop", False, "u:2"))
    assert off.auto_renew is False
    assert (await book.channel(cid)).auto_renew is False
    assert book.events == [
        Event("user:1", "channel.auto_renew", book.partner_id, "channel=1 on=true"),
        Event("u:2", "channel.auto_renew", book.partner_id, "channel=1 on=false"),
    ]


async def test_a_renewal_extends_the_channel_from_its_end_by_thirty_days(book: Book) -> None:
    await book.grant(40)
    cid = await _channel(book)
    await _allocate(book, 10)
    at = T0 + 9 * DAY
    done = await book.run(lambda lg: renew_channel(lg, at, cid, "scheduler:renew"))
    assert done == ChannelRenewed(book.partner_id, cid, "shop", 30, 0, T0 + 40 * DAY, 3)
    assert await book.balance() == 0
    assert await book.balance(channel_account(cid)) == 40
    assert (await book.channel(cid)).active_until == T0 + 40 * DAY
    [renewal] = await book.read(lambda lg: lg.list_transfers(channel_account(cid), limit=1))
    assert (renewal.kind, renewal.days, renewal.actor) == (
        TransferKind.RENEWAL, 30, "scheduler:renew"
    )
    assert renewal.key == "renew:1:2030-01-24T09:30:00+00:00"


async def test_each_renewal_extends_from_the_end_the_last_one_left(book: Book) -> None:
    await book.grant(100)
    cid = await _channel(book)
    await _allocate(book, 10)
    first = await book.run(lambda lg: renew_channel(lg, T0 + 9 * DAY, cid, "scheduler:renew"))
    nxt = await book.run(lambda lg: renew_channel(lg, T0 + 39 * DAY, cid, "scheduler:renew"))
    assert first.active_until == T0 + 40 * DAY
    assert (nxt.replayed, nxt.active_until, nxt.balance) == (False, T0 + 70 * DAY, 30)
    assert await book.balance() == 30
    keys = await book.read(lambda lg: [
        t.key for t in lg.list_transfers(channel_account(cid), limit=2)
    ])
    assert keys == ["renew:1:2030-02-23T09:30:00+00:00", "renew:1:2030-01-24T09:30:00+00:00"]


async def test_a_renewal_that_raced_another_for_the_same_end_is_made_once(book: Book) -> None:
    """Two sweeps read the channel at the same end; the second to write replays the first."""
    await book.grant(100)
    cid = await _channel(book)
    await _allocate(book, 10)
    seen = await book.channel(cid)
    first = await book.run(lambda lg: renew_channel(lg, T0 + 9 * DAY, cid, "scheduler:renew"))
    # The second sweep still holds the row as it was before the first one wrote.
    await book.run(lambda lg: lg.update_channel(seen))
    again = await book.run(lambda lg: renew_channel(lg, T0 + 9 * DAY, cid, "scheduler:renew"))
    assert again == replace(first, replayed=True)
    assert await book.balance() == 60


async def test_a_renewal_of_exactly_the_balance_goes_through_and_a_day_more_does_not(
    book: Book,
) -> None:
    await book.grant(12)
    cid = await _channel(book)
    await _allocate(book, 2)
    with pytest.raises(InsufficientBalance) as caught:
        await book.run(lambda lg: renew_channel(lg, T0, cid, "scheduler:renew", days=11))
    assert (caught.value.needed, caught.value.available) == (11, 10)
    done = await book.run(lambda lg: renew_channel(lg, T0, cid, "scheduler:renew", days=10))
    assert (done.days, done.balance, done.active_until) == (10, 0, T0 + 12 * DAY)


async def test_a_channel_that_never_had_days_renews_from_now(book: Book) -> None:
    await book.grant(30)
    cid = await _channel(book)
    done = await book.run(lambda lg: renew_channel(lg, T0, cid, "scheduler:renew"))
    assert done.active_until == T0 + 30 * DAY
    [renewal] = await book.read(lambda lg: lg.list_transfers(channel_account(cid), limit=1))
    assert renewal.key == "renew:1:none"


async def test_a_deleted_or_missing_channel_is_not_renewed(book: Book) -> None:
    await book.grant(30)
    cid = await _channel(book)
    await book.run(lambda lg: delete_channel(lg, T0, book.partner_id, cid, "user:1", "d1"))
    for missing in (cid, 99):
        with pytest.raises(ChannelNotFound) as caught:
            await book.run(lambda lg, c=missing: renew_channel(lg, T0, c, "scheduler:renew"))
        assert caught.value.name == str(missing)
    assert await book.balance() == 30


# --- subscription periods (rule 10) ---------------------------------------------------------


async def test_a_paid_period_extends_the_channel_not_the_balance_once(book: Book) -> None:
    cid = await _channel(book)
    await book.grant(5)
    await _allocate(book, 5)
    paid = await book.run(lambda lg: credit_subscription_period(
        lg, T0 + DAY, cid, 30, "in_1", "stripe:evt"
    ))
    assert paid == SubscriptionPeriodPaid(book.partner_id, cid, "shop", 30, T0 + 35 * DAY, 3)
    assert await book.balance() == 0
    assert await book.balance(SUBSCRIPTIONS) == -30
    assert await book.balance(channel_account(cid)) == 35
    assert (await book.channel(cid)).active_until == T0 + 35 * DAY
    again = await book.run(lambda lg: credit_subscription_period(
        lg, T0 + 2 * DAY, cid, 30, "in_1", "stripe:evt"
    ))
    assert (again.replayed, again.active_until) == (True, T0 + 35 * DAY)
    [period] = await book.read(lambda lg: lg.list_transfers(channel_account(cid), limit=1))
    assert (period.kind, period.key, period.reason) == (
        TransferKind.SUBSCRIPTION, "subscription-period:in_1", "in_1"
    )


async def test_a_period_for_a_missing_channel_or_of_no_days_is_refused(book: Book) -> None:
    cid = await _channel(book)
    with pytest.raises(ChannelNotFound) as caught:
        await book.run(lambda lg: credit_subscription_period(lg, T0, 99, 30, "in_1", "s:e"))
    assert caught.value.name == "99"
    with pytest.raises(InvalidInput):
        await book.run(lambda lg: credit_subscription_period(lg, T0, cid, 0, "in_2", "s:e"))
    assert await book.balance(SUBSCRIPTIONS) == 0
