"""The Bot API client keeps few idle connections after a burst (bot/api_request.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bot.api_request import KEEPALIVE, bot_api_request

BURST = 3 * KEEPALIVE


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


async def test_after_a_burst_at_most_keepalive_connections_are_reused(
    server: tuple[str, list[int]],
) -> None:
    url, ports = server
    request = bot_api_request()
    await request.initialize()
    try:
        await asyncio.gather(*(request.do_request(f"{url}/getMe", "POST") for _ in range(BURST)))
        first = set(ports)
        assert len(first) == BURST  # the burst did open a connection per request
        ports.clear()
        await asyncio.gather(*(request.do_request(f"{url}/getMe", "POST") for _ in range(BURST)))
        reused = first & set(ports)
    finally:
        await request.shutdown()
    # httpx's default would keep 20 open; the rest were closed once idle.
    assert 0 < len(reused) <= KEEPALIVE
