"""The HTTP client for Bot API calls: at most CONNECTIONS at once, every one kept for reuse.

httpcore's pool (httpx 0.28, httpcore 1.0) has two costs that grow with a burst of calls:
- it walks every connection it holds on each request it starts and ends, and asks the
  socket of each idle one whether the server closed it (encode/httpcore#928, #1035), about
  60 µs per idle connection per request on loopback;
- once it holds more connections than `max_keepalive_connections`, it closes every idle
  one it meets (it compares the count of all its connections, busy ones included, with the
  keep-alive limit), so a burst wider than the keep-alive limit churns connections: each
  later call opens a new one, a TCP and, against api.telegram.org, a TLS handshake.
Bounding the calls in flight to the number of connections kept alive avoids both: the pool
never holds more than CONNECTIONS, all of them stay open for the next call, and a call
beyond the bound waits here for a free slot, which costs one future instead of a scan.

Sixteen at once is far above what Telegram's limits let a bot use (about 30 messages a
second overall, each call a few tens of milliseconds away), and it bounds the file
descriptors the bot spends on Bot API calls. getUpdates has its own client (python-telegram-
bot builds a separate one for it), so a long poll never holds one of these slots.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from telegram.error import TimedOut
from telegram.request import HTTPXRequest

CONNECTIONS = 16  # calls in flight, and connections kept open between calls
POOL_TIMEOUT = 10.0  # seconds a call may wait for a free slot before it fails
KEEPALIVE_EXPIRY = 5.0  # seconds an idle connection is kept (httpx's default)


class BotApiRequest(HTTPXRequest):
    """HTTPXRequest with its calls in flight bounded to the connections it keeps."""

    def __init__(
        self,
        connections: int = CONNECTIONS,
        slot_timeout: float = POOL_TIMEOUT,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
    ) -> None:
        limits = httpx.Limits(
            max_connections=connections,
            max_keepalive_connections=connections,
            keepalive_expiry=keepalive_expiry,
        )
        super().__init__(
            connection_pool_size=connections,
            pool_timeout=slot_timeout,
            httpx_kwargs={"limits": limits},
        )
        self.slots = asyncio.Semaphore(connections)
        self.slot_timeout = slot_timeout

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        try:
            async with asyncio.timeout(self.slot_timeout):
                await self.slots.acquire()
        except TimeoutError:
            # The same error HTTPXRequest raises when its own pool is full: nothing was sent.
            raise TimedOut(
                "Pool timeout: every Bot API connection stayed busy; the request was not sent"
            ) from None
        try:
            return await super().do_request(*args, **kwargs)
        finally:
            self.slots.release()


def bot_api_request() -> HTTPXRequest:
    """What `ApplicationBuilder().request(...)` gets, for every call but getUpdates."""
    return BotApiRequest()
