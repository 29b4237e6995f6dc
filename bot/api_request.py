"""The HTTP client for Bot API calls: python-telegram-bot's defaults, fewer idle connections.

httpcore's pool walks every connection it holds on each request it starts and ends, and
asks the socket of each idle one whether the server closed it (encode/httpcore#928,
#1035). A burst of replies leaves up to httpx's default of 20 idle keep-alive connections
behind, and each costs every later request a system call and some bookkeeping (about
60 µs per idle connection per request, measured on loopback). In bench/e2e.py keeping 8
took about a third off the CPU per update, of the bot and of the bare baseline alike
(the baseline is built with this client too). Eight idle connections still cover the
bursts Telegram's limits allow (about 30 messages a second); the pool may still open up to
256 at once, as python-telegram-bot's builder does.
"""

from __future__ import annotations

import httpx
from telegram.request import HTTPXRequest

MAX_CONNECTIONS = 256  # ApplicationBuilder's default for Bot API calls
KEEPALIVE = 8  # idle connections kept open for the next requests


def bot_api_request() -> HTTPXRequest:
    """What `ApplicationBuilder().request(...)` gets, for every call but getUpdates."""
    limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=KEEPALIVE)
    return HTTPXRequest(connection_pool_size=MAX_CONNECTIONS, httpx_kwargs={"limits": limits})
