"""`partnerbot run` in webhook mode as a real process: the loopback Bot API posts updates
to POST /telegram/webhook as Telegram does (redelivering until 2xx), a real SQLite file.

- a journey (/newpartner, /start with the invite, /newchannel, /credit, /balance,
  /allocate) over the webhook, a wrong secret refused and counted, a graceful stop;
- SIGKILL after an update is acknowledged but before it is handled: after the restart it
  is handled exactly once (one allocation, one answer).
"""

from __future__ import annotations

import re
import signal
import sqlite3
from contextlib import closing
from pathlib import Path

import aiohttp
import psycopg
import pytest

from tests.e2e.test_run import running_bot
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.telegram_api import BotMessage, FakeTelegram, FakeUser
from tests.faults import cli, ledger_verify
from tests.faults.test_kill_restart import SUPPORT, Process

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

SECRET = "tg_e2e-WebhookSecret_0123456789"
OWNER = 960_001
WEBHOOK_ENV = {
    "PARTNERBOT_TELEGRAM__MODE": "webhook",
    "PARTNERBOT_TELEGRAM__WEBHOOK_URL": "https://bot.example.com/telegram/webhook",
    "PARTNERBOT_TELEGRAM__WEBHOOK_SECRET": SECRET,
    "PARTNERBOT_CLUSTER__FAILOVER_SECONDS": "3",
}


async def say(tg: FakeTelegram, user: FakeUser, text: str, token: str) -> BotMessage:
    """Send `text`; the first answer after it containing `token`."""
    seen = len(user.replies)
    await user.send(text)
    await tg.wait_until(
        lambda: any(token in m.text for m in user.replies[seen:]), timeout=20, what=text
    )
    return next(m for m in user.replies[seen:] if token in m.text)


def start_code(message: BotMessage) -> str:
    found = re.search(r"\?start=([A-Za-z0-9_-]+)", message.text)
    assert found, message.text
    return found.group(1)


