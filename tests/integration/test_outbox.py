"""The notice outbox (bot/outbox.py) against a Bot API server on loopback.

The Dispatcher sends with the bot `partnerbot run` uses (bot.app.build_application: HTML
by default, AIORateLimiter) to FakeTelegram, from a real SQLite file; retry and backoff
instants are on a FakeClock the tests move. Every linked member is reached; Telegram's
limits are kept (one message a second per chat, 429 retry_after honoured); a user who
blocked the bot is marked unreachable and not retried; 5xx for a while is waited out;
what was pending is delivered after a restart, nothing twice unless the process dies
between Telegram's acceptance and its record.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from telegram import Bot

from bot import outbox
from bot.app import build_application
from bot.outbox import Dispatcher
from core import notices
from core.model import Member, Role
from core.policy import BillingPolicy
from core.service import BillingService
from storage.sqlite import SqliteStore
from tests.conftest import FakeClock
from tests.fakes.telegram_api import FakeTelegram, FakeUser, RateLimits
from tests.integration.bot_harness import bot_harness

# python-telegram-bot warns about RetryAfter.retry_after's type on every 429 it builds.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

T0 = datetime(2030, 1, 14, 9, 30, tzinfo=UTC)
SUPPORT = (900, 901)
LOW = notices.LowBalanceCrossed(balance=5, threshold=10, running=0, runway=None)
LOW_TEXT = (
    "Low balance: 5 days left, below your alert at 10 days. No channel is drawing on it "
    "now.\nBuy days: /topup"
)


@dataclass
class Rig:
    tg: FakeTelegram
    store: SqliteStore
    clock: FakeClock
    path: Path
    bot: Bot  # as `partnerbot run` builds it
    billing: BillingService
    keys: int = 0

    def dispatcher(
        self, *, bot: Bot | None = None, store: SqliteStore | None = None, **options: Any
    ) -> Dispatcher:
        return Dispatcher(
            bot or self.bot, store or self.store, self.clock, UTC, SUPPORT, **options
        )

    async def partner(self, name: str, user_ids: Iterable[int]) -> int:
        """A partner whose members are these users (they wrote to the bot: /start)."""
        made = await self.billing.create_partner(name, "support:900")
        pid = made.partner.id
        now = self.clock.now()
        ids = list(user_ids)
        await self.store.write(lambda lg: [
            lg.save_member(Member(u, pid, Role.OWNER if i == 0 else Role.MEMBER, now))
            for i, u in enumerate(ids)
        ])
        for u in ids:
            self.tg.user(u, f"U{u}", started=True)
        return pid

    async def notify(self, to: int | None, notice: notices.AnyNotice = LOW) -> None:
        self.keys += 1
        key, now = f"test:{self.keys}", self.clock.now()
        await self.store.write(lambda lg: notices.notify(lg, now, key, to, notice))

    def user(self, user_id: int) -> FakeUser:
        return self.tg.user(user_id)

    async def statuses(self) -> dict[str, int]:
        rows = await self.store.execute_raw(
            "SELECT status, count(*) FROM deliveries GROUP BY status"
        )
        return {str(s): int(n) for s, n in rows}

    async def delivery(self, user_id: int) -> tuple[str, int, int, str | None]:
        """(status, attempts, due_at as seconds after T0, last_error) of the user's only one."""
        [(status, attempts, due, error)] = await self.store.execute_raw(
            "SELECT status, attempts, due_at, last_error FROM deliveries WHERE user_id = ?",
            (user_id,),
        )
        return status, attempts, (due - int(T0.timestamp() * 1e6)) // 1_000_000, error

    async def unreachable(self, user_id: int) -> bool:
        member = await self.billing.member(user_id)
        assert member is not None
        return member.unreachable

    def sends_to(self, user_id: int) -> int:
        return sum(1 for c in self.tg.calls_to("sendMessage") if c.get("chat_id") == user_id)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with FakeTelegram() as tg:
        path = tmp_path / "outbox.db"
        store = await SqliteStore.open(path, synchronous="NORMAL")
        clock = FakeClock(T0)
        billing = BillingService(store, clock, BillingPolicy())
        app = build_application(
            token=tg.token, api_base_url=tg.base_url, billing=billing,
            support_ids=frozenset(SUPPORT), tz=UTC,
        )
        await app.bot.initialize()
        made = Rig(tg, store, clock, path, app.bot, billing)
        try:
            for support in SUPPORT:
                tg.user(support, "Sam", started=True)
            yield made
        finally:
            await app.bot.shutdown()
            await made.store.close()  # the test may have reopened it


