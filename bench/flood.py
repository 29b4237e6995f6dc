"""Another user's reply time while one user floods the bot, against the same bot idle.

    .venv/bin/python bench/flood.py [--quick] [--seconds S] [--burst N] [--rate R]
                                    [--dir DIR] [--verbose]

Two processes, as bench/e2e.py: the load process (bench/flood_load.py, on e2e_load's
LoadServer) runs the loopback Bot API server, the victim and the flooder; the bot process runs
bot.app.build_application exactly as `partnerbot run` builds it (AIORateLimiter with its
30 messages/s budget, the default flood limits of [limits]) over BillingService and
SqliteStore on a real file at synchronous=FULL, and polls that server over HTTP with the
runner's bot.poller.DurablePoller (each batch recorded in the inbox before it is confirmed).

The victim is the owner of one partner and sends /balance, one at a time (the next once the
answer is in). Phases, in one run, one after the other: the bot idle but for the victim;
a member of another partner flooding /help; the bot idle again; an unlinked stranger
flooding plain texts. A flooder sends a burst (default 1,000, as in issue 11's report) when
the phase starts, then a steady stream (default 100 a second) until it ends. Latency is from
the update queued on the server to the server recording the bot's answer, on the load
process's clock. The last line is `victim_latency_vs_idle: <ratio>`: the victim's median
under the worse of the two floods over its median with the bot idle (both idle phases
pooled). Target: 2 or less.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from e2e import production_logging, table  # noqa: E402  (bench/ is the script's directory)
from e2e_load import TOKEN, Load  # noqa: E402
from flood_load import FloodPhase, FloodResult, load_process  # noqa: E402

from bot.app import ALLOWED_UPDATES, build_application, deps_of_app, start_up  # noqa: E402
from bot.limits import FloodLimits  # noqa: E402
from bot.poller import DurablePoller  # noqa: E402
from core.policy import BillingPolicy  # noqa: E402
from core.service import BillingService  # noqa: E402
from storage.sqlite import SqliteStore  # noqa: E402

ACTOR = "bench:setup"
MEMBER, STRANGER = 20_001, 20_002
VICTIM0 = 30_000  # victims: 30_000, 30_001, ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


async def populate(billing: BillingService, victims: list[int]) -> None:
    """A partner per victim, who owns it; the flooding member owns one more. The stranger
    is linked to nothing."""
    owners = [(f"Victim {v}", v) for v in victims] + [("Flooder Ltd", MEMBER)]
    for name, owner in owners:
        made = await billing.create_partner(name, ACTOR)
        await billing.redeem_invite(made.invite_code, owner)
        await billing.grant_days(made.partner.id, 1_000, "bench", ACTOR, f"grant:{owner}")


def phases(args: argparse.Namespace, victims: tuple[int, ...]) -> list[FloodPhase]:
    quiet = {"seconds": args.seconds, "victims": victims, "period": args.period}
    flood = quiet | {"burst": args.burst, "rate": args.rate}
    return [
        FloodPhase("warm-up", args.period, victims, args.period, None),
        FloodPhase("idle", flooder=None, **quiet),
        FloodPhase("member floods /help", flooder=MEMBER, text="/help", **flood),
        FloodPhase("idle again", flooder=None, **quiet),
        FloodPhase("stranger floods text", flooder=STRANGER, text="hi, cheap followers?",
                   **flood),
    ]


async def bench(args: argparse.Namespace, workdir: Path) -> tuple[list[FloodResult], list[str]]:
    load = Load(load_process)
    try:
        base_url = await load.base_url()
        store = await SqliteStore.open(workdir / "partnerbot.db", synchronous="FULL")
        try:
            billing = BillingService(store, SystemClock(), BillingPolicy())
            victims = tuple(range(VICTIM0, VICTIM0 + args.victims))
            await populate(billing, list(victims))
            await load.call("users", [*victims, MEMBER, STRANGER])
            app = build_application(
                token=TOKEN, api_base_url=base_url, billing=billing,
                support_ids=frozenset(), tz=UTC, limits=FloodLimits(),
            )
            await app.initialize()
            await start_up(app)
            await app.start()
            # As the runner polls: each batch recorded in the inbox before it is confirmed.
            poller = DurablePoller(
                app, store, SystemClock(), allowed_updates=ALLOWED_UPDATES,
                raw=deps_of_app(app).raw_updates,
            )
            await poller.start()
            results: list[FloodResult] = []
            try:
                for phase in phases(args, victims):
                    if args.verbose:
                        print(f"[{time.strftime('%H:%M:%S')}] {phase.name}", file=sys.stderr)
                    results.append(await load.call("phase", phase))
            finally:
                await poller.stop()
                await app.stop()
                await poller.close()
                await app.shutdown()
            problems = list(await load.call("errors"))
        finally:
            await store.close()
        await load.call("stop")
    finally:
        load.close()
    return results[1:], problems  # without the warm-up


def median_ms(values: tuple[float, ...] | list[float]) -> float:
    return statistics.median(values) * 1e3 if values else float("nan")


def report(results: list[FloodResult]) -> float:
    rows = [("phase", "victim answers", "p50 ms", "p90 ms", "max ms", "flood sent",
             "flooder answers", "too many", "drained after s")]
    for r in results:
        ordered = sorted(r.latencies)
        p90 = ordered[int(0.9 * (len(ordered) - 1))] * 1e3 if ordered else float("nan")
        rows.append((r.name, f"{len(r.latencies):,}", f"{median_ms(r.latencies):.1f}",
                     f"{p90:.1f}", f"{max(ordered, default=float('nan')) * 1e3:.1f}",
                     f"{r.flood_sent:,}", f"{r.flood_answers:,}", f"{r.flood_too_many}",
                     f"{r.drain_seconds:.2f}"))
    print(table(rows))
    idle = median_ms([x for r in results if r.name.startswith("idle") for x in r.latencies])
    floods = [r for r in results if r.flood_sent]
    worst = max(floods, key=lambda r: median_ms(r.latencies))
    print(f"\nidle median {idle:.1f} ms; worse flood: {worst.name}, "
          f"median {median_ms(worst.latencies):.1f} ms")
    return median_ms(worst.latencies) / idle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="shorter phases (3 s)")
    parser.add_argument("--seconds", type=float, help="length of a phase (default 8, quick 3)")
    parser.add_argument("--burst", type=int, default=1000,
                        help="updates a flooder sends at once (default 1000)")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="then updates a second until the phase ends (default 100)")
    parser.add_argument("--victims", type=int, default=20,
                        help="victims, each a partner's owner (default 20)")
    parser.add_argument("--period", type=float, default=4.0,
                        help="each victim sends /balance once in this many seconds, the "
                        "victims evenly spread (default 4: 15 a minute, within a member's "
                        "allowance)")
    parser.add_argument("--dir", type=Path, help="where the database goes (default: a "
                        "temporary directory)")
    parser.add_argument("--verbose", action="store_true", help="progress on stderr")
    args = parser.parse_args(argv)
    args.seconds = float(args.seconds or (3 if args.quick else 8))
    if args.seconds <= 0 or args.victims < 1 or args.period <= 0 or min(args.burst, args.rate) < 0:
        parser.error("--seconds, --victims, --period must be positive; --burst, --rate not "
                     "negative")
    limits = FloodLimits()
    with tempfile.TemporaryDirectory(prefix="partnerbot-flood-", dir=args.dir) as tmp:
        print(f"bot as `partnerbot run` builds it (AIORateLimiter 30 messages/s; limits a "
              f"minute: member {limits.member_per_minute}, stranger "
              f"{limits.stranger_per_minute}); database {tmp}/partnerbot.db (FULL)")
        print(f"phases of {args.seconds:g} s; a flooder sends {args.burst:,} at once, then "
              f"{args.rate:g}/s; {args.victims} victims (each a partner's owner) send /balance "
              f"once every {args.period:g} s each, spread evenly")
        print()
        with production_logging(True):
            results, problems = asyncio.run(bench(args, Path(tmp)))
    logging.shutdown()
    ratio = report(results)
    bad = sum(r.victim_bad for r in results)
    if bad or problems:
        print(f"FAILED: {bad} victim answers missing or wrong; server errors: {problems[:5]}")
        return 1
    print(f"victim_latency_vs_idle: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