async def set_up(tg: FakeTelegram, support: FakeUser, owner: FakeUser) -> None:
    """Acme with 100 days, its owner linked through the invite, and a channel."""
    invite = await say(tg, support, "/newpartner Acme", "?start=")
    await say(tg, support, "/credit Acme 100 webhook test", "Granted")
    await say(tg, owner, f"/start {start_code(invite)}", "linked to Acme")
    await say(tg, owner, "/newchannel shop", "Channel shop created")


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        return list(conn.execute(sql))


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_a_journey_over_the_webhook_of_a_running_bot(
    tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_url") if engine == "postgres" else ""
    env = {**WEBHOOK_ENV, "PARTNERBOT_DATABASE__URL": url} if url else WEBHOOK_ENV
    async with running_bot(tmp_path, None, **env) as bot:
        bot.tg.start_delivery(bot.http + "/telegram/webhook", secret=SECRET)
        support, owner = bot.tg.user(SUPPORT, "Sam"), bot.tg.user(OWNER, "Olga")

        await set_up(bot.tg, support, owner)
        balance = await say(bot.tg, owner, "/balance", "Balance:")
        gave = await say(bot.tg, owner, "/allocate shop 10", "Gave")

        assert balance.text.splitlines()[0] == "Balance: 100 days"
        assert gave.text.startswith("Gave 10 days to shop")
        async with aiohttp.ClientSession() as s:
            async with s.post(bot.http + "/telegram/webhook", json={"update_id": 1}) as r:
                assert r.status == 401
            async with s.post(
                bot.http + "/telegram/webhook", json={"update_id": 1},
                headers={"X-Telegram-Bot-Api-Secret-Token": "not-it"},
            ) as r:
                assert r.status == 403
        assert bot.tg.get_updates_calls == []  # webhook mode never polls
        status, metrics = await bot.get("/metrics", bot.metrics)
        assert status == 200
        assert 'partnerbot_telegram_webhook_total{result="recorded"} 6.0' in metrics
        assert 'partnerbot_telegram_webhook_total{result="refused"} 2.0' in metrics
        assert {d.status for d in bot.tg.deliveries} == {200}

        bot.proc.send_signal(signal.SIGTERM)
        assert await bot.proc.wait() == 0
        log = bot.log.read_text()
        assert SECRET not in log
        assert "no webhook is set with Telegram" in log  # `webhook set` was never run
    unhandled = "SELECT COUNT(*) FROM inbox WHERE handled_at IS NULL"
    if url:
        with psycopg.connect(url) as conn:
            assert conn.execute(unhandled).fetchall() == [(0,)]
        done = await cli("ledger", "verify", db=bot.db, PARTNERBOT_DATABASE__URL=url)
        assert done.code == 0 and done.out.startswith("ledger ok"), done.out + done.err
    else:
        assert rows(bot.db, unhandled) == [(0,)]
        await ledger_verify(bot.db)


class WebhookProcess(Process):
    """tests/faults/test_kill_restart's process, in webhook mode."""

    def env(self) -> dict[str, str]:
        return {**super().env(), **WEBHOOK_ENV}


async def test_sigkill_after_the_answer_before_handling_handles_it_once_after_restart(
    tmp_path: Path,
) -> None:
    async with FakeTelegram() as tg, FakeStripe() as stripe:
        bot = WebhookProcess(tmp_path, tg, stripe)
        support, owner = tg.user(SUPPORT, "Sam"), tg.user(OWNER, "Olga")
        try:
            await bot.start()
            tg.start_delivery(bot.url + "/telegram/webhook", secret=SECRET, retry_delay=0.2)
            await set_up(tg, support, owner)
            # The owner's next answer is held by Telegram until the process is gone, so
            # /balance stays in hand and /allocate, acknowledged, waits its turn.
            tg.delay("sendMessage", 120, chat_id=OWNER, effect=False)
            seen = len(owner.replies)
            await owner.send("/balance")
            allocate = await owner.send("/allocate shop 7")
            update_id = int(allocate["update_id"])
            await tg.wait_until(lambda: update_id in tg.acknowledged, what="/allocate acked")
            await tg.wait_until(
                lambda: any(c["chat_id"] == OWNER for c in tg.calls_to("sendMessage")[-1:]),
                what="the /balance answer held",
            )
            allocations = "SELECT COUNT(*) FROM transfers WHERE kind = 'allocation'"
            assert rows(bot.db, allocations) == [(0,)]  # acknowledged, not handled

            await bot.kill()
            tg.clear_faults()
            await bot.start()
            await tg.wait_until(
                lambda: any(m.text.startswith("Gave 7 days") for m in owner.replies[seen:]),
                timeout=30, what="the /allocate answered after the restart",
            )
            await bot.stop()
        finally:
            if bot.proc is not None and bot.proc.returncode is None:
                bot.proc.kill()
                await bot.proc.wait()
        summary = await ledger_verify(bot.db)

    answers = [m.text for m in owner.replies[seen:]]
    assert sum(a.startswith("Gave 7 days") for a in answers) == 1, answers
    assert sum(a.startswith("Balance:") for a in answers) == 1, answers  # the held one died
    assert rows(bot.db, "SELECT key, days FROM transfers WHERE kind = 'allocation'") == [
        (f"tg:{update_id}", 7)
    ]
    assert rows(bot.db, "SELECT COUNT(*) FROM inbox WHERE handled_at IS NULL") == [(0,)]
    assert summary.startswith("ledger ok")


async def test_two_running_instances_on_one_file_answer_one_user_in_order(
    tmp_path: Path,
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with FakeTelegram() as tg, FakeStripe() as stripe:
        first, second = WebhookProcess(tmp_path / "a", tg, stripe), WebhookProcess(
            tmp_path / "b", tg, stripe
        )
        second.db = first.db  # one SQLite file, two processes
        support, owner = tg.user(SUPPORT, "Sam"), tg.user(OWNER, "Olga")
        try:
            await first.start()
            await second.start()
            # Two connections alternating between the instances, as behind a balancer.
            tg.start_delivery(
                first.url + "/telegram/webhook", second.url + "/telegram/webhook",
                secret=SECRET, connections=2,
            )
            await set_up(tg, support, owner)
            tg.delay("sendMessage", 0.5, chat_id=OWNER)  # the next ones arrive meanwhile
            seen = len(owner.replies)
            sent = [int((await owner.send(f"/allocate shop {d}"))["update_id"])
                    for d in range(1, 9)]
            await tg.wait_until(
                lambda: sum(m.text.startswith("Gave") for m in owner.replies[seen:]) == 8,
                timeout=30, what="eight answers",
            )
            await first.stop()
            await second.stop()
        finally:
            for bot in (first, second):
                if bot.proc is not None and bot.proc.returncode is None:
                    bot.proc.kill()
                    await bot.proc.wait()
        await ledger_verify(first.db)

    gave = [m.text for m in owner.replies[seen:] if m.text.startswith("Gave")]
    assert [int(text.split()[1]) for text in gave] == list(range(1, 9))
    targets = {d.target for d in tg.deliveries if d.update_id in sent}
    assert len(targets) == 2  # both instances received some of them
    assert rows(first.db, "SELECT key, days FROM transfers WHERE kind = 'allocation'"
                " ORDER BY id") == [(f"tg:{uid}", d) for d, uid in enumerate(sent, 1)]
