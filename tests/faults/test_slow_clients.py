"""Hostile HTTP clients against `partnerbot run` at a low open-file limit (issue 11, point 1).

The real process runs between the loopback Bot API and Stripe servers with
RLIMIT_NOFILE at 512, a cap of 64 connections and 2 s timeouts. Attackers hold more
connections than the process has file descriptors, in three ways, and reconnect as soon
as they are cut: request heads trickled a header at a time, bodies trickled a byte at a
time, and idle keep-alive connections. Meanwhile `/healthz` answers 200, a signed
webhook is processed, a chat message gets its reply; afterwards every slow connection
has been closed by the server, the drops are counted in the metrics, the log holds a
bounded number of lines, and the process is alive and stops cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest

from tests.e2e import clean_env, console_script
from tests.e2e.test_run import SECRET, Running, running_bot, with_open_files
from tests.faults import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

OPEN_FILES = 512  # the bot's RLIMIT_NOFILE; the attack holds more connections than this
CAP = 64
TIMEOUT = 2  # s: header and body timeouts of the run under test
# Longer than TIMEOUT, as by default: aiohttp's keep-alive timer runs from a connection's
# start, so with the same value it would race the header deadline on a trickled head.
KEEPALIVE = 2 * TIMEOUT
ATTACKERS = 200  # of each kind: 600 connections, held and reopened
MAX_LOG_LINES = 150  # start-up and shutdown take ~20; the rest is rate-limited
SETTINGS = {
    "PARTNERBOT_SERVER__MAX_CONNECTIONS": str(CAP),
    "PARTNERBOT_SERVER__HEADER_TIMEOUT_SECONDS": str(TIMEOUT),
    "PARTNERBOT_SERVER__BODY_TIMEOUT_SECONDS": str(TIMEOUT),
    "PARTNERBOT_SERVER__KEEPALIVE_TIMEOUT_SECONDS": str(KEEPALIVE),
}

HEAD = b"POST /stripe/webhook HTTP/1.1\r\nHost: bot\r\n"
BODY_HEAD = (
    b"POST /stripe/webhook HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100000\r\n\r\n{"
)
IDLE = b"GET /healthz HTTP/1.1\r\nHost: bot\r\n\r\n"
T = TypeVar("T")


@dataclass
class Attack:
    """Slow connections to `port`, reopened while `running`; counts who closed them."""

    port: int
    running: bool = True
    closed_by_server: Counter[str] = field(default_factory=Counter)
    opened: Counter[str] = field(default_factory=Counter)

    async def one(self, kind: str, first: bytes, drip: bytes | None) -> bool:
        """One connection: `first`, then `drip` every 0.5 s; True if the server closed
        it (EOF or reset) before the attack stopped."""
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False  # refused or reset while connecting: the server shed it
        self.opened[kind] += 1
        try:
            writer.write(first)
            while self.running:
                try:
                    # Read whatever comes (an idle connection's answer); EOF = closed.
                    data = await asyncio.wait_for(reader.read(65536), 0.5)
                except TimeoutError:
                    if drip is not None:
                        writer.write(drip)
                        await writer.drain()
                    continue
                if not data:
                    return True
            return False
        except (ConnectionError, OSError):
            return True
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def attacker(self, kind: str, first: bytes, drip: bytes | None) -> None:
        while self.running:
            if await self.one(kind, first, drip):
                self.closed_by_server[kind] += 1
            await asyncio.sleep(0.2)

    def start(self) -> list[asyncio.Task[None]]:
        kinds = (("head", HEAD, b"X-Slow: 1\r\n"), ("body", BODY_HEAD, b" "), ("idle", IDLE, None))
        return [
            asyncio.create_task(self.attacker(kind, first, drip))
            for kind, first, drip in kinds
            for _ in range(ATTACKERS)
        ]


async def eventually_ok(
    what: str, attempt: Callable[[], Awaitable[T | None]], within: float = 60.0
) -> T:
    """Retry `attempt()` (a coroutine function returning a value or None) as a client
    would, until it gives a value; the bound only keeps a broken run from hanging."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
            result = await attempt()
            if result is not None:
                return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: never served during the attack")


