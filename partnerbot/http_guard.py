"""Connection discipline for the public HTTP listener: a cap on open connections and a
deadline on request heads.

Why a protocol wrapper: aiohttp has no header-read timeout of its own (its
`keepalive_timeout` runs from the connection's start or the last response, so a client
trickling a head is cut only when that long keep-alive runs out) and no connection cap
(TCPSite accepts as long as the process has file descriptors; at the open-file limit
`accept()` fails with EMFILE and the bot's own Bot API calls can no longer open sockets).
`web.Server` and `RequestHandler` offer no public hook for either, so each connection's
protocol (the RequestHandler that `AppRunner.server()` makes, a public call) is wrapped
in a `GuardedConnection` that forwards every asyncio protocol call to it unchanged and
adds the two rules. No private attribute of aiohttp is read.

At the cap a new connection does not queue: it takes the slot of the connection that
has waited longest without being served (a slow or idle client), so a slow-loris
attacker holding every slot cannot keep a webhook or a health probe out; when every slot
is serving a request, the new connection is closed at once. Either way it is counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from aiohttp import StreamReader, web

log = logging.getLogger(__name__)


class Dropped(Enum):
    """Why the server closed a connection itself (label of the drop counter)."""

    REFUSED = "refused"  # at the cap, every slot serving a request
    EVICTED = "evicted"  # at the cap, its slot given to a new connection
    HEADER_TIMEOUT = "header_timeout"
    BODY_TIMEOUT = "body_timeout"


@dataclass(frozen=True)
class HttpLimits:
    """What one listener allows a client (server.* settings)."""

    max_connections: int = 256
    header_timeout: float = 10.0  # first byte of a request to the end of its head
    body_timeout: float = 30.0  # end of the head to the end of the body
    keepalive_timeout: float = 15.0  # an idle connection between requests


OnDrop = Callable[[Dropped], None]

_LINES = {
    Dropped.REFUSED: "HTTP connection refused: all %d connections are serving requests",
    Dropped.EVICTED: "HTTP connection cap (%d) reached: closed the longest-waiting one",
    Dropped.HEADER_TIMEOUT: "HTTP request headers too slow: connection closed (cap %d)",
    Dropped.BODY_TIMEOUT: "HTTP request body too slow: connection closed (cap %d)",
}


class ConnectionGuard:
    """Counts the open connections of one listener and enforces `HttpLimits`."""

    def __init__(self, limits: HttpLimits, on_drop: OnDrop) -> None:
        self.limits = limits
        self.on_drop = on_drop
        # Every open connection, in the order each last started waiting for a request
        # (a dict keeps insertion order), so the oldest waiter is found first.
        self.open: dict[asyncio.BaseTransport, GuardedConnection] = {}

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """The protocol factory for `loop.create_server`."""
        return lambda: GuardedConnection(self, inner())

    def drop(self, why: Dropped) -> None:
        self.on_drop(why)
        # One template per reason: partnerbot/logs.py's RateLimitFilter folds each into
        # one line a minute with a count.
        log.warning(_LINES[why], self.limits.max_connections)

    def admit(self, conn: GuardedConnection, transport: asyncio.BaseTransport) -> bool:
        if len(self.open) >= self.limits.max_connections:
            victim = next((c for c in self.open.values() if c.evictable()), None)
            if victim is None:
                self.drop(Dropped.REFUSED)
                return False
            self.drop(Dropped.EVICTED)
            victim.close()
        self.open[transport] = conn
        return True

    def release(self, transport: asyncio.BaseTransport) -> None:
        self.open.pop(transport, None)

    # Called by the middleware (partnerbot/http.py) around each request.

    def request_started(self, request: web.BaseRequest) -> None:
        conn = self.open.get(request.transport) if request.transport else None
        if conn is not None:
            conn.request_started(request.content if request.body_exists else None)

    def request_finished(self, request: web.BaseRequest) -> None:
        transport = request.transport
        conn = self.open.pop(transport, None) if transport else None
        if conn is not None and transport is not None:
            self.open[transport] = conn  # now the newest waiter
            conn.between_requests()


class GuardedConnection(asyncio.Protocol):
    """One connection: aiohttp's protocol inside, a deadline on each request's head and
    body."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard, self.inner = guard, inner
        self.transport: asyncio.Transport | None = None
        self.admitted = False
        # Whether a request is in our handlers, and its body stream if it has one.
        self.serving = False
        self.body: StreamReader | None = None
        self.deadline: asyncio.TimerHandle | None = None

    def evictable(self) -> bool:
        """Waiting for a request, or for the rest of a body: a slow client's slot. A
        request whose body is in is being served and keeps its slot."""
        return not self.serving or (self.body is not None and not self.body.is_eof())

    def close(self) -> None:
        """Close at once: a slow client gets no graceful goodbye (abort, not close, so an
        unread send buffer cannot hold the descriptor)."""
        self.cancel_deadline()
        if self.transport is not None:
            self.guard.release(self.transport)  # now, not when asyncio calls connection_lost
            if not self.transport.is_closing():
                self.transport.abort()

    def cancel_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def head_timed_out(self) -> None:
        self.deadline = None
        self.guard.drop(Dropped.HEADER_TIMEOUT)
        self.close()

    def body_timed_out(self) -> None:
        self.deadline = None
        if self.body is not None and not self.body.is_eof():
            self.guard.drop(Dropped.BODY_TIMEOUT)
            self.close()

    def request_started(self, body: StreamReader | None) -> None:
        self.cancel_deadline()
        self.serving, self.body = True, body
        if body is not None and not body.is_eof():
            loop = asyncio.get_running_loop()
            self.deadline = loop.call_later(self.guard.limits.body_timeout, self.body_timed_out)

    def between_requests(self) -> None:
        # Idle time is aiohttp's keepalive_timeout; the head deadline starts again with
        # the first byte of the next request.
        self.cancel_deadline()
        self.serving, self.body = False, None

    # --- asyncio.Protocol, forwarded to aiohttp's protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.guard.admit(self, transport):
            transport.abort()
            return
        self.admitted = True
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self.admitted:
            return
        if not self.serving and self.deadline is None:
            loop = asyncio.get_running_loop()
            self.deadline = loop.call_later(self.guard.limits.header_timeout, self.head_timed_out)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def pause_writing(self) -> None:
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_deadline()
        if self.transport is not None:
            self.guard.release(self.transport)
        if self.admitted:
            self.inner.connection_lost(exc)
