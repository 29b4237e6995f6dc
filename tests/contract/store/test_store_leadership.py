"""Store contract: the leader epoch, the fence between a leader and the one before it
(partnerbot/cluster.py): deliveries are claimed only under the current epoch."""

from __future__ import annotations

from core.model import Member, Role
from core.ports import Store
from tests.conftest import START
from tests.contract.store.helpers import raw_partner, save_members


async def queued(store: Store) -> None:
    pid = await store.write(raw_partner)
    await store.write(lambda lg: save_members(lg, [Member(100, pid, Role.MEMBER, START)]))
    await store.write(lambda lg: lg.add_notice("n1", pid, "k", "{}", START))


async def test_each_leader_takes_the_next_epoch(store: Store) -> None:
    first = await store.write(lambda lg: lg.begin_leadership(START))
    second = await store.write(lambda lg: lg.begin_leadership(START))
    assert second == first + 1


async def test_the_current_leader_claims_new_and_due_deliveries(store: Store) -> None:
    await queued(store)
    epoch = await store.write(lambda lg: lg.begin_leadership(START))

    claimed = await store.write(lambda lg: lg.claim_deliveries(epoch, [7], START, 10))

    assert claimed is not None
    assert [(d.notice.key, d.user_id) for d in claimed] == [("n1", 100)]


async def test_a_deposed_leader_claims_nothing_and_writes_nothing(store: Store) -> None:
    await queued(store)
    old = await store.write(lambda lg: lg.begin_leadership(START))
    new = await store.write(lambda lg: lg.begin_leadership(START))

    late = await store.write(lambda lg: lg.claim_deliveries(old, [7], START, 10))

    assert late is None
    # Not even expanded: the notice waits, whole, for the current leader.
    assert await store.read(lambda lg: lg.due_deliveries(START, 10)) == []
    current = await store.write(lambda lg: lg.claim_deliveries(new, [7], START, 10))
    assert current is not None and [d.user_id for d in current] == [100]


async def test_without_a_fence_and_with_no_room_a_claim_only_expands(store: Store) -> None:
    await queued(store)
    await store.write(lambda lg: lg.begin_leadership(START))

    paused = await store.write(lambda lg: lg.claim_deliveries(None, [7], START, 0))

    assert paused == []
    [due] = await store.read(lambda lg: lg.due_deliveries(START, 10))
    assert due.user_id == 100