async def fetch(url: str) -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as s, s.get(url) as r:
        return r.status, await r.text()


async def served_during_attack(bot: Running) -> None:
    async def health() -> int | None:
        status, _ = await fetch(bot.http + "/healthz")
        return status if status == 200 else None

    assert await eventually_ok("/healthz", health) == 200

    event = {"id": "evt_slow_clients_1", "object": "event", "type": "customer.created",
             "data": {"object": {"id": "cus_1", "object": "customer"}}}

    async def webhook() -> str | None:
        status, body = await bot.stripe.deliver_webhook(
            event, bot.http + "/stripe/webhook", SECRET, total_seconds=5
        )
        return body if status == 200 else None

    assert '"ignored"' in await eventually_ok("the webhook", webhook)

    user = bot.tg.user(930_001, "Cleo")
    await user.send("/help")
    reply = await user.wait_reply(60)
    assert reply.text, "the chat was answered"


async def closed_by_the_server(port: int, request: bytes, within: float = 30.0) -> bool:
    """Open one connection, send `request` (a partial one) and wait for the server to
    close it; False if it is still open after `within` (the timeouts are 2 and 4 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                data = await asyncio.wait_for(reader.read(65536), 1)
            except TimeoutError:
                continue
            except (ConnectionError, OSError):
                return True
            if not data:
                return True
        return False
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def test_slow_clients_cannot_take_the_bot_down(tmp_path: Path) -> None:
    async with running_bot(tmp_path, open_files=OPEN_FILES, **SETTINGS) as bot:
        port = int(bot.http.rsplit(":", 1)[1])
        attack = Attack(port)
        tasks = attack.start()
        try:
            await asyncio.sleep(3)  # every slot taken, the rest knocking
            await served_during_attack(bot)
            await asyncio.sleep(KEEPALIVE)
        finally:
            attack.running = False
            await asyncio.gather(*tasks)

        assert sum(attack.opened.values()) > OPEN_FILES, attack.opened
        for kind in ("head", "body", "idle"):
            assert attack.closed_by_server[kind] > 0, (kind, attack.closed_by_server)

        # Below the cap, each kind of slow client is closed by its own timeout.
        slow = await asyncio.gather(
            closed_by_the_server(port, HEAD),
            closed_by_the_server(port, BODY_HEAD),
            closed_by_the_server(port, b""),
            closed_by_the_server(port, IDLE),
        )
        assert list(slow) == [True, True, True, True], "head, body, silent, idle"

        status, metrics = await bot.get("/metrics", bot.metrics)
        assert status == 200
        dropped = {
            reason: metrics.count(
                f'partnerbot_http_connections_dropped_total{{reason="{reason}"}}'
            )
            for reason in ("evicted", "header_timeout", "body_timeout")
        }
        assert all(dropped.values()), dropped
        assert 'partnerbot_webhooks_total{result="ignored"} 1.0' in metrics

        assert bot.proc.returncode is None, "the process is alive"
        bot.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(bot.proc.wait(), 30) == 0
        lines = bot.log.read_text(errors="replace").splitlines()
        assert len(lines) <= MAX_LOG_LINES, (len(lines), lines[-20:])


async def test_a_cap_that_does_not_fit_the_open_file_limit_stops_start_up(
    tmp_path: Path,
) -> None:
    """256 connections and the bot's own ~320 descriptors do not fit in 256: start-up
    says so in one line instead of running into EMFILE under attack."""
    proc = await asyncio.create_subprocess_exec(
        *with_open_files(256, [*console_script(), "run"]),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
        env=clean_env(
            PARTNERBOT_TELEGRAM__TOKEN="123456:not-checked-before-the-limit",
            PARTNERBOT_TELEGRAM__API_BASE_URL=f"http://127.0.0.1:{free_port()}/bot",
            PARTNERBOT_DATABASE__PATH=str(tmp_path / "bot.db"),
            PARTNERBOT_SERVER__PORT=str(free_port()),
        ),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, (out, err)
    line = err.decode().strip().splitlines()[-1]
    assert line.startswith("partnerbot: server.max_connections: 256 connections"), line
    assert "open-file limit of 256" in line and "ulimit -n" in line, line
