"""The load process of bench/e2e.py: the loopback Bot API server and the users.

It runs in a process of its own (see bench/e2e.py's docstring): the server and the users
stay off the bot's event loop and off its core. The bot process drives it through `Load`.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests.fakes is not installed; the repository root holds it
    sys.path.insert(0, str(ROOT))

from tests.fakes.telegram_api import FakeTelegram, FakeUser  # noqa: E402

TOKEN = "123456789:AAFakeTokenForBenchOnly_0123456789abcd"
BOT_USERNAME = "partner_bench_bot"
CHANNELS = 5  # per partner: chan1 .. chan5
REPLY_TIMEOUT = 20.0  # seconds; a reply that late is a failure, not a sample
QUIET = 0.3  # seconds without a reply before "no second reply" is believed
BARE_TEXT = "ok"
READS = ("/balance", "/channels", "/history")
# Webhook mode (bench/e2e_cluster.py): the server posts updates over this many connections,
# as Telegram does up to setWebhook's max_connections (default 40).
WEBHOOK_CONNECTIONS = 40
# What the first line of a successful answer starts with (anything else is a refusal,
# a usage hint or the apology of the error handler).
EXPECTED = {
    "/balance": "Balance: ",
    "/channels": "Channels of ",
    "/history": "History of ",
    "/allocate": "Gave 1 day to ",
}



class LoadServer(FakeTelegram):
    """FakeTelegram that hands each bot message to the one user waiting for it.

    FakeChat.wait_reply re-checks every waiter on every change of the server's state, which
    with hundreds of users waiting costs the load process more than the server itself; here
    the message is handed over where the server records it (its `_record_event` hook).
    """

    def __init__(self) -> None:
        super().__init__(TOKEN, bot_username=BOT_USERNAME, bot_first_name="Partner Bench Bot")
        self.waiters: dict[int, asyncio.Future[tuple[float, str]]] = {}
        self.stray = 0  # bot messages nobody was waiting for (a second reply, ...)

    def _record_event(
        self, state: Any, kind: str, method: str, params: Any, message: Any, markup: Any
    ) -> None:
        super()._record_event(state, kind, method, params, message, markup)
        waiter = self.waiters.pop(int(state.id), None)
        if waiter is None or waiter.done():
            self.stray += 1
        else:
            waiter.set_result((time.perf_counter(), str(message.get("text", ""))))


@dataclass(frozen=True)
class PhaseRequest:
    side: str
    seconds: float
    seed: str
    writes: float  # share of /allocate
    inflight: int  # messages in flight at once (each from a different user)
    cover_all: bool = False  # go on past the window until every user has sent one


@dataclass
class PhaseResult:
    side: str
    seconds: float
    in_window: int  # replies received before the window closed
    replied: int  # every reply, the tail after the window included
    latencies: dict[str, list[float]]  # command -> seconds, update queued to reply recorded
    server_cpu: float  # CPU seconds of the load process within the window
    stray: int
    calls: dict[str, int]  # Bot API requests the bot made during the phase, by method
    bad: list[str] = field(default_factory=list)  # missing or unexpected replies (first few)
    bad_count: int = 0


def pick(rng: random.Random, writes: float) -> tuple[str, str]:
    """(command, text) for the next message."""
    if rng.random() < writes:
        return "/allocate", f"/allocate chan{rng.randint(1, CHANNELS)} 1"
    command = rng.choice(READS)
    return command, command


async def run_phase(
    tg: LoadServer,
    users: list[FakeUser],
    request: PhaseRequest,
) -> PhaseResult:
    """`request.inflight` senders, each taking the user who has waited longest, sending one
    message as that user and waiting for the reply, until the window closes (and, with
    `cover_all`, until every user has had a turn)."""
    loop = asyncio.get_running_loop()
    latencies: dict[str, list[float]] = {c: [] for c in EXPECTED}
    bad: list[str] = []
    counts = Counter[str]()
    rng = random.Random(request.seed)
    idle = deque(rng.sample(users, len(users)))
    untouched = {u.user_id for u in users} if request.cover_all else set()
    stray_before = tg.stray
    calls_before, polls_before = len(tg.calls), len(tg.get_updates_calls)
    cpu_before = time.process_time()
    start = time.perf_counter()
    deadline = start + request.seconds
    cpu_at_deadline: list[float] = []
    loop.call_later(request.seconds, lambda: cpu_at_deadline.append(time.process_time()))

    async def sender() -> None:
        while idle and (time.perf_counter() < deadline or untouched):
            user = idle.popleft()
            untouched.discard(user.user_id)
            command, text = pick(rng, request.writes)
            waiter: asyncio.Future[tuple[float, str]] = loop.create_future()
            tg.waiters[user.user_id] = waiter
            queued = time.perf_counter()
            await user.send(text)
            try:
                answered, reply = await asyncio.wait_for(waiter, REPLY_TIMEOUT)
            except TimeoutError:
                tg.waiters.pop(user.user_id, None)
                counts["bad"] += 1
                bad.append(f"user {user.user_id}: no reply to {text!r} in {REPLY_TIMEOUT:.0f} s")
                return
            idle.append(user)
            latencies[command].append(answered - queued)
            counts["in_window" if answered <= deadline else "tail"] += 1
            wanted = EXPECTED[command] if request.side == "ours" else BARE_TEXT
            if not (reply.startswith(wanted) if request.side == "ours" else reply == wanted):
                counts["bad"] += 1
                if len(bad) < 5:
                    bad.append(f"user {user.user_id}: {text!r} -> {reply[:80]!r}")

    await asyncio.gather(*(sender() for _ in range(min(request.inflight, len(users)))))
    cpu = (cpu_at_deadline or [time.process_time()])[0] - cpu_before
    await asyncio.sleep(QUIET)  # a second reply to anything would arrive here
    return PhaseResult(
        side=request.side,
        seconds=request.seconds,
        in_window=counts["in_window"],
        replied=counts["in_window"] + counts["tail"],
        latencies=latencies,
        server_cpu=cpu,
        stray=tg.stray - stray_before,
        calls=dict(Counter(c.method for c in tg.calls[calls_before:]))
        | {"getUpdates": len(tg.get_updates_calls) - polls_before},
        bad=bad,
        bad_count=counts["bad"],
    )


def final_check(tg: LoadServer, users: list[FakeUser]) -> list[str]:
    """Problems seen over the whole run, from the server's own records."""
    problems = []
    for user in users:
        sent, replies = len(user.sent), len(user.replies)
        if sent != replies and len(problems) < 5:
            problems.append(f"user {user.user_id}: {sent} updates, {replies} bot messages")
    problems += [f"server answered {e.method}: {e.status} {e.description}" for e in tg.errors[:5]]
    if tg.pending_updates:
        problems.append(f"{len(tg.pending_updates)} updates never confirmed by a bot")
    return problems