async def drain(rig: Rig, dispatcher: Dispatcher, *, step: timedelta = timedelta(0)) -> int:
    """run_once until nothing is due (moving the clock by `step` between rounds)."""
    total = 0
    for _ in range(100):
        done = await dispatcher.run_once()
        total += done
        if not done and not (await rig.statuses()).get("pending"):
            return total
        rig.clock.advance(step)
    raise AssertionError("the outbox did not drain")


# ------------------------------------------------------------------------------- delivery


async def test_a_notice_reaches_every_reachable_member_and_support_once(rig: Rig) -> None:
    pid = await rig.partner("Acme", (101, 102, 103))
    await rig.partner("Beta", (201,))
    await rig.billing.set_member_reachable(103, False, "test")
    await rig.notify(pid)
    await rig.notify(None, notices.InvoiceOverdue(
        order_id=7, partner_id=pid, amount=1500, currency="usd", url=None
    ))
    d = rig.dispatcher()

    first = await d.run_once()
    second = await d.run_once()

    assert (first, second) == (4, 0)
    assert [m.text for m in rig.user(101).replies] == [LOW_TEXT]
    assert [m.text for m in rig.user(102).replies] == [LOW_TEXT]
    assert rig.user(103).replies == [] and rig.user(201).replies == []
    for support in SUPPORT:
        [m] = rig.user(support).replies
        assert m.text == f"Invoice #7 of partner #{pid} (15.00 USD) is overdue. /invoices"
    assert await rig.statuses() == {"sent": 4}


async def test_html_in_a_notice_reaches_the_chat_as_formatting(rig: Rig) -> None:
    pid = await rig.partner("Acme", (101,))
    shop = notices.ListedChannel("<shop> & co", datetime(2030, 1, 15, 9, 30, tzinfo=UTC), True)
    await rig.notify(pid, notices.ChannelsExpiring(stage=1, count=1, channels=(shop,)))
    await rig.dispatcher().run_once()

    [m] = rig.user(101).replies
    assert m.text.splitlines()[1] == "• <shop> & co (2030-01-15), auto-renew on"
    assert m.parse_mode == "HTML" and "bold" in {e["type"] for e in m.entities}


async def test_a_notice_stored_by_the_first_version_is_delivered_as_it_read(rig: Rig) -> None:
    pid = await rig.partner("Acme", (101,))
    payload = '{"balance":5,"running":0,"runway":null,"threshold":10}'  # no "v": first version
    await rig.store.write(
        lambda lg: lg.add_notice("old", pid, notices.LOW_BALANCE, payload, T0)
    )
    await rig.dispatcher().run_once()

    assert [m.text for m in rig.user(101).replies] == [LOW_TEXT]
    assert await rig.statuses() == {"sent": 1}


