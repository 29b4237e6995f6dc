"""Updates per second through the whole bot, against a do-nothing python-telegram-bot app.

    .venv/bin/python bench/e2e.py [--quick] [--users N] [--rounds R] [--seconds S]
                                  [--writes SHARE] [--dir DIR] [--no-log]
                                  [--production-limiter] [--profile FILE]
    .venv/bin/python bench/e2e.py --mode webhook --database URL [--instances 1,3]
                                  (bench/e2e_cluster.py: partnerbot run instances)

Two processes. The load process (bench/e2e_load.py) runs the loopback Bot API server
(tests/fakes/telegram_api's FakeTelegram) and the users who talk to it; the bot process runs
the application under test and polls that server over HTTP, as it would poll Telegram. The
server and the users stay off the bot's event loop and off its core: sharing either would
charge the load generator's work to whichever side is being measured and squeeze the two
results together.

"ours" is bot.app.build_application over BillingService and SqliteStore on a real file at
synchronous=FULL (the production default), set up beforehand through BillingService: N users,
two per partner (owner and member), each partner with a 100,000-day balance and 5 channels.
Every user keeps one message in flight (closed loop: the next one is sent when the reply
arrives) and picks at random /balance, /channels, /history (reads) or /allocate chanK 1
(writes, SHARE of them, default 0.3). Logging is configured as `partnerbot run` does (INFO,
text format, the token scrubbed), written to /dev/null.

"bare" is a python-telegram-bot Application with the same builder settings: the same token,
server, HTTP client (bot.api_request), Defaults, rate limiter and maximum of 256 updates in
flight (its SimpleUpdateProcessor against our PerUserOrder), the same CommandHandlers for the
same command names, each replying a fixed "ok". Ours polls as the runner does, with
bot.poller.DurablePoller (each batch recorded in the database's inbox before it is
confirmed, handled updates marked in batches); bare with PTB's
start_polling(allowed_updates=ALLOWED_UPDATES). They take turns on the
one server (one bot token), rounds interleaved, alternating who goes first; each side is
warmed up first (every user's first message sets their menu).

The rate limiter is AIORateLimiter(max_retries=3) on both sides, as production builds it, but
with its overall budget of 30 messages/s lifted (overall_max_rate=0): with it, both sides
would measure the limiter (30 updates/s) and not the bot. The server enforces no flood
limits. --production-limiter keeps the 30/s budget on both sides, to see that.
Ours' per-user flood limits ([limits]) are lifted for the same reason: each user here
sends several updates a second, far over a member's allowance (bench/flood.py measures
the limits).

Latency is from the moment the update is queued on the server to the moment the server has
recorded the bot's sendMessage, both on the load process's clock. Updates/s counts replies
received within each round's window. After the run: every update got exactly one reply (and
for ours the reply a successful command gives), the server answered no error, the ledger has
one allocation per /allocate sent and passes BillingService.verify(). The last line printed
is `e2e_vs_bare_ptb: <ours updates/s / bare updates/s>` (medians of the rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import os
import pstats
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests.fakes is not installed; the repository root holds it
    sys.path.insert(0, str(ROOT))

import telegram  # noqa: E402
from e2e_load import (  # noqa: E402  (bench/ is the script's own directory)
    BARE_TEXT,
    CHANNELS,
    EXPECTED,
    TOKEN,
    Load,
    PhaseRequest,
    PhaseResult,
)
from telegram import LinkPreviewOptions, Update  # noqa: E402
from telegram.constants import ParseMode  # noqa: E402
from telegram.ext import (  # noqa: E402
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CommandHandler,
    ContextTypes,
    Defaults,
    filters,
)

import bot.app  # noqa: E402
from bot.api_request import bot_api_request  # noqa: E402
from bot.app import (  # noqa: E402
    ALLOWED_UPDATES,
    COMMAND_HANDLERS,
    build_application,
    deps_of_app,
    start_up,
)
from bot.limits import FloodLimits  # noqa: E402
from bot.poller import DurablePoller  # noqa: E402
from core.policy import BillingPolicy  # noqa: E402
from core.service import BillingService  # noqa: E402
from partnerbot import logs  # noqa: E402
from storage.sqlite import SqliteStore  # noqa: E402

AnyApp = Application[Any, Any, Any, Any, Any, Any]
ACTOR = "bench:setup"
MEMBERS = 2  # Telegram users per partner (the owner and one member)
BALANCE = 100_000  # days per partner, far more than a run allocates


VERBOSE = False


def trace(text: str) -> None:
    """Progress on stderr with --verbose (stdout keeps the report)."""
    if VERBOSE:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


# ------------------------------------------------------------------------------------------
# The bot process


def limiter_factory(production: bool) -> Any:
    """What `AIORateLimiter(max_retries=...)` builds in bot.app, for both sides."""

    def make(max_retries: int = 0) -> AIORateLimiter:
        if production:
            return AIORateLimiter(max_retries=max_retries)
        return AIORateLimiter(overall_max_rate=0, max_retries=max_retries)

    return make


def build_ours(base_url: str, billing: BillingService, production_limiter: bool) -> AnyApp:
    with mock.patch.object(bot.app, "AIORateLimiter", limiter_factory(production_limiter)):
        app: AnyApp = build_application(
            token=TOKEN, api_base_url=base_url, billing=billing, support_ids=frozenset(), tz=UTC,
            # Each user here sends several updates a second: far over a member's allowance,
            # which would measure the flood limits (bench/flood.py does), not the bot.
            limits=FloodLimits(1_000_000, 1_000_000, 1_000_000),
        )
    return app


async def reply_ok(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(BARE_TEXT)


def build_bare(base_url: str, production_limiter: bool) -> AnyApp:
    """A do-nothing application built like bot.app.build_application builds ours."""
    defaults = Defaults(
        parse_mode=ParseMode.HTML,
        tzinfo=UTC,
        link_preview_options=LinkPreviewOptions(is_disabled=True),
        do_quote=False,
    )
    app = (
        ApplicationBuilder()
        .token(TOKEN)
        .base_url(base_url)
        .base_file_url(bot.app.file_base_url(base_url))
        .request(bot_api_request())
        .defaults(defaults)
        .rate_limiter(limiter_factory(production_limiter)(max_retries=3))
        .concurrent_updates(256)  # PerUserOrder's default maximum
        .build()
    )
    for name in COMMAND_HANDLERS:
        app.add_handler(CommandHandler(name, reply_ok, filters=filters.UpdateType.MESSAGE))
    return app


async def populate(billing: BillingService, users: int) -> list[int]:
    """Partners with balances, channels and linked users; returns the users' Telegram ids."""
    ids: list[int] = []
    for p in range(-(-users // MEMBERS)):
        made = await billing.create_partner(f"Partner {p:03d}", ACTOR)
        pid = made.partner.id
        code = made.invite_code
        for m in range(MEMBERS):
            if len(ids) == users:
                break
            uid = 10_000 + len(ids)
            if m:
                code = (await billing.create_invite(pid, ACTOR)).code
            await billing.redeem_invite(code, uid)
            ids.append(uid)
        await billing.grant_days(pid, BALANCE, "benchmark balance", ACTOR, f"grant:{p}")
        for k in range(1, CHANNELS + 1):
            await billing.create_channel(pid, f"chan{k}", ACTOR, f"channel:{p}:{k}")
    return ids


@dataclass(frozen=True)
class Cpu:
    """CPU seconds within one round's window."""

    bot: float  # this process: the event loop, the database thread and any other
    loop: float  # of which the main thread, where the event loop runs
    machine: float  # the whole machine (all processes)


@dataclass
class Side:
    name: str
    app: AnyApp
    poller: DurablePoller | None  # ours: the runner's poller; bare: PTB's Updater
    phases: list[PhaseResult] = field(default_factory=list)
    cpu: list[Cpu] = field(default_factory=list)


async def run_side(
    side: Side, load: Load, phase: PhaseRequest, profiler: cProfile.Profile | None
) -> tuple[PhaseResult, Cpu]:
    """One phase: the side polls while the users talk. Returns the result, and the CPU time
    spent within the window."""
    app = side.app
    assert app.updater is not None
    began = time.perf_counter()
    await app.start()
    if side.poller is not None:
        await side.poller.start()
    else:
        await app.updater.start_polling(allowed_updates=ALLOWED_UPDATES)
    def sample() -> tuple[float, float, dict[int, float]]:
        return time.process_time(), machine_busy(), thread_cpu()

    before = sample()
    at_deadline: list[tuple[float, float, dict[int, float]]] = []
    asyncio.get_running_loop().call_later(phase.seconds, lambda: at_deadline.append(sample()))
    if profiler is not None:
        profiler.enable()
    try:
        result: PhaseResult = await load.call("phase", phase)
    finally:
        if profiler is not None:
            profiler.disable()
        after = (at_deadline or [sample()])[0]
        if side.poller is not None:  # stopped as the runner stops it
            await side.poller.stop()
            await app.stop()
            await side.poller.close()
        else:
            await app.updater.stop()
            await app.stop()
    elapsed = time.perf_counter() - began
    trace(f"{side.name} {phase.seed}: {result.replied} updates, {elapsed:.1f} s "
          "with start and stop")
    return result, Cpu(after[0] - before[0], loop_share(before[2], after[2]),
                       after[1] - before[1])


def thread_cpu() -> dict[int, float]:
    """CPU seconds of each thread of this process by native id (empty off Linux)."""
    found: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the thread ended meanwhile
        found[int(tid)] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return found


def loop_share(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds of the main thread (the event loop) between two thread_cpu() calls."""
    main = threading.main_thread().native_id
    return after.get(main, 0.0) - before.get(main, 0.0)


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all processes; NaN off Linux)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


@contextmanager
def production_logging(enabled: bool) -> Iterator[None]:
    """`partnerbot run`'s logging (INFO, text, token scrubbed), written to /dev/null."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    with open(os.devnull, "w") as sink:
        if enabled:
            logs.setup("INFO", "text", [TOKEN])
            for handler in root.handlers:
                if isinstance(handler, logging.StreamHandler):
                    handler.setStream(sink)
        else:
            root.setLevel(logging.WARNING)
            root.handlers[:] = [logging.StreamHandler(sink)]
        try:
            yield
        finally:
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])


async def bench(args: argparse.Namespace, workdir: Path) -> tuple[list[Side], list[str]]:
    """Runs everything; returns the two sides' results and the problems found."""
    problems: list[str] = []
    load = Load()
    try:
        base_url = await load.base_url()
        trace(f"load process up, Bot API at {base_url}")
        store = await SqliteStore.open(workdir / "partnerbot.db", synchronous="FULL")
        try:
            billing = BillingService(store, SystemClock(), BillingPolicy())
            ids = await populate(billing, args.users)
            await load.call("users", ids)
            trace(f"{len(ids)} users linked to {len(ids) // MEMBERS} partners")
            ours = build_ours(base_url, billing, args.production_limiter)
            poller = DurablePoller(
                ours, store, SystemClock(), allowed_updates=ALLOWED_UPDATES,
                raw=deps_of_app(ours).raw_updates,
            )
            sides = [
                Side("ours", ours, poller),
                Side("bare", build_bare(base_url, args.production_limiter), None),
            ]
            for s in sides:
                await s.app.initialize()
            await start_up(sides[0].app)  # ours, as `partnerbot run` starts it
            trace("both applications initialized")
            profiler = cProfile.Profile() if args.profile else None
            try:
                warm = []
                for s in sides:
                    phase = PhaseRequest(s.name, args.warmup, "warm-up", args.writes,
                                         args.inflight, cover_all=True)
                    warm.append((await run_side(s, load, phase, None))[0])
                for r in range(args.rounds):
                    order = sides if r % 2 == 0 else sides[::-1]
                    for s in order:
                        prof = profiler if s.name == args.profile_side else None
                        phase = PhaseRequest(s.name, args.seconds, f"round-{r}", args.writes,
                                             args.inflight)
                        result, cpu = await run_side(s, load, phase, prof)
                        s.phases.append(result)
                        s.cpu.append(cpu)
            finally:
                for s in sides:
                    await s.app.shutdown()
            for result in warm + [p for s in sides for p in s.phases]:
                if result.bad_count or result.stray:
                    problems.append(f"{result.side}: {result.bad_count} missing or wrong "
                                    f"replies, {result.stray} extra bot messages")
                    problems += result.bad
            problems += await load.call("check")
            trace("checks done")
            report = await billing.verify()
            if not report.ok:
                problems.append(f"ledger verify: {report.summary()}: {report.violations[:3]}")
            sent = sum(len(p.latencies["/allocate"]) for p in [warm[0], *sides[0].phases])
            (row,) = await store.execute_raw(
                "SELECT count(*) FROM transfers WHERE kind = 'allocation'"
            )
            if int(row[0]) != sent:
                problems.append(f"{sent} /allocate answered but {row[0]} allocations in the ledger")
            if profiler is not None:
                profiler.dump_stats(args.profile)
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
                print(f"profile of {args.profile_side} (timed rounds) written to {args.profile}; "
                      "top functions by own time:")
                print(out.getvalue())
        finally:
            await store.close()
        await load.call("stop")
    finally:
        load.close()
    return sides, problems


def _row(name: str, label: str, phases: list[PhaseResult], cpus: list[Cpu],
         rate: float) -> tuple[str, ...]:
    lat = [x for p in phases for v in p.latencies.values() for x in v]
    n = sum(p.in_window for p in phases) or 1
    secs = sum(p.seconds for p in phases)
    server = sum(p.server_cpu for p in phases)
    bot = sum(c.bot for c in cpus)
    loop = sum(c.loop for c in cpus)
    other = sum(c.machine for c in cpus) - bot - server
    return (name, label, f"{n:,}", f"{secs:.1f}", f"{rate:,.0f}",
            f"{percentile(lat, 0.5) * 1e3:.1f}", f"{percentile(lat, 0.99) * 1e3:.1f}",
            f"{bot / secs * 100:.0f}", f"{bot / n * 1e3:.2f}", f"{loop / n * 1e3:.2f}",
            f"{(bot - loop) / n * 1e3:.2f}", f"{server / secs * 100:.0f}",
            f"{other / secs * 100:.0f}")


def report(sides: list[Side]) -> float:
    """Prints the tables; returns ours' median updates/s over bare's."""
    ups: dict[str, float] = {}
    rows: list[tuple[str, ...]] = [
        ("side", "round", "updates", "seconds", "updates/s", "p50 ms", "p99 ms", "bot cpu %",
         "bot ms/upd", "loop ms/upd", "threads ms/upd", "server cpu %", "other cpu %"),
    ]
    for s in sides:
        rates = [p.in_window / p.seconds for p in s.phases]
        for r, p in enumerate(s.phases):
            rows.append(_row(s.name, str(r + 1), [p], [s.cpu[r]], rates[r]))
        ups[s.name] = statistics.median(rates)
        rows.append(_row(s.name, "all", s.phases, s.cpu, ups[s.name]))
    print(table(rows))
    print("updates: replies received within the round's window; all: updates/s is the median "
          "of the rounds, latencies over all rounds.\nCPU within the windows, % of one core: "
          "bot = the bot process (loop = its event-loop thread, threads = the others: SQLite's\n"
          "worker thread), server = the load process (Bot API server and users), other = the "
          "rest of the machine (not this benchmark)")
    print()
    for s in sides:
        calls = Counter[str]()
        for p in s.phases:
            calls.update(p.calls)
        replied = sum(p.replied for p in s.phases)
        print(f"{s.name}: Bot API requests per update: " + ", ".join(
            f"{method} {n / replied:.2f}" for method, n in calls.most_common()))
    print()
    ours = sides[0]
    rows = [("ours by command", "updates", "p50 ms", "p99 ms")]
    for command in EXPECTED:
        lat = [x for p in ours.phases for x in p.latencies[command]]
        rows.append((command, f"{len(lat):,}", f"{percentile(lat, 0.5) * 1e3:.1f}",
                     f"{percentile(lat, 0.99) * 1e3:.1f}"))
    print(table(rows))
    print()
    return ups["ours"] / ups["bare"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="shorter rounds, fewer of them")
    parser.add_argument("--users", type=int, default=200, help="distinct users (default 200)")
    parser.add_argument("--inflight", type=int, default=32, help="messages in flight at once, "
                        "each from a different user (default 32)")
    parser.add_argument("--rounds", type=int, help="timed rounds per side (default 3, quick 2)")
    parser.add_argument("--seconds", type=float, help="length of a round (default 6, quick 2)")
    parser.add_argument("--writes", type=float, default=0.3,
                        help="share of /allocate among the commands (default 0.3)")
    parser.add_argument("--dir", type=Path, help="where the database goes (default: a "
                        "temporary directory; use a directory on the disk you care about)")
    parser.add_argument("--no-log", action="store_true",
                        help="log warnings only, instead of INFO as `partnerbot run` does")
    parser.add_argument("--production-limiter", action="store_true",
                        help="keep AIORateLimiter's 30 messages/s budget on both sides")
    parser.add_argument("--verbose", action="store_true", help="progress on stderr")
    parser.add_argument("--profile", type=Path,
                        help="cProfile the bot process during the timed rounds of one side "
                        "(--profile-side, default ours); stats to this file")
    parser.add_argument("--profile-side", choices=("ours", "bare"), default="ours")
    parser.add_argument("--mode", choices=("polling", "webhook"), default="polling",
                        help="polling (default): the bot in this process against bare PTB; "
                        "webhook: `partnerbot run` instances behind a loopback balancer "
                        "(bench/e2e_cluster.py; needs --database)")
    parser.add_argument("--database", metavar="URL",
                        help="webhook mode: an EMPTY PostgreSQL database (left filled)")
    parser.add_argument("--instances", default="1,3",
                        help="webhook mode: instance counts to measure, e.g. 1, 3 or 1,3 "
                        "(default 1,3: the last line is then webhook_3_vs_1)")
    args = parser.parse_args(argv)
    global VERBOSE  # noqa: PLW0603 - one switch for the progress lines
    VERBOSE = args.verbose
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.seconds = float(args.seconds or (2 if args.quick else 6))
    args.warmup = 1.0 if args.quick else 2.0
    if args.users < 1 or args.rounds < 1 or args.seconds <= 0 or not 0 <= args.writes <= 1:
        parser.error("--users, --rounds, --seconds must be positive; --writes within 0..1")
    if args.mode == "webhook":
        try:
            args.instances = [int(n) for n in args.instances.split(",")]
        except ValueError:
            parser.error("--instances: instance counts separated by commas, e.g. 1,3")
        if not args.database or not all(0 < n <= 16 for n in args.instances):
            parser.error("--mode webhook needs --database URL and --instances within 1..16")
        import e2e_cluster  # bench/ is the script's own directory

        return e2e_cluster.main(args, populate)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="partnerbot-e2e-", dir=args.dir) as tmp:
        print(f"python {sys.version.split()[0]}, python-telegram-bot {telegram.__version__}, "
              f"{os.cpu_count()} cpus; database {tmp}/partnerbot.db (synchronous=FULL)")
        print(f"{args.users} users ({MEMBERS} per partner), one message in flight each; "
              f"{args.writes:.0%} /allocate CHANNEL 1, the rest /balance /channels /history")
        print(f"{args.rounds} rounds of {args.seconds:g} s per side, interleaved, after "
              f"{args.warmup:g} s of warm-up each; load and Bot API server in their own process")
        limiter = ("AIORateLimiter(max_retries=3) with its 30 messages/s budget"
                   if args.production_limiter else
                   "AIORateLimiter(max_retries=3) with the 30 messages/s budget lifted")
        print(f"both sides: {limiter}; the server enforces no flood limits; at most 256 "
              "updates in flight (PerUserOrder / concurrent_updates(256))")
        print("logging: " + ("WARNING" if args.no_log else "INFO as `partnerbot run`, to "
                             "/dev/null") + " (both sides)")
        print()
        with production_logging(not args.no_log):
            sides, problems = asyncio.run(bench(args, Path(tmp)))
    ratio = report(sides)
    if problems:
        print("FAILED:")
        for line in problems:
            print(f"  {line}")
        return 1
    print("every update got exactly one reply (ours: the answer of a successful command); "
          "no server errors; ledger verify ok, one allocation per /allocate")
    print(f"took {time.perf_counter() - started:.1f} s")
    print(f"e2e_vs_bare_ptb: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