async def serve(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    async with LoadServer() as tg:
        users: list[FakeUser] = []
        conn.send(tg.base_url)
        while True:
            request = await loop.run_in_executor(None, conn.recv)
            match request:
                case ("users", list() as ids):
                    users = [tg.user(uid, f"User{uid}") for uid in ids]
                    conn.send(len(users))
                case ("phase", PhaseRequest() as phase):
                    conn.send(await run_phase(tg, users, phase))
                case ("webhook", str() as url, str() as secret):
                    # bench/e2e_cluster.py: POST each update to the instances' balancer.
                    tg.start_delivery(url, secret=secret, connections=WEBHOOK_CONNECTIONS)
                    conn.send(None)
                case ("webhook", None, None):
                    await tg.stop_delivery()
                    conn.send(None)
                case ("check",):
                    conn.send(final_check(tg, users))
                case ("stop",):
                    conn.send(None)
                    return
                case _:
                    raise ValueError(f"load process: unknown request {request!r}")


def load_process(conn: Connection) -> None:
    """Entry point of the load process."""
    asyncio.run(serve(conn))


class Load:
    """The bot process's handle on the load process (`target`: its entry point; bench/flood.py
    brings its own)."""

    def __init__(self, target: Callable[[Connection], None] = load_process) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(child,), daemon=True)
        self.process.start()
        child.close()

    async def call(self, *request: object) -> Any:
        self.conn.send(request)
        return await asyncio.get_running_loop().run_in_executor(None, self.conn.recv)

    async def base_url(self) -> str:
        url = await asyncio.get_running_loop().run_in_executor(None, self.conn.recv)
        return str(url)

    def close(self) -> None:
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
