"""A loopback HTTP load balancer for the tests and the benchmarks, in front of several
`partnerbot run` instances::

    async with Balancer([bot1.url, bot2.url, bot3.url]) as lb:
        ... post to lb.url + "/telegram/webhook" ...
        lb.mark_down(1)          # as a health check would: no request goes to bot2
        assert lb.served[0] > 0

It behaves as the reverse proxies operators put in front of web services (nginx's
`proxy_pass` to an upstream group, a cloud load balancer): each request goes to the next
backend in turn (round robin); a backend that refuses the connection is skipped and the
request goes to the next one (nothing was sent, so retrying cannot do anything twice); a
backend that accepted the request and then failed (died mid-request, timed out) gets the
client a 502/504, not a retry, because a POST may already have had its effect (nginx
does not retry non-idempotent requests either). The sender (Telegram, Stripe) retries
what did not get a 2xx.

It is an aiohttp server and client, so one client connection's keep-alive requests are
still spread request by request (a TCP proxy would pin them to one backend).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import aiohttp
from aiohttp import web

# Hop-by-hop headers (RFC 9110 7.6.1) and the ones aiohttp recomputes for the next hop.
_NOT_FORWARDED = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "host", "content-length",
})


@dataclass(frozen=True)
class Forwarded:
    """One request the balancer handled: where it went and what came back."""

    method: str
    path: str
    backend: int | None  # index into the backends; None when none answered
    status: int
    refused: tuple[int, ...]  # backends that refused the connection first


class Balancer:
    """Round-robin reverse proxy on 127.0.0.1 over `backends` (base URLs)."""

    def __init__(self, backends: Sequence[str], timeout_seconds: float = 30.0) -> None:
        if not backends:
            raise ValueError("a balancer needs at least one backend")
        self.backends = [b.rstrip("/") for b in backends]
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self.down: set[int] = set()
        self.served: Counter[int] = Counter()  # backend index -> requests it answered
        self.log: list[Forwarded] = []
        self._turn = itertools.count()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> Balancer:
        # No connection reuse across requests: an instance killed with SIGKILL must show up
        # as a refused connection on the next request, not as a dead pooled socket.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True), timeout=self.timeout,
            auto_decompress=False,
        )
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        sockets = self._runner.addresses
        port = int(sockets[0][1])
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def mark_down(self, index: int) -> None:
        """Send nothing to backend `index` until mark_up (a failed health check)."""
        self._check(index)
        self.down.add(index)

    def mark_up(self, index: int) -> None:
        self._check(index)
        self.down.discard(index)

    def set_backend(self, index: int, url: str) -> None:
        """Point slot `index` at another address (an instance restarted on a new port)."""
        self._check(index)
        self.backends[index] = url.rstrip("/")

    def _check(self, index: int) -> None:
        if not 0 <= index < len(self.backends):
            raise IndexError(f"no backend {index} (there are {len(self.backends)})")

    def _order(self) -> list[int]:
        """The backends to try for the next request: its turn first, then the others."""
        n = len(self.backends)
        first = next(self._turn) % n
        return [i for i in ((first + k) % n for k in range(n)) if i not in self.down]

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        refused: list[int] = []
        for index in self._order():
            try:
                async with self._session.request(
                    request.method, self.backends[index] + request.path_qs, headers=headers,
                    data=body, allow_redirects=False,
                ) as answer:
                    payload = await answer.read()
                    status = answer.status
                    back = {
                        k: v for k, v in answer.headers.items()
                        if k.lower() not in _NOT_FORWARDED
                    }
            except aiohttp.ClientConnectorError:
                refused.append(index)  # nothing was sent: the next backend may take it
                continue
            except (TimeoutError, aiohttp.ClientError) as exc:
                # Sent, then lost: it may have had its effect, so no retry elsewhere.
                status = 504 if isinstance(exc, TimeoutError) else 502
                self._note(request, index, status, refused)
                return web.Response(status=status, text=f"balancer: backend {index}: {exc!r}")
            self.served[index] += 1
            self._note(request, index, status, refused)
            return web.Response(status=status, body=payload, headers=back)
        self._note(request, None, 502, refused)
        return web.Response(status=502, text="balancer: no backend available")

    def _note(
        self, request: web.Request, backend: int | None, status: int, refused: list[int]
    ) -> None:
        self.log.append(Forwarded(request.method, request.path, backend, status, tuple(refused)))


__all__ = ["Balancer", "Forwarded"]
