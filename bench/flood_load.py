"""The load process of bench/flood.py: the loopback Bot API server, the victim and a flooder.

It runs in a process of its own, like bench/e2e_load.py (whose LoadServer and Load it uses):
the server, the victim and the flooder stay off the bot's event loop and off its core.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests.fakes is not installed; the repository root holds it
    sys.path.insert(0, str(ROOT))

from e2e_load import REPLY_TIMEOUT, LoadServer  # noqa: E402  (bench/ is the script's directory)

from tests.fakes.telegram_api import FakeUser  # noqa: E402

TICK = 0.01  # seconds between the flooder's sends after its burst


@dataclass(frozen=True)
class FloodPhase:
    name: str
    seconds: float
    victims: tuple[int, ...]  # user ids of the victims; each sends /balance once a period
    period: float  # seconds (a victim stays well within a member's allowance)
    flooder: int | None  # user id of the flooder; None: the bot is otherwise idle
    text: str = ""  # what the flooder sends
    burst: int = 0  # sent at once when the phase starts
    rate: float = 0.0  # then this many a second until the window closes


@dataclass(frozen=True)
class FloodResult:
    name: str
    latencies: tuple[float, ...]  # the victims', update queued to answer recorded (seconds)
    victim_bad: int  # answers that were not the balance, or did not come
    flood_sent: int
    flood_answers: int  # bot messages the flooder got (until the server was quiet again)
    flood_too_many: int  # of which "too many"
    drain_seconds: float  # from the window's end until the bot had fetched every update


async def run_phase(tg: LoadServer, users: dict[int, FakeUser], phase: FloodPhase) -> FloodResult:
    loop = asyncio.get_running_loop()
    flooder = users.get(phase.flooder) if phase.flooder is not None else None
    answers_before = len(flooder.replies) if flooder is not None else 0
    latencies: list[float] = []
    bad = 0
    sent = 0
    deadline = time.perf_counter() + phase.seconds

    async def flood() -> None:
        nonlocal sent
        if flooder is None:
            return
        for _ in range(phase.burst):
            tg.user_message(flooder, phase.text)
            sent += 1
        started = time.perf_counter()
        while time.perf_counter() < deadline and phase.rate > 0:
            await asyncio.sleep(TICK)
            due = int((time.perf_counter() - started) * phase.rate) + phase.burst - sent
            for _ in range(max(0, due)):
                tg.user_message(flooder, phase.text)
                sent += 1

    async def ask(victim: FakeUser, offset: float) -> None:
        nonlocal bad
        await asyncio.sleep(offset)  # the victims take turns, evenly spread over a period
        while time.perf_counter() < deadline:
            slot = time.perf_counter()
            waiter: asyncio.Future[tuple[float, str]] = loop.create_future()
            tg.waiters[victim.user_id] = waiter
            queued = time.perf_counter()
            await victim.send("/balance")
            try:
                answered, text = await asyncio.wait_for(waiter, REPLY_TIMEOUT)
            except TimeoutError:
                tg.waiters.pop(victim.user_id, None)
                bad += 1
                return
            latencies.append(answered - queued)
            bad += not text.startswith("Balance: ")
            await asyncio.sleep(max(0.0, slot + phase.period - time.perf_counter()))

    n = len(phase.victims)
    await asyncio.gather(
        flood(), *(ask(users[v], phase.period * i / n) for i, v in enumerate(phase.victims))
    )
    ended = time.perf_counter()
    # The bot may still be fetching the flood.
    await tg.wait_until(lambda: not tg.pending_updates, timeout=120, what="the flood fetched")
    drained = time.perf_counter() - ended
    await tg.wait_idle(timeout=120, quiet=0.5)
    answers = flooder.replies[answers_before:] if flooder is not None else []
    return FloodResult(
        name=phase.name,
        latencies=tuple(latencies),
        victim_bad=bad,
        flood_sent=sent,
        flood_answers=len(answers),
        flood_too_many=sum(a.text.startswith("Too many") for a in answers),
        drain_seconds=drained,
    )


async def serve(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    async with LoadServer() as tg:
        users: dict[int, FakeUser] = {}
        conn.send(tg.base_url)
        while True:
            request = await loop.run_in_executor(None, conn.recv)
            match request:
                case ("users", list() as ids):
                    users = {uid: tg.user(uid, f"User{uid}") for uid in ids}
                    conn.send(len(users))
                case ("phase", FloodPhase() as phase):
                    conn.send(await run_phase(tg, users, phase))
                case ("errors",):
                    conn.send([f"{e.method}: {e.status} {e.description}" for e in tg.errors])
                case ("stop",):
                    conn.send(None)
                    return
                case _:
                    raise ValueError(f"flood load process: unknown request {request!r}")


def load_process(conn: Connection) -> None:
    """Entry point of the load process."""
    asyncio.run(serve(conn))
