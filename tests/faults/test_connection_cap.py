"""The public listener's cap, in process (issue 11, point 1): at the cap a new connection
takes the slot of a waiting (idle or slow) one, and is refused at once only when every
slot is serving a request; each drop reaches the metrics hook."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from partnerbot.http import HttpServer, build_http_app
from partnerbot.http_guard import Dropped, HttpLimits


async def closed(reader: asyncio.StreamReader) -> bool:
    """True once the server has closed the connection (EOF or reset)."""
    try:
        while await asyncio.wait_for(reader.read(65536), 30):
            pass
    except (ConnectionError, OSError):
        pass
    return True


async def test_a_new_connection_evicts_a_waiting_one_and_is_refused_when_all_serve() -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow_health() -> dict[str, bool]:
        entered.set()
        await release.wait()  # a request in our handler: its slot is not taken
        return {"database": True}

    dropped: list[Dropped] = []
    server = HttpServer(
        build_http_app(None, slow_health), "127.0.0.1", 0,
        HttpLimits(max_connections=1, header_timeout=30, body_timeout=30,
                   keepalive_timeout=30),
        on_drop=dropped.append,
    )
    await server.start()
    try:
        port = int(server.addresses[0][1])
        # A silent connection holds the only slot; a new one takes it.
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.1)
        async with aiohttp.ClientSession() as http:
            probe = asyncio.create_task(http.get(f"http://127.0.0.1:{port}/healthz"))
            await asyncio.wait_for(entered.wait(), 30)
            assert await closed(idle_reader)
            assert dropped == [Dropped.EVICTED]

            # The slot now serves a request: the next connection is closed at once.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await closed(reader)
            assert dropped == [Dropped.EVICTED, Dropped.REFUSED]

            release.set()
            resp = await probe
            assert resp.status == 200
            resp.release()
        for w in (idle_writer, writer):
            w.close()
            with contextlib.suppress(ConnectionError, OSError):
                await w.wait_closed()
    finally:
        await server.stop()
