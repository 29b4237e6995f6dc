"""Auto-renew (rule 9): 30 days from the balance once, per-partner batches, the channels
the balance cannot renew; killed half-way and run at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from core import channels, notices, sweeps
from core.days import DAY
from core.model import ChannelBilling
from storage.sqlite import SqliteStore
from tests.integration.sweeps.harness import ACTOR, T0, Book, Killed, ReadFirst, die_on_call

# ---------------------------------------------------------------------- auto-renew (rule 9)


async def test_auto_renew_extends_by_30_days_from_the_balance_once(book: Book) -> None:
    pid = await book.partner("Acme", members=(101,))
    await book.channel(pid, "shop", 2, auto_renew=True)
    await book.channel(pid, "manual", 1)
    await book.grant(pid, 100)

    early = await sweeps.sweep_renew(book.store, book.clock)
    book.clock.set(T0 + DAY)  # 24 h before the end of "shop"
    due = await sweeps.sweep_renew(book.store, book.clock)
    again = await sweeps.sweep_renew(book.store, book.clock)

    assert (early.acted, due.acted, again.acted) == (0, 1, 0)
    chans = await book.channels_of(pid)
    assert chans["shop"].active_until == T0 + 32 * DAY  # from its end, not from now
    assert chans["manual"].active_until == T0 + DAY
    assert await book.balance(pid) == 70
    [renewed] = await book.sent(notices.RENEWED)
    assert (renewed.partner_id, renewed.notice) == (pid, notices.ChannelsRenewed(
        1, (notices.ListedChannel("shop", T0 + 32 * DAY, True),)
    ))
    await book.verify()


async def test_one_alert_lists_the_channels_the_balance_cannot_renew(book: Book) -> None:
    pid = await book.partner("Acme", members=(101,))
    for name, days in (("a", 1), ("b", 1), ("c", 1)):
        await book.channel(pid, name, days, auto_renew=True)
    await book.grant(pid, 40)

    first = await sweeps.sweep_renew(book.store, book.clock)
    book.clock.advance(timedelta(hours=1))
    again = await sweeps.sweep_renew(book.store, book.clock)  # same day: no new alert

    assert (first.looked_at, first.acted, again.acted) == (3, 1, 0)
    assert await book.balance(pid) == 10
    [short] = await book.sent(notices.RENEW_SHORT)
    assert (short.facts["count"], short.facts["needed"], short.facts["balance"]) == (2, 60, 10)
    assert isinstance(short.notice, notices.RenewFellShort)
    assert short.notice.channels == tuple(
        notices.ListedChannel(name, T0 + DAY, True) for name in ("b", "c")
    )


async def test_a_partner_is_never_split_over_two_renew_batches(
    book: Book, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweeps, "RENEW_BATCH", 2)
    rich = await book.partner("Rich", members=(101,))
    poor = await book.partner("Poor", members=(102,))
    await book.channel(rich, "r1", 1, auto_renew=True)
    for name in ("p1", "p2", "p3", "p4"):
        await book.channel(poor, name, 1, auto_renew=True)
    await book.grant(rich, 30)

    result = await sweeps.sweep_renew(book.store, book.clock)

    assert (result.looked_at, result.acted) == (5, 1)
    [short] = await book.sent(notices.RENEW_SHORT)
    assert isinstance(short.notice, notices.RenewFellShort)
    assert (short.partner_id, short.facts["count"], [c.name for c in short.notice.channels]) == (
        poor, 4, ["p1", "p2", "p3", "p4"]
    )


async def test_a_renew_run_killed_half_way_and_run_again_renews_each_channel_once(
    book: Book, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweeps, "RENEW_BATCH", 2)
    pids = [await book.partner(f"P{i}", members=(100 + i,)) for i in range(3)]
    for pid in pids:
        await book.channel(pid, f"x-{pid}", 1, auto_renew=True)
        await book.channel(pid, f"y-{pid}", 1, auto_renew=True)
        await book.grant(pid, 60)
    # Batches: P0's two channels, P1's, P2's. Die in the middle of the second.
    monkeypatch.setattr(sweeps.channels, "renew_channel", die_on_call(4, channels.renew_channel))
    with pytest.raises(Killed):
        await sweeps.sweep_renew(book.store, book.clock)
    assert [await book.balance(p) for p in pids] == [0, 60, 60]  # batch 2 rolled back
    monkeypatch.setattr(sweeps.channels, "renew_channel", channels.renew_channel)

    rerun = await sweeps.sweep_renew(book.store, book.clock)
    third = await sweeps.sweep_renew(book.store, book.clock)

    assert (rerun.looked_at, rerun.acted, third.looked_at) == (4, 4, 0)
    assert [await book.balance(p) for p in pids] == [0, 0, 0]
    for pid in pids:
        assert {c.active_until for c in (await book.channels_of(pid)).values()} == {
            T0 + 31 * DAY
        }
    assert await book.count("SELECT count(*) FROM transfers WHERE kind = 'renewal'") == 6
    assert sorted(n.partner_id or 0 for n in await book.sent(notices.RENEWED)) == pids
    await book.verify()


async def test_renew_sweeps_at_once_renew_each_channel_once(
    book: Book, second: SqliteStore
) -> None:
    pids = [await book.partner(f"P{i}", members=(100 + i,)) for i in range(3)]
    for pid in pids:
        await book.channel(pid, f"x-{pid}", 1, auto_renew=True)
        await book.channel(pid, f"y-{pid}", 1, auto_renew=True)
        await book.grant(pid, 200)

    gate = ReadFirst(3)  # all three read the same six channels as due

    results = await asyncio.gather(
        sweeps.sweep_renew(gate(book.store), book.clock),
        sweeps.sweep_renew(gate(book.store), book.clock),
        sweeps.sweep_renew(gate(second), book.clock),
    )

    assert [r.looked_at for r in results] == [6, 6, 6]
    assert sum(r.acted for r in results) == 6
    assert await book.count("SELECT count(*) FROM transfers WHERE kind = 'renewal'") == 6
    assert [await book.balance(p) for p in pids] == [140, 140, 140]
    for pid in pids:
        assert {c.active_until for c in (await book.channels_of(pid)).values()} == {
            T0 + 31 * DAY
        }
    assert len(await book.sent(notices.RENEWED)) == 3
    await book.verify()


async def test_deleted_subscription_and_manual_channels_are_not_renewed(book: Book) -> None:
    pid = await book.partner("Acme", days=500, members=(101,))
    gone = await book.channel(pid, "gone", 1, auto_renew=True)
    await book.billing.delete_channel(pid, gone, ACTOR, "del")
    await book.channel(pid, "manual", 1)
    sub = await book.channel(pid, "sub", 1, auto_renew=True)
    await book.store.write(lambda lg: lg.update_channel(replace(
        lg.get_channel(sub), subscription_ref="sub_1",  # type: ignore[type-var]
        billing=ChannelBilling.SUBSCRIPTION,
    )))

    result = await sweeps.sweep_renew(book.store, book.clock)

    assert (result.looked_at, result.acted) == (0, 0)
    assert await book.count("SELECT count(*) FROM transfers WHERE kind = 'renewal'") == 0