async def test_an_unreadable_notice_fails_visibly_and_the_others_go_out(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    pid = await rig.partner("Acme", (101,))
    missing = '{"balance":5,"running":0,"runway":null,"v":2}'  # no threshold: never "0"
    await rig.store.write(
        lambda lg: lg.add_notice("bad", pid, notices.LOW_BALANCE, missing, T0)
    )
    await rig.notify(None)  # to support, readable
    d = rig.dispatcher()

    attempted = await d.run_once()
    again = await d.run_once()

    assert (attempted, again) == (3, 0)
    assert rig.user(101).replies == [] and rig.sends_to(101) == 0
    assert [m.text for m in rig.user(SUPPORT[0]).replies] == [LOW_TEXT]
    status, attempts, _, error = await rig.delivery(101)
    assert (status, attempts) == ("failed", 1)
    assert error == "undecodable: low_balance: LowBalanceCrossed: missing threshold"
    [record] = [r for r in caplog.records if r.name == "bot.outbox"]
    assert record.levelname == "ERROR" and "key bad" in record.getMessage()


async def test_messages_to_one_chat_go_a_second_apart_within_the_flood_limits(
    rig: Rig,
) -> None:
    rig.tg.enforce_rate_limits(RateLimits(global_per_second=30, private_chat_per_second=1))
    pid = await rig.partner("Acme", (101,))
    other = await rig.partner("Beta", (201,))
    for _ in range(3):
        await rig.notify(pid)
    await rig.notify(other)
    d = rig.dispatcher(interval=0.05)

    started = time.monotonic()
    d.start()
    try:
        await rig.user(101).wait_replies(3, timeout=10)
        elapsed = time.monotonic() - started
    finally:
        await d.stop()

    assert rig.tg.status_counts[429] == 0
    assert elapsed >= 2.0  # 3 messages to one chat: 1 s apart
    assert len(rig.user(201).replies) == 1  # not held up behind the busy chat
    assert await rig.statuses() == {"sent": 4}


async def test_a_fanout_keeps_under_the_overall_limit(rig: Rig) -> None:
    rig.tg.enforce_rate_limits(RateLimits(global_per_second=30, private_chat_per_second=1))
    pid = await rig.partner("Many", range(1000, 1060))  # 60 members, one notice
    await rig.notify(pid)
    d = rig.dispatcher(interval=0.05)

    started = time.monotonic()
    d.start()
    try:
        await rig.tg.wait_until(
            lambda: all(rig.user(u).replies for u in range(1000, 1060)), timeout=10,
            what="60 messages",
        )
        elapsed = time.monotonic() - started
    finally:
        await d.stop()

    assert rig.tg.status_counts[429] == 0
    assert 60 / elapsed <= 30  # paced, not bursting
    assert await rig.statuses() == {"sent": 60}


# ------------------------------------------------------------------------------ 429, 403


async def test_a_429_retry_after_is_honoured_before_anything_else_is_sent(rig: Rig) -> None:
    plain = rig.tg.bot()  # no AIORateLimiter: the dispatcher sees the 429 itself
    await plain.initialize()
    try:
        pid = await rig.partner("Acme", (101,))
        other = await rig.partner("Beta", (201,))
        await rig.notify(pid)
        rig.tg.fail_retry_after("sendMessage", retry_after=30, chat_id=101, times=12)
        d = rig.dispatcher(bot=plain, per_chat_interval=0)  # FakeClock time only

        await d.run_once()  # 101: 429 (201 is sent in the same round)
        assert (await rig.delivery(101))[:3] == ("pending", 1, 30)
        await rig.notify(other)
        rig.clock.advance(timedelta(seconds=29))
        assert await d.run_once() == 0  # paused: not even the new message to 201
        rig.clock.advance(timedelta(seconds=1))
        sent = await d.run_once()
        # Ten more 429s: a flood wait never makes a message give up.
        for _ in range(10):
            rig.clock.advance(timedelta(seconds=30))
            await d.run_once()
        status_before_clear = await rig.delivery(101)
        rig.tg.clear_faults()
        rig.clock.advance(timedelta(seconds=30))
        await drain(rig, d)
    finally:
        await plain.shutdown()

    assert sent == 2  # 101 again (429) and 201
    assert status_before_clear[:2] == ("pending", 12)
    assert len(rig.user(101).replies) == 1 and len(rig.user(201).replies) == 1
    assert await rig.statuses() == {"sent": 2}


async def test_the_rate_limiter_absorbs_a_short_429(rig: Rig) -> None:
    pid = await rig.partner("Acme", (101,))
    await rig.notify(pid)
    rig.tg.fail_retry_after("sendMessage", retry_after=1, times=1)

    assert await rig.dispatcher().run_once() == 1

    assert rig.tg.status_counts[429] == 1
    assert len(rig.user(101).replies) == 1
    assert await rig.statuses() == {"sent": 1}


async def test_a_user_who_blocked_the_bot_is_marked_unreachable_and_not_retried(
    rig: Rig,
) -> None:
    pid = await rig.partner("Acme", (101, 102))
    await rig.user(102).block_bot()
    await rig.notify(pid)
    await rig.notify(pid)
    d = rig.dispatcher(per_chat_interval=0)

    await drain(rig, d)
    rig.clock.advance(timedelta(days=3))
    await rig.notify(pid)
    await drain(rig, d)

    assert await rig.unreachable(102) and not await rig.unreachable(101)
    assert len(rig.user(101).replies) == 3 and rig.user(102).replies == []
    assert rig.sends_to(102) == 2  # each pending message tried once, none again
    assert await rig.statuses() == {"sent": 3, "failed": 2}
    [(error,)] = await rig.store.execute_raw(
        "SELECT DISTINCT last_error FROM deliveries WHERE user_id = 102"
    )
    assert error == "forbidden: Forbidden: bot was blocked by the user"
    [(actor, detail)] = await rig.store.execute_raw(
        "SELECT actor, detail FROM events WHERE action = 'member.unreachable'"
    )
    assert (actor, detail) == ("system:outbox", "user=102")


async def test_a_chat_telegram_does_not_know_is_given_up_at_once(rig: Rig) -> None:
    pid = await rig.partner("Acme", (101,))
    rig.tg.fail("sendMessage", status=400, description="Bad Request: chat not found")
    await rig.notify(pid)

    await drain(rig, rig.dispatcher())

    assert (await rig.delivery(101))[0] == "failed"
    assert rig.sends_to(101) == 1


async def test_a_member_who_unblocks_and_writes_again_gets_notices_again(
    tmp_path: Path,
) -> None:
    async with bot_harness(tmp_path) as h:
        acme = await h.new_partner("Acme", owner_id=101, days=50)
        d = Dispatcher(h.app.bot, h.store, h.clock, UTC, [], per_chat_interval=0)
        await h.drain(acme.owner)
        await acme.owner.block_bot()
        await h.store.write(lambda lg: notices.notify(
            lg, h.clock.now(), "n1", acme.id, LOW
        ))
        await d.run_once()
        assert (await h.billing.member(101)).unreachable  # type: ignore[union-attr]

        await acme.owner.unblock_bot()
        await h.ask(acme.owner, "/balance")
        await h.store.write(lambda lg: notices.notify(
            lg, h.clock.now(), "n2", acme.id, LOW
        ))
        await d.run_once()

        assert not (await h.billing.member(101)).unreachable  # type: ignore[union-attr]
        assert acme.owner.replies[-1].text == LOW_TEXT


# ----------------------------------------------------------------------------- 5xx, backoff


@pytest.mark.parametrize("status", [500, 502])
async def test_server_errors_for_a_while_are_retried_with_backoff_until_they_pass(
    rig: Rig, status: int
) -> None:
    pid = await rig.partner("Acme", (101,))
    await rig.notify(pid)
    rig.tg.fail_server_error("sendMessage", status=status, times=None)
    d = rig.dispatcher(per_chat_interval=0)  # FakeClock time only
    attempts_at: list[int] = []

    # 40 minutes of outage, looked at every second of FakeClock time (cheap: nothing is
    # due most of the time, and a round that sends nothing makes no request).
    for _ in range(40 * 60):
        before = rig.sends_to(101)
        await d.run_once()
        if rig.sends_to(101) > before:
            attempts_at.append(int((rig.clock.now() - T0).total_seconds()))
        rig.clock.advance(timedelta(seconds=1))
    pending = await rig.delivery(101)
    rig.tg.clear_faults()
    await drain(rig, d, step=timedelta(minutes=1))

    gaps = [b - a for a, b in itertools.pairwise(attempts_at)]
    assert gaps == [5, 10, 20, 40, 80, 160, 320, 640, 1280][: len(gaps)]
    assert len(attempts_at) == 9  # 0 s ... 1275 s; the next is due at 2555 s
    assert pending[:2] == ("pending", 9)  # not given up after ten minutes
    assert len(rig.user(101).replies) == 1
    assert await rig.statuses() == {"sent": 1}


async def test_transient_errors_give_up_once_the_notice_is_two_days_old(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = await rig.partner("Acme", (101,))
    await rig.notify(pid)
    rig.tg.fail_server_error("sendMessage", status=503, times=None)
    d = rig.dispatcher(per_chat_interval=0)

    await d.run_once()
    rig.clock.advance(outbox.GIVE_UP_AFTER - timedelta(seconds=1))
    await d.run_once()
    status_before = await rig.delivery(101)
    rig.clock.advance(timedelta(hours=2))
    await d.run_once()

    assert status_before[0] == "pending"
    status, attempts, _, error = await rig.delivery(101)
    assert (status, attempts) == ("failed", 3)
    assert error is not None and error.startswith("gave up: ")


# ------------------------------------------------------------------------------- restarts


async def _many(rig: Rig, n: int) -> list[int]:
    users = list(range(5000, 5000 + n))
    pid = await rig.partner("Many", users)
    await rig.notify(pid)
    return users


async def test_what_was_pending_is_delivered_after_a_restart_and_nothing_twice(
    rig: Rig,
) -> None:
    users = await _many(rig, 70)
    rig.tg.delay("sendMessage", 0.2, times=None)  # answers late: a round is in flight
    first = rig.dispatcher(per_second=1000, interval=0.01)
    first.start()
    await rig.tg.wait_until(lambda: len(rig.tg.calls_to("sendMessage")) >= 10, timeout=5,
                            what="sends in flight")
    await first.stop()  # SIGTERM: lets the round in hand finish
    at_stop = await rig.statuses()
    await rig.store.close()

    rig.tg.clear_faults()
    store = await SqliteStore.open(rig.path, synchronous="NORMAL")
    try:
        second = rig.dispatcher(store=store, per_second=1000)
        while await second.run_once():
            pass
        rows = await store.execute_raw("SELECT status, count(*) FROM deliveries GROUP BY status")
    finally:
        rig.store = await SqliteStore.open(rig.path, synchronous="NORMAL")  # for the fixture
        await store.close()

    assert at_stop["sent"] >= 10 and at_stop["pending"] > 0
    assert sum(at_stop.values()) == 70
    assert [len(rig.user(u).replies) for u in users] == [1] * 70
    assert len(rig.tg.calls_to("sendMessage")) == 70
    assert rows == [("sent", 70)]


async def test_a_crash_between_acceptance_and_record_repeats_only_those_messages(
    rig: Rig,
) -> None:
    users = await _many(rig, 70)
    rig.tg.delay("sendMessage", 0.3, times=None)  # carried out at once, answered late
    first = rig.dispatcher(per_second=1000, interval=0.01)
    first.start()
    await rig.tg.wait_until(lambda: len(rig.tg.calls_to("sendMessage")) >= 10, timeout=5,
                            what="sends in flight")
    await asyncio.sleep(0.05)
    await first.stop(grace=0)  # killed: no time to record what Telegram accepted
    recorded = {
        u for (u,) in await rig.store.execute_raw(
            "SELECT user_id FROM deliveries WHERE status = 'sent'"
        )
    }
    accepted = {u for u in users if rig.user(u).replies}
    rig.tg.clear_faults()
    second = rig.dispatcher(per_second=1000)
    while await second.run_once():
        pass

    in_the_gap = accepted - recorded
    twice = {u for u in users if len(rig.user(u).replies) == 2}
    assert in_the_gap  # the kill landed while Telegram had accepted and we had not recorded
    assert twice == in_the_gap
    assert all(1 <= len(rig.user(u).replies) <= 2 for u in users)
    assert await rig.statuses() == {"sent": 70}


# ------------------------------------------------------------------ several instances


async def test_a_deposed_leaders_round_claims_and_sends_nothing(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    pid = await rig.partner("Acme", (101, 102))
    fenced: list[bool] = []
    old = await rig.store.write(lambda lg: lg.begin_leadership(T0))
    d = rig.dispatcher(on_fenced=lambda: fenced.append(True))
    d.epoch = old  # as start(old) sets it
    await rig.store.write(lambda lg: lg.begin_leadership(T0))  # a new leader has begun
    await rig.notify(pid)

    assert await d.run_once() == 0

    assert rig.tg.calls_to("sendMessage") == [] and fenced == [True]
    assert await rig.statuses() == {}  # not even expanded: the new leader does that
    assert f"leader epoch {old} is over" in caplog.text


async def test_a_leader_deposed_mid_round_sends_no_more(rig: Rig) -> None:
    pid = await rig.partner("Acme", (101, 102, 103, 104))
    await rig.notify(pid)
    asked: list[bool] = []

    def still_leading() -> bool:
        # Asked once as the round starts, then before each message: deposed after the
        # first message of the round has been let through.
        asked.append(len(asked) < 2)
        return asked[-1]

    epoch = await rig.store.write(lambda lg: lg.begin_leadership(T0))
    d = rig.dispatcher(per_chat_interval=0, leading=still_leading)
    d.epoch = epoch

    await d.run_once()

    assert asked == [True, True, False, False, False]  # asked before every message
    assert len(rig.tg.calls_to("sendMessage")) == 1
    assert await rig.statuses() == {"sent": 1, "pending": 3}  # left for the next leader
    follower = rig.dispatcher(per_chat_interval=0)
    assert await drain(rig, follower) == 3
    assert sorted(c["chat_id"] for c in rig.tg.calls_to("sendMessage")) == [101, 102, 103, 104]
