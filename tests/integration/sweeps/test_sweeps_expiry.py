"""Expiry warnings (rule 8) at their stage boundaries, across DST, one message per partner
and stage; killed half-way and run at once.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from bot.notices import render
from core import channels, notices, sweeps
from core.days import DAY
from core.model import Notice
from storage.sqlite import SqliteStore
from tests.integration.sweeps.harness import ACTOR, BERLIN, T0, Book, Killed, die_on_call

# ------------------------------------------------------------------------ expiry (rule 8)


async def test_expiry_warnings_come_3_days_and_1_day_before_and_on_expiry_once_each(
    book: Book,
) -> None:
    pid = await book.partner("Acme", members=(101,))
    await book.channel(pid, "shop", 10)
    until = T0 + 10 * DAY
    seen: list[tuple[timedelta, list[int]]] = []
    for before in (
        3 * DAY + timedelta(seconds=1), 3 * DAY, 2 * DAY, DAY + timedelta(seconds=1), DAY,
        timedelta(hours=1), timedelta(0), -DAY, -8 * DAY,
    ):
        book.clock.set(until - before)
        await sweeps.sweep_expiry(book.store, book.clock)
        await sweeps.sweep_expiry(book.store, book.clock)  # a re-run changes nothing
        seen.append((before, [n.facts["stage"] for n in await book.sent(notices.EXPIRY)]))

    assert [stages for _, stages in seen] == [
        [], [3], [3], [3], [3, 1], [3, 1], [3, 1, 0], [3, 1, 0], [3, 1, 0]
    ]
    warned = await book.store.execute_raw("SELECT stage FROM expiry_warnings ORDER BY stage")
    assert warned == [(0,), (1,), (3,)]


async def test_expiry_stages_are_whole_days_of_time_across_a_dst_change(book: Book) -> None:
    # Berlin moves its clocks on 2030-03-31; the channel ends at 12:00 CEST that day.
    # Three days before is 72 hours before: 11:00 CET on the 28th, not 12:00.
    pid = await book.partner("Acme", members=(101,))
    book.clock.set(datetime(2030, 3, 21, 10, 0, tzinfo=UTC))
    await book.channel(pid, "shop", 10)
    until = datetime(2030, 3, 31, 12, 0, tzinfo=BERLIN)
    assert (await book.channels_of(pid))["shop"].active_until == until

    book.clock.set(datetime(2030, 3, 28, 10, 59, 59, tzinfo=BERLIN))
    early = await sweeps.sweep_expiry(book.store, book.clock)
    book.clock.set(datetime(2030, 3, 28, 11, 0, tzinfo=BERLIN))
    on_time = await sweeps.sweep_expiry(book.store, book.clock)
    book.clock.set(datetime(2030, 3, 30, 12, 0, tzinfo=BERLIN))  # 24 h before
    one_day = await sweeps.sweep_expiry(book.store, book.clock)

    assert (early.acted, on_time.acted, one_day.acted) == (0, 1, 1)
    three, one = await book.sent(notices.EXPIRY)
    text = render(Notice(1, three.key, pid, three.kind, json.dumps(three.facts), T0), BERLIN)
    assert "expire within 3 days" in text and "<b>shop</b> (2030-03-31)" in text
    assert one.facts["stage"] == 1


async def test_a_channel_given_days_is_warned_again_for_its_new_expiry(book: Book) -> None:
    pid = await book.partner("Acme", members=(101,))
    await book.channel(pid, "shop", 3)
    await sweeps.sweep_expiry(book.store, book.clock)  # stage 3 for the first expiry
    await book.grant(pid, 5)
    await book.billing.allocate_days(pid, "shop", 5, ACTOR, "more")  # now T0 + 8 days
    await sweeps.sweep_expiry(book.store, book.clock)  # not within 3 days any more
    book.clock.advance(5 * DAY)
    await sweeps.sweep_expiry(book.store, book.clock)

    sent = await book.sent(notices.EXPIRY)
    assert [n.facts["stage"] for n in sent] == [3, 3]
    assert [n.notice for n in sent] == [
        notices.ChannelsExpiring(3, 1, (notices.ListedChannel("shop", T0 + 3 * DAY, False),)),
        notices.ChannelsExpiring(3, 1, (notices.ListedChannel("shop", T0 + 8 * DAY, False),)),
    ]


async def test_expiry_sends_one_message_per_partner_and_stage_within_telegram_limits(
    book: Book,
) -> None:
    pid = await book.partner("Acme", members=(101,))
    other = await book.partner("Beta", members=(102,))
    long = "x" * 60
    names = [f"{long}{i:03d}" for i in range(70)]
    await book.store.write(lambda lg: [
        channels.create_channel(lg, T0, pid, n, ACTOR, f"bulk:{n}") for n in names
    ])
    await book.grant(pid, 70 * 2)
    await book.store.write(lambda lg: [
        channels.allocate_days(lg, T0, pid, n, 2, ACTOR, f"alloc:{n}") for n in names
    ])
    await book.channel(other, "solo", 1)
    await book.channel(pid, "later", 30)
    gone = await book.channel(pid, "gone", 2)
    await book.billing.delete_channel(pid, gone, ACTOR, "del")

    result = await sweeps.sweep_expiry(book.store, book.clock)

    assert (result.looked_at, result.acted) == (71, 71)
    by_partner = {(n.partner_id, n.facts["stage"]): n for n in await book.sent(notices.EXPIRY)}
    assert sorted(by_partner) == [(pid, 3), (other, 1)]
    big = by_partner[(pid, 3)]
    assert big.facts["count"] == 70
    assert isinstance(big.notice, notices.ChannelsExpiring)
    assert len(big.notice.channels) == sweeps.MAX_LISTED
    text = render(Notice(1, big.key, pid, big.kind, json.dumps(big.facts), T0), UTC)
    assert len(text) <= 4096
    assert text.rstrip().splitlines()[-2] == "… and 50 more: /channels"


async def test_expired_long_ago_or_deleted_channels_are_not_warned(book: Book) -> None:
    pid = await book.partner("Acme", members=(101,))
    await book.channel(pid, "old", 1)
    book.clock.advance(9 * DAY)  # expired 8 days ago: past the grace period
    result = await sweeps.sweep_expiry(book.store, book.clock)
    assert (result.looked_at, result.acted) == (0, 0)


async def test_an_expiry_run_killed_half_way_and_run_again_warns_once(
    book: Book, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids = [await book.partner(f"P{i}", members=(100 + i,)) for i in range(3)]
    for pid in pids:
        await book.channel(pid, f"a-{pid}", 1)
        await book.channel(pid, f"b-{pid}", 2)
    monkeypatch.setattr(sweeps.notices, "notify", die_on_call(2, notices.notify))
    with pytest.raises(Killed):
        await sweeps.sweep_expiry(book.store, book.clock)
    assert await book.count("SELECT count(*) FROM expiry_warnings") == 0
    monkeypatch.undo()

    rerun = await sweeps.sweep_expiry(book.store, book.clock)
    third = await sweeps.sweep_expiry(book.store, book.clock)

    assert (rerun.acted, third.acted) == (6, 0)
    sent = await book.sent(notices.EXPIRY)
    assert sorted((n.partner_id or 0, n.facts["stage"], n.facts["count"]) for n in sent) == [
        (p, stage, 1) for p in pids for stage in (1, 3)
    ]


async def test_expiry_sweeps_at_once_warn_once(book: Book, second: SqliteStore) -> None:
    for i in range(4):
        pid = await book.partner(f"P{i}", members=(100 + i,))
        await book.channel(pid, f"c{i}", 1 + i % 3)

    results = await asyncio.gather(
        sweeps.sweep_expiry(book.store, book.clock),
        sweeps.sweep_expiry(second, book.clock),
        sweeps.sweep_expiry(book.store, book.clock),
        sweeps.sweep_expiry(second, book.clock),
    )

    assert sum(r.acted for r in results) == 4
    assert len(await book.sent(notices.EXPIRY)) == 4
    assert await book.count("SELECT count(*) FROM expiry_warnings") == 4
