"""Store contract: the update inbox (core/inbox.py), recorded once, replayed in order."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.errors import StorageError
from core.inbox import InboxUpdate
from core.ports import Ledger, Store
from tests.conftest import START


def update(update_id: int, text: str = "/balance") -> InboxUpdate:
    return InboxUpdate(update_id, f'{{"update_id": {update_id}, "text": "{text}"}}', START)


async def test_a_batch_is_recorded_and_pending_in_update_id_order(store: Store) -> None:
    batch = [update(12), update(10), update(11, "/allocate shop 3")]

    new = await store.write(lambda lg: lg.add_updates(batch))

    assert sorted(new) == [10, 11, 12]
    pending = await store.read(lambda lg: lg.pending_updates())
    assert pending == sorted(batch, key=lambda u: u.update_id)


async def test_a_redelivered_update_is_recorded_once_and_keeps_its_first_payload(
    store: Store,
) -> None:
    await store.write(lambda lg: lg.add_updates([update(10), update(11)]))

    new = await store.write(lambda lg: lg.add_updates([update(11, "again"), update(12)]))

    assert new == [12]
    pending = await store.read(lambda lg: lg.pending_updates())
    assert [u.update_id for u in pending] == [10, 11, 12]
    assert pending[1] == update(11)


async def test_handled_updates_are_not_pending_and_not_new_again(store: Store) -> None:
    await store.write(lambda lg: lg.add_updates([update(10), update(11)]))

    await store.write(lambda lg: lg.mark_updates_handled([10, 99], START))

    assert [u.update_id for u in await store.read(lambda lg: lg.pending_updates())] == [11]
    assert await store.write(lambda lg: lg.add_updates([update(10)])) == []
    assert [u.update_id for u in await store.read(lambda lg: lg.pending_updates())] == [11]


async def test_marking_again_keeps_the_first_handled_time(store: Store) -> None:
    await store.write(lambda lg: lg.add_updates([update(10)]))
    await store.write(lambda lg: lg.mark_updates_handled([10], START))
    await store.write(lambda lg: lg.mark_updates_handled([10], START + timedelta(days=2)))

    # Handled at START, so a prune at START + 1 day forgets it.
    assert await store.write(lambda lg: lg.prune_updates(START + timedelta(days=1))) == 1


async def test_pruning_forgets_only_updates_handled_before_the_limit(store: Store) -> None:
    await store.write(lambda lg: lg.add_updates([update(10), update(11), update(12)]))
    await store.write(lambda lg: lg.mark_updates_handled([10], START))
    await store.write(lambda lg: lg.mark_updates_handled([11], START + timedelta(hours=30)))

    pruned = await store.write(lambda lg: lg.prune_updates(START + timedelta(days=1)))

    assert pruned == 1
    # 10 is forgotten (Telegram never sends an update again a day later); 11 still
    # dedupes; 12, never handled, is still pending.
    assert await store.write(lambda lg: lg.add_updates([update(11)])) == []
    assert [u.update_id for u in await store.read(lambda lg: lg.pending_updates())] == [12]


async def test_a_failed_transaction_records_nothing(store: Store) -> None:
    def record_then_fail(lg: Ledger) -> None:
        lg.add_updates([update(10)])
        raise StorageError("database: disk full")

    with pytest.raises(StorageError):
        await store.write(record_then_fail)

    assert await store.read(lambda lg: lg.pending_updates()) == []
