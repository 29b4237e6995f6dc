"""The Bot API client bounds its calls in flight and reuses every connection it opens
(bot/api_request.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from telegram.error import TimedOut

from bot.api_request import CONNECTIONS, BotApiRequest

BURST = 3 * CONNECTIONS


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[int]]]:
    """A Bot API stand-in that answers slowly enough for a burst to need many connections;
    it records the client port of every request (one port per connection)."""
    ports: list[int] = []

    async def answer(request: web.Request) -> web.Response:
        assert request.transport is not None
        ports.append(request.transport.get_extra_info("peername")[1])
        await asyncio.sleep(0.05)
        return web.json_response({"ok": True, "result": True})

    app = web.Application()
    app.router.add_post("/bot{token}/{method}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}/bot123:abc", ports
    await runner.cleanup()


async def test_a_burst_wider_than_the_bound_opens_only_the_bound_and_reuses_it(
    server: tuple[str, list[int]],
) -> None:
    url, ports = server
    # A long keep-alive expiry: a loaded machine must not let connections expire between
    # the bursts, which would open new ones for a reason other than the one tested.
    request = BotApiRequest(keepalive_expiry=120.0)
    await request.initialize()
    try:
        await asyncio.gather(*(request.do_request(f"{url}/getMe", "POST") for _ in range(BURST)))
        first = set(ports)
        assert len(ports) == BURST  # every call was answered
        assert len(first) == CONNECTIONS  # never more connections than the bound
        ports.clear()
        await asyncio.gather(*(request.do_request(f"{url}/getMe", "POST") for _ in range(BURST)))
        second = set(ports)
    finally:
        await request.shutdown()
    # httpcore alone would have closed idle connections mid-burst and opened new ones.
    assert second == first


async def test_a_call_that_waits_too_long_for_a_slot_is_not_sent(
    server: tuple[str, list[int]],
) -> None:
    url, ports = server
    request = BotApiRequest(connections=1, slot_timeout=0.01)
    await request.initialize()
    try:
        outcomes = await asyncio.gather(
            request.do_request(f"{url}/getMe", "POST"),
            request.do_request(f"{url}/getMe", "POST"),
            return_exceptions=True,
        )
    finally:
        await request.shutdown()
    assert outcomes[0] == (200, b'{"ok": true, "result": true}')
    assert isinstance(outcomes[1], TimedOut)
    assert len(ports) == 1  # the second call never reached the server
