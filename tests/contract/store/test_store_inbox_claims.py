"""Store contract: claims on the inbox (webhook mode, bot/claims.py). The store alone
decides which instance handles which update: one sender's updates one at a time, in
update-id order; a claim lapses when its lease runs out; marking handled releases it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.inbox import InboxUpdate
from core.ports import Ledger, Store
from tests.conftest import START

LEASE = timedelta(seconds=10)
ANN, BOB = 501, 502


def update(update_id: int, sender: int | None) -> InboxUpdate:
    return InboxUpdate(update_id, f'{{"update_id": {update_id}}}', START, sender)


async def record(store: Store, *updates: InboxUpdate) -> None:
    await store.write(lambda lg: lg.add_updates(list(updates)))


async def claim_next(
    store: Store, sender: int, instance: str, at: timedelta = timedelta()
) -> int | None:
    now = START + at
    claimed = await store.write(
        lambda lg: lg.claim_next_update(sender, instance, now, now + LEASE)
    )
    return None if claimed is None else claimed.update_id


async def test_the_sender_is_recorded_and_read_back(store: Store) -> None:
    await record(store, update(10, ANN), update(11, None))

    pending = await store.read(lambda lg: lg.pending_updates())

    assert [(u.update_id, u.sender) for u in pending] == [(10, ANN), (11, None)]


async def test_a_sender_is_claimed_from_its_earliest_update_and_only_once(store: Store) -> None:
    await record(store, update(12, ANN), update(10, ANN), update(11, BOB))

    assert await claim_next(store, ANN, "a") == 10
    # While 10 is claimed, nobody (not even its holder) gets another of Ann's updates.
    assert await claim_next(store, ANN, "b") is None
    assert await claim_next(store, ANN, "a") is None
    assert await claim_next(store, BOB, "b") == 11  # another sender is independent


async def test_marking_handled_releases_the_claim_so_the_next_goes_in_order(store: Store) -> None:
    await record(store, update(10, ANN), update(11, ANN), update(12, ANN))
    assert await claim_next(store, ANN, "a") == 10

    def finish_and_claim(lg: Ledger) -> int | None:
        lg.mark_updates_handled([10], START)
        claimed = lg.claim_next_update(ANN, "a", START, START + LEASE)
        return None if claimed is None else claimed.update_id

    assert await store.write(finish_and_claim) == 11
    assert await claim_next(store, ANN, "b") is None
    pending = await store.read(lambda lg: lg.pending_updates())
    assert [u.update_id for u in pending] == [11, 12]


async def test_an_update_recorded_while_its_sender_is_held_waits_for_the_holder(
    store: Store,
) -> None:
    """Instance b records 11 while a handles 10: b's claim fails, and a's "mark handled
    and claim next" transaction, whichever runs first, finds 11."""
    await record(store, update(10, ANN))
    assert await claim_next(store, ANN, "a") == 10
    await record(store, update(11, ANN))
    assert await claim_next(store, ANN, "b") is None

    def finish_and_claim(lg: Ledger) -> int | None:
        lg.mark_updates_handled([10], START)
        claimed = lg.claim_next_update(ANN, "a", START, START + LEASE)
        return None if claimed is None else claimed.update_id

    assert await store.write(finish_and_claim) == 11


async def test_a_lapsed_claim_lets_another_instance_take_the_earliest_update(
    store: Store,
) -> None:
    await record(store, update(10, ANN), update(11, ANN))
    assert await claim_next(store, ANN, "dead") == 10

    assert await claim_next(store, ANN, "b", at=LEASE - timedelta(microseconds=1)) is None
    assert await claim_next(store, ANN, "b", at=LEASE) == 10  # again from the earliest


async def test_renewing_keeps_a_claim_alive_past_its_first_lease(store: Store) -> None:
    await record(store, update(10, ANN))
    assert await claim_next(store, ANN, "a") == 10

    renewed = await store.write(lambda lg: lg.renew_claims("a", START + 2 * LEASE))
    assert await store.write(lambda lg: lg.renew_claims("b", START + 5 * LEASE)) == 0

    assert renewed == 1
    assert await claim_next(store, ANN, "b", at=LEASE + LEASE / 2) is None
    assert await claim_next(store, ANN, "b", at=2 * LEASE) == 10


async def test_released_claims_are_free_at_once(store: Store) -> None:
    await record(store, update(10, ANN), update(11, BOB))
    assert await claim_next(store, ANN, "a") == 10
    assert await claim_next(store, BOB, "b") == 11

    released = await store.write(lambda lg: lg.release_claims("a"))

    assert released == 1
    assert await claim_next(store, ANN, "c") == 10
    assert await claim_next(store, BOB, "c") is None  # b's claim is untouched


async def test_an_update_without_a_sender_is_claimed_on_its_own(store: Store) -> None:
    await record(store, update(10, None), update(11, None))

    first = await store.write(lambda lg: lg.claim_update(10, "a", START, START + LEASE))
    again = await store.write(lambda lg: lg.claim_update(10, "b", START, START + LEASE))
    other = await store.write(lambda lg: lg.claim_update(11, "b", START, START + LEASE))
    await store.write(lambda lg: lg.mark_updates_handled([11], START))
    handled = await store.write(lambda lg: lg.claim_update(11, "c", START, START + LEASE))
    unknown = await store.write(lambda lg: lg.claim_update(99, "c", START, START + LEASE))

    assert first is not None and first.update_id == 10
    assert again is None and handled is None and unknown is None
    assert other is not None and other.update_id == 11


async def test_the_sweep_claims_each_free_sender_once_and_leaves_held_ones(
    store: Store,
) -> None:
    await record(
        store,
        update(10, ANN), update(11, ANN),  # Ann: nobody holds her
        update(12, BOB), update(13, BOB),  # Bob: held live by "a"
        update(14, None), update(15, None),  # no sender: each on its own
        update(16, 503),
    )
    assert await claim_next(store, BOB, "a") == 12
    await store.write(lambda lg: lg.mark_updates_handled([16], START))

    def sweep(lg: Ledger) -> list[int]:
        return [u.update_id for u in lg.claim_orphans("s", START, START + LEASE, 100)]

    assert await store.write(sweep) == [10, 14, 15]
    assert await store.write(sweep) == []  # all claimed now
    limited = await store.write(
        lambda lg: lg.claim_orphans("t", START + LEASE, START + 2 * LEASE, 2)
    )
    assert [u.update_id for u in limited] == [10, 12]  # every lease ran out; at most 2


async def test_a_failed_claim_transaction_claims_nothing(store: Store) -> None:
    await record(store, update(10, ANN))

    def claim_then_fail(lg: Ledger) -> None:
        lg.claim_next_update(ANN, "a", START, START + LEASE)
        raise RuntimeError("the handler's transaction failed")

    with pytest.raises(RuntimeError):
        await store.write(claim_then_fail)
    assert await claim_next(store, ANN, "b") == 10
