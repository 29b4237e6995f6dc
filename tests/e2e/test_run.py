"""`partnerbot run` as a real process: the bot against a Bot API server on loopback, the
payments against a Stripe server on loopback, and the HTTP server on its own port.

Only the base URLs differ from production: the same console script, configuration from
the environment, long polling, signed webhooks, graceful stop on SIGTERM.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.e2e import clean_env, console_script
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.telegram_api import FakeTelegram

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]
SECRET = "whsec_e2e_partnerbot_0123456789abcdef"
SUPPORT = 900_001
OWNER = 900_002


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    tg: FakeTelegram
    stripe: FakeStripe
    proc: asyncio.subprocess.Process
    http: str
    db: Path
    log: Path
    metrics: str  # the metrics listener (metrics.port), apart from the public one

    async def get(self, path: str, base: str | None = None) -> tuple[int, str]:
        async with aiohttp.ClientSession() as s, s.get((base or self.http) + path) as r:
            return r.status, await r.text()


def with_open_files(limit: int, command: list[str]) -> list[str]:
    """`command` run with RLIMIT_NOFILE at `limit`, set by a small launcher that then
    becomes the command (exec): preexec_fn is unsafe with the fakes' threads running."""
    return [
        sys.executable, "-c",
        "import os, resource, sys; n = int(sys.argv[1]);"
        " resource.setrlimit(resource.RLIMIT_NOFILE, (n, n));"
        " os.execv(sys.argv[2], sys.argv[2:])",
        str(limit), *command,
    ]


@asynccontextmanager
async def running_bot(
    tmp_path: Path, open_files: int | None = None, **extra_env: str
) -> AsyncIterator[Running]:
    """`partnerbot run` between the fakes; `open_files` sets its RLIMIT_NOFILE,
    `extra_env` adds PARTNERBOT_* settings."""

    command = [*console_script(), "run"]
    if open_files is not None:
        command = with_open_files(open_files, command)
    async with FakeTelegram() as tg, FakeStripe() as stripe:
        port, metrics_port = free_port(), free_port()
        db, log = tmp_path / "bot.db", tmp_path / "bot.log"
        env = clean_env(
            PARTNERBOT_TELEGRAM__TOKEN=tg.token,
            PARTNERBOT_TELEGRAM__API_BASE_URL=tg.base_url,
            PARTNERBOT_ACCESS__SUPPORT_USER_IDS=f"[{SUPPORT}]",
            PARTNERBOT_DATABASE__PATH=str(db),
            PARTNERBOT_STRIPE__API_KEY=stripe.api_key,
            PARTNERBOT_STRIPE__API_BASE=stripe.base_url,
            PARTNERBOT_STRIPE__WEBHOOK_SECRET=SECRET,
            PARTNERBOT_SERVER__PORT=str(port),
            PARTNERBOT_METRICS__PORT=str(metrics_port),
            PARTNERBOT_LOGGING__FORMAT="json",
            **extra_env,
        )
        with log.open("wb") as sink:
            proc = await asyncio.create_subprocess_exec(
                *command, cwd=tmp_path, env=env, stdout=sink, stderr=sink
            )
        run = Running(
            tg, stripe, proc, f"http://127.0.0.1:{port}", db, log,
            f"http://127.0.0.1:{metrics_port}",
        )
        try:
            for _ in range(200):  # up to 20 s to start on a busy machine
                if proc.returncode is not None:
                    raise AssertionError(f"bot exited: {log.read_text()[-2000:]}")
                try:
                    if (await run.get("/healthz"))[0] == 200:
                        break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"bot never healthy: {log.read_text()[-2000:]}")
            yield run
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_a_partner_tops_up_through_the_running_bot_and_is_told(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        support, owner = bot.tg.user(SUPPORT, "Sam"), bot.tg.user(OWNER, "Olga")
        await support.send("/newpartner Acme")
        link = (await support.wait_reply(10)).text
        code = re.search(r"\?start=([A-Za-z0-9_-]+)", link)
        assert code, link
        assert "https://t.me/partner_test_bot?start=" in link

        await owner.send(f"/start {code.group(1)}")
        assert "linked to Acme as owner" in (await owner.wait_reply(10)).text

        await owner.send("/topup 300")
        quote = await owner.wait_reply(10)
        assert quote.text.startswith("300 days for 100.00 USD")
        [[(label, url)]] = quote.buttons()
        assert label == "Pay 100.00 USD" and url
        session = re.search(r"cs_test_[A-Za-z0-9]+", url)
        assert session, url
        # No stripe.success_url nor telegram.bot_username configured: the payer goes back
        # to the running bot's chat, as getMe names it.
        [checkout] = bot.stripe.requests_to("/v1/checkout/sessions", "POST")
        assert checkout.params["success_url"] == "https://t.me/partner_test_bot"

        event = bot.stripe.complete_session(session.group(0))
        status, _ = await bot.stripe.deliver_webhook(event, bot.http + "/stripe/webhook", SECRET)
        assert status == 200
        told = await owner.wait_reply(10)
        assert told.text == "300 days credited; balance 300 days."
        status, _ = await bot.stripe.deliver_webhook(event, bot.http + "/stripe/webhook", SECRET)
        assert status == 200  # Stripe redelivered it: counted as a duplicate, credited once

        await owner.send("/balance")
        assert (await owner.wait_reply(10)).text.splitlines()[0] == "Balance: 300 days"

        status, metrics = await bot.get("/metrics", bot.metrics)
        assert status == 200
        assert "partnerbot_days_credited_total 300.0" in metrics
        assert 'partnerbot_updates_total{command="topup"} 1.0' in metrics
        assert 'partnerbot_webhooks_total{result="credited"} 1.0' in metrics
        assert 'partnerbot_webhooks_total{result="duplicate"} 1.0' in metrics

        bot.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(bot.proc.wait(), 15) == 0
        log = bot.log.read_text()
        assert bot.tg.token not in log and SECRET not in log and bot.stripe.api_key not in log

    verify = await asyncio.create_subprocess_exec(
        *console_script(), "ledger", "verify", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=clean_env(PARTNERBOT_DATABASE__PATH=str(bot.db)),
    )
    output = (await verify.communicate())[0].decode()
    assert verify.returncode == 0, output
    assert output.startswith("ledger ok: 1 transfers")


async def test_a_bad_webhook_is_refused_by_the_running_server(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        async with aiohttp.ClientSession() as s:
            async with s.post(bot.http + "/stripe/webhook", data=b"{}") as r:
                assert r.status == 400
            async with s.post(
                bot.http + "/stripe/webhook", data=b"{}",
                headers={"Stripe-Signature": "t=1,v1=00"},
            ) as r:
                assert r.status == 400
        bot.proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(bot.proc.wait(), 15) == 0
