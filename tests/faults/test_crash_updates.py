"""Issue 11, point 5: no update is lost when `partnerbot run` is killed.

A real `partnerbot run` process polls the loopback Bot API server (which, like Telegram,
forgets every update below a confirmed offset) with a real SQLite file. Three members send
300 `/allocate` at once; the process is killed with SIGKILL once some but not all answers
are in, then started again. Every command must be answered (at least once: an update
handled but not yet marked handled when the process died is handled again and answered
from its stored outcome) and done exactly once: one allocation transfer per command, with
its days, and `ledger verify` ok.

Before the fix python-telegram-bot's Updater confirmed each batch's offset with the next
getUpdates while the batch still waited in memory: the killed process took those updates
with it, and the restarted one never saw them.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from tests.fakes.stripe_api import FakeStripe
from tests.fakes.telegram_api import BotMessage, FakeTelegram, FakeUser
from tests.faults import ledger_verify
from tests.faults.test_kill_restart import SUPPORT, Process, rows

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

OWNER, MATE_1, MATE_2 = 931_001, 931_002, 931_003  # support: the id Process configures
COMMANDS = 300
GAVE = re.compile(r"Gave (\d+) days? to shop\b")


async def say(tg: FakeTelegram, user: FakeUser, text: str, token: str) -> BotMessage:
    seen = len(user.replies)
    await user.send(text)
    await tg.wait_until(
        lambda: any(token in m.text for m in user.replies[seen:]), timeout=30, what=text
    )
    return next(m for m in user.replies[seen:] if token in m.text)


class Unlimited(Process):
    """The bot as test_kill_restart runs it, with the members' flood allowance at its
    largest: three members sending 100 commands each at once is the crash this test needs,
    not a flood (tests/faults/test_flood.py covers those limits)."""

    def env(self) -> dict[str, str]:
        return {**super().env(), "PARTNERBOT_LIMITS__MEMBER_PER_MINUTE": "6000"}


def start_code(message: BotMessage) -> str:
    found = re.search(r"\?start=([A-Za-z0-9_-]+)", message.text)
    assert found, message.text
    return found.group(1)


async def set_up(tg: FakeTelegram, support: FakeUser, members: list[FakeUser]) -> None:
    """Acme with enough days for every command, its owner, two mates and a channel."""
    owner, *mates = members
    reply = await say(tg, support, "/newpartner Acme", "?start=")
    await say(tg, support, "/credit Acme 90000 crash test", "Granted")
    await say(tg, owner, f"/start {start_code(reply)}", "linked to Acme")
    for mate in mates:
        invite = await say(tg, owner, "/invite", "?start=")
        await say(tg, mate, f"/start {start_code(invite)}", "linked to Acme")
    await say(tg, owner, "/newchannel shop", "Channel shop created")


def answered(members: list[FakeUser]) -> Counter[int]:
    """How many times each command (named by its days) was answered."""
    seen: Counter[int] = Counter()
    for member in members:
        for message in member.replies:
            found = GAVE.match(message.text)
            if found:
                seen[int(found.group(1))] += 1
    return seen


async def test_sigkill_with_updates_in_hand_loses_none(tmp_path: Path) -> None:
    async with FakeTelegram() as tg, FakeStripe() as stripe:
        bot = Unlimited(tmp_path, tg, stripe)
        support = tg.user(SUPPORT, "Sam")
        members = [tg.user(OWNER, "Olga"), tg.user(MATE_1, "Mia"), tg.user(MATE_2, "Max")]
        try:
            await bot.start()
            await set_up(tg, support, members)
            # Days 1..300: each command's answer names the command.
            sent: dict[int, int] = {}  # days -> update id
            for days in range(1, COMMANDS + 1):
                member = members[days % len(members)]
                update = await member.send(f"/allocate shop {days}")
                sent[days] = int(update["update_id"])
            await tg.wait_until(
                lambda: sum(answered(members).values()) >= 5, timeout=60, what="first answers"
            )
            await bot.kill()
            before_kill = answered(members)
            assert 0 < len(before_kill) < COMMANDS, "the kill came after every answer"
            await bot.start()
            await tg.wait_until(
                lambda: len(answered(members)) == COMMANDS,
                timeout=120,
                what=f"an answer to each of {COMMANDS} commands "
                f"(missing: {sorted(set(sent) - set(answered(members)))[:20]}...)",
            )
            await bot.stop()
        finally:
            if bot.proc is not None and bot.proc.returncode is None:
                bot.proc.kill()
                await bot.proc.wait()

        summary = await ledger_verify(bot.db)

    replies = answered(members)
    twice = sorted(days for days, n in replies.items() if n > 1)
    print(
        f"\n{len(before_kill)} answered before the kill, {len(replies)} after the restart;"
        f" {len(twice)} answered twice ({twice[:10]}); {summary}"
    )
    assert set(replies) == set(sent)
    allocations = {
        str(key): int(days)
        for key, days in rows(
            bot.db, "SELECT key, days FROM transfers WHERE kind = 'allocation'"
        )
    }
    # One allocation per command, keyed by its update id, with the command's days.
    assert allocations == {f"tg:{uid}": days for days, uid in sent.items()}
    [(balance,)] = rows(
        bot.db,
        "SELECT balance FROM accounts a JOIN channels c ON a.code = 'channel:' || c.id"
        " WHERE c.name = 'shop'",
    )
    assert balance == sum(sent)
