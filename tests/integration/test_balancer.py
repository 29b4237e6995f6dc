"""The loopback balancer (tests/fakes/balancer) the multi-instance tests and the bench
put in front of several `partnerbot run` instances."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web

from tests.fakes.balancer import Balancer
from tests.faults import free_port


@asynccontextmanager
async def backend(name: str, seen: list[tuple[str, str, bytes, str]]) -> AsyncIterator[str]:
    """A small HTTP server answering with its name; records (name, path, body, secret)."""

    async def answer(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((name, request.path_qs, body,
                     request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")))
        if request.path == "/die":
            assert request.transport is not None
            request.transport.abort()  # the instance dies with the request in hand
            await asyncio.sleep(1)
        return web.Response(status=201, text=name, headers={"X-Backend": name})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def post(url: str, body: bytes = b"{}", **headers: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers) as r:
        return r.status, await r.text(), r.headers.get("X-Backend", "")


async def test_requests_are_spread_round_robin_and_forwarded_whole() -> None:
    seen: list[tuple[str, str, bytes, str]] = []
    async with (
        backend("a", seen) as a, backend("b", seen) as b, backend("c", seen) as c,
        Balancer([a, b, c]) as lb,
    ):
        answers = [
            await post(f"{lb.url}/telegram/webhook?n={n}", f'{{"n": {n}}}'.encode(),
                       **{"X-Telegram-Bot-Api-Secret-Token": "s3cret"})
            for n in range(6)
        ]
    assert [a[0] for a in answers] == [201] * 6
    assert sorted(a[1] for a in answers) == ["a", "a", "b", "b", "c", "c"]
    assert [a[2] for a in answers] == [a[1] for a in answers]  # response headers come back
    assert lb.served == {0: 2, 1: 2, 2: 2}
    assert {(path, body, secret) for _, path, body, secret in seen} == {
        (f"/telegram/webhook?n={n}", f'{{"n": {n}}}'.encode(), "s3cret") for n in range(6)
    }


async def test_a_backend_that_refuses_connections_is_skipped() -> None:
    seen: list[tuple[str, str, bytes, str]] = []
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with backend("a", seen) as a, Balancer([a, dead]) as lb:
        answers = [await post(lb.url + "/x") for _ in range(4)]
    assert [(s, t) for s, t, _ in answers] == [(201, "a")] * 4
    assert lb.served == {0: 4}
    assert [f.refused for f in lb.log].count((1,)) == 2  # its turn came twice


async def test_a_backend_marked_down_gets_nothing_until_marked_up() -> None:
    seen: list[tuple[str, str, bytes, str]] = []
    async with backend("a", seen) as a, backend("b", seen) as b, Balancer([a, b]) as lb:
        lb.mark_down(1)
        down = [(await post(lb.url + "/x"))[1] for _ in range(4)]
        lb.mark_up(1)
        up = [(await post(lb.url + "/x"))[1] for _ in range(4)]
    assert down == ["a"] * 4
    assert sorted(up) == ["a", "a", "b", "b"]


async def test_no_backend_left_answers_502() -> None:
    async with Balancer([f"http://127.0.0.1:{free_port()}"]) as lb:
        status, text, _ = await post(lb.url + "/x")
    assert status == 502 and "no backend available" in text
    assert lb.log[-1].backend is None


async def test_a_request_lost_mid_way_is_not_sent_again_elsewhere() -> None:
    """The backend had the request: it may have acted on it, so the client gets a 502
    and retries itself, as Telegram and Stripe do."""
    seen: list[tuple[str, str, bytes, str]] = []
    async with backend("a", seen) as a, backend("b", seen) as b, Balancer([a, b]) as lb:
        status, _, _ = await post(lb.url + "/die")
    assert status == 502
    assert [name for name, *_ in seen] == ["a"]
    assert lb.served == {}
