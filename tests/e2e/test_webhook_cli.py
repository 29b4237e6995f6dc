"""`partnerbot webhook set|info|delete` as the console script, against the loopback Bot
API server; and `partnerbot run` in polling mode refusing to start while a webhook is set.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e import clean_env, console_script
from tests.fakes.telegram_api import FakeTelegram
from tests.faults import free_port

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

URL = "https://bot.example.com/telegram/webhook"
SECRET = "tg_WebhookSecret-ForCliTests_0123"
REFUSED_PORT = "http://127.0.0.1:9/bot"  # discard: nothing listens


@dataclass(frozen=True)
class Done:
    code: int
    stdout: str
    stderr: str


async def cli(tg: FakeTelegram, tmp: Path, *args: str, **env: str) -> Done:
    settings = {
        "PARTNERBOT_TELEGRAM__TOKEN": tg.token,
        "PARTNERBOT_TELEGRAM__API_BASE_URL": tg.base_url,
        "PARTNERBOT_TELEGRAM__WEBHOOK_URL": URL,
        "PARTNERBOT_TELEGRAM__WEBHOOK_SECRET": SECRET,
        "PARTNERBOT_DATABASE__PATH": str(tmp / "bot.db"),
        **env,
    }
    proc = await asyncio.create_subprocess_exec(
        *console_script(), *args, cwd=tmp,
        env=clean_env(**{k: v for k, v in settings.items() if v}),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    done = Done(proc.returncode or 0, out.decode(), err.decode())
    assert SECRET not in done.stdout + done.stderr
    assert tg.token.split(":")[1] not in done.stdout + done.stderr
    return done


async def test_set_info_and_delete_the_webhook(tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        # An update waiting with Telegram: set does not drop it.
        await tg.user(1001, "Ann", started=True).send("/help")

        done = await cli(tg, tmp_path, "webhook", "set")

        assert done.code == 0, done.stderr
        assert done.stdout.startswith(f"webhook set: Telegram posts updates (message,"
                                      f" callback_query) to {URL}")
        assert "note: telegram.mode is polling" in done.stdout
        [params] = tg.calls_to("setWebhook")
        assert params["url"] == URL and params["secret_token"] == SECRET
        assert params["allowed_updates"] == ["message", "callback_query"]
        assert params["max_connections"] == 40 and params["drop_pending_updates"] is False
        assert len(tg.pending_updates) == 1

        info = await cli(tg, tmp_path, "webhook", "info")
        assert info.code == 0, info.stderr
        assert info.stdout.splitlines() == [
            f"url: {URL}",
            "pending updates: 1",
            "max connections: 40",
            "allowed updates: callback_query, message",
            "last error: none",
        ]

        tg.start_delivery("http://127.0.0.1:9/telegram/webhook")  # nobody listens there
        await tg.wait_until(lambda: tg.webhook_last_error is not None, what="a failed post")
        await tg.stop_delivery()
        failing = await cli(tg, tmp_path, "webhook", "info")
        assert "last error: 20" in failing.stdout and "Connection failed" in failing.stdout

        gone = await cli(tg, tmp_path, "webhook", "delete")
        assert gone.code == 0, gone.stderr
        assert gone.stdout.startswith("webhook deleted")
        assert tg.webhook["url"] == "" and len(tg.pending_updates) == 1
        none = await cli(tg, tmp_path, "webhook", "info")
        assert none.stdout.splitlines()[0].startswith("url: none")


async def test_set_takes_max_connections_and_refuses_one_out_of_range(tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        done = await cli(tg, tmp_path, "webhook", "set", "--max-connections", "5")
        bad = await cli(tg, tmp_path, "webhook", "set", "--max-connections", "101")

    assert done.code == 0 and tg.calls_to("setWebhook")[0]["max_connections"] == 5
    assert (bad.code, bad.stderr) == (
        1, "partnerbot: --max-connections: must be between 1 and 100\n"
    )
    assert len(tg.calls_to("setWebhook")) == 1


@pytest.mark.parametrize("key", ["WEBHOOK_URL", "WEBHOOK_SECRET"])
async def test_set_without_its_keys_says_which_in_one_line(tmp_path: Path, key: str) -> None:
    async with FakeTelegram() as tg:
        done = await cli(tg, tmp_path, "webhook", "set", **{f"PARTNERBOT_TELEGRAM__{key}": ""})

    assert done.code == 2
    assert done.stderr.startswith(f"partnerbot: config: telegram.{key.lower()}: field required")
    assert len(done.stderr.splitlines()) == 1
    assert tg.calls_to("setWebhook") == []


async def test_telegram_refusing_or_out_of_reach_is_one_line(tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        tg.fail("setWebhook", status=400,
                description="Bad Request: bad webhook: Failed to resolve host")
        refused = await cli(tg, tmp_path, "webhook", "set")
        away = await cli(tg, tmp_path, "webhook", "info",
                         PARTNERBOT_TELEGRAM__API_BASE_URL=REFUSED_PORT)
        token = await cli(tg, tmp_path, "webhook", "delete",
                          PARTNERBOT_TELEGRAM__TOKEN="1234567:AAWrongTokenForTheseTests_00000")

    assert refused.code == 1
    assert refused.stderr == (
        "partnerbot: Telegram refused: Bad webhook: failed to resolve host\n"
    )
    assert away.code == 1 and len(away.stderr.splitlines()) == 1
    assert away.stderr.startswith("partnerbot: telegram.api_base_url: cannot reach the Bot API")
    assert token.code == 1
    assert token.stderr == "partnerbot: telegram.token: Telegram refused the bot token\n"


async def test_polling_refuses_to_start_while_a_webhook_is_set(tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        await tg.bot().set_webhook(URL, secret_token=SECRET)

        done = await cli(tg, tmp_path, "run", PARTNERBOT_SERVER__PORT=str(free_port()))

    assert done.code == 2
    assert done.stderr.splitlines()[-1] == (
        "partnerbot: a webhook is set: partnerbot webhook delete, or telegram.mode = webhook"
    )
    assert tg.get_updates_calls == []  # it never polled
    assert tg.calls_to("deleteWebhook") == []  # and left the webhook alone


async def test_webhook_mode_refuses_to_start_without_its_secret(tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        done = await cli(
            tg, tmp_path, "run", PARTNERBOT_TELEGRAM__MODE="webhook",
            PARTNERBOT_TELEGRAM__WEBHOOK_SECRET="", PARTNERBOT_SERVER__PORT=str(free_port()),
        )

    assert done.code == 2
    assert done.stderr.splitlines() == [
        "partnerbot: config: telegram.webhook_secret: field required (set it in the config"
        " file or PARTNERBOT_TELEGRAM__WEBHOOK_SECRET)"
    ]
    assert not (tmp_path / "bot.db").exists()  # refused before the database is touched
    assert tg.calls == []
