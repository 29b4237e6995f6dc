"""The fake Bot API's webhook side, checked with python-telegram-bot's own Bot: setWebhook
validated as Telegram validates it, getWebhookInfo, getUpdates refused while a webhook is
set (a long poll in progress too), and delivery: posted with the secret header,
redelivered until 2xx, one sender's next update held until the previous is acknowledged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from telegram.error import BadRequest, Conflict

from tests.fakes.telegram_api import FakeTelegram

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
URL = "https://bot.example.com/telegram/webhook"


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"url": "http://bot.example.com/hook"}, "an https url must be provided"),
        ({"url": "https://bot.example.com:8080/hook"}, "ports 80, 88, 443 or 8443"),
        ({"url": URL, "secret_token": "has space"}, "secret token contains unallowed"),
        ({"url": URL, "secret_token": "é"}, "secret token contains unallowed"),
        ({"url": URL, "secret_token": "a" * 257}, "secret token is too long"),
        ({"url": URL, "max_connections": 0}, "max_connections"),
        ({"url": URL, "max_connections": 101}, "max_connections"),
    ],
)
async def test_set_webhook_refuses_what_telegram_refuses(
    tg: FakeTelegram, kwargs: dict[str, object], error: str
) -> None:
    async with tg.bot() as bot:
        with pytest.raises(BadRequest, match=f"(?i){error}"):
            await bot.set_webhook(**kwargs)  # type: ignore[arg-type]
        assert (await bot.get_webhook_info()).url == ""


async def test_set_webhook_is_reported_by_get_webhook_info(tg: FakeTelegram) -> None:
    async with tg.bot() as bot:
        assert await bot.set_webhook(
            URL, secret_token="A-z_09" * 40, max_connections=100,
            allowed_updates=["message", "callback_query"],
        )
        info = await bot.get_webhook_info()

    assert (info.url, info.max_connections, info.pending_update_count) == (URL, 100, 0)
    assert info.allowed_updates == ("callback_query", "message")
    assert info.last_error_date is None


async def test_get_updates_is_refused_while_a_webhook_is_set_even_mid_poll(
    tg: FakeTelegram,
) -> None:
    async with tg.bot() as bot, tg.bot() as other:
        polling = asyncio.create_task(bot.get_updates(timeout=5))
        await asyncio.sleep(0.1)
        await other.set_webhook(URL)
        with pytest.raises(Conflict, match="webhook is active"):
            await polling
        with pytest.raises(Conflict, match="webhook is active"):
            await bot.get_updates(timeout=0)


async def receiver(statuses: list[int]) -> tuple[web.AppRunner, str, list[tuple[int, str]]]:
    """A webhook on loopback answering the given statuses in turn (then 200)."""
    seen: list[tuple[int, str]] = []

    async def hook(request: web.Request) -> web.Response:
        update = await request.json()
        secret = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        seen.append((update["update_id"], secret))
        return web.Response(status=statuses.pop(0) if statuses else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/hook", seen


async def test_delivery_posts_with_the_secret_and_redelivers_until_2xx(tg: FakeTelegram) -> None:
    runner, url, seen = await receiver([500, 503])
    try:
        async with tg.bot() as bot:
            await bot.set_webhook(URL, secret_token="s3cret")
        ann = tg.user(42, started=True)
        first = await ann.send("/one")
        tg.start_delivery(url, retry_delay=0.01)
        await tg.wait_until(lambda: tg.pending_updates == [], what="acknowledged")
        async with tg.bot() as bot:
            info = await bot.get_webhook_info()
    finally:
        await runner.cleanup()

    uid = first["update_id"]
    assert seen == [(uid, "s3cret")] * 3
    assert [(d.update_id, d.status) for d in tg.deliveries] == [(uid, 500), (uid, 503), (uid, 200)]
    assert tg.acknowledged == [uid]
    assert info.last_error_message == "Wrong response from the webhook: 503"


async def test_one_senders_next_update_waits_for_the_previous_acknowledgement(
    tg: FakeTelegram,
) -> None:
    runner, url, seen = await receiver([500])
    try:
        ann, bob = tg.user(42, started=True), tg.user(43, started=True)
        a1 = await ann.send("/a1")
        a2 = await ann.send("/a2")
        b1 = await bob.send("/b1")
        tg.start_delivery(url, secret="s", connections=3, retry_delay=0.2)
        await tg.wait_until(lambda: tg.pending_updates == [], what="all acknowledged")
    finally:
        await runner.cleanup()

    order = [uid for uid, _ in seen]
    # a1 failed once: a2 waited for it, bob did not.
    assert order.index(b1["update_id"]) < order.index(a2["update_id"])
    assert order.count(a1["update_id"]) == 2
    assert order.index(a2["update_id"]) > len(order) - 1 - order[::-1].index(a1["update_id"])
