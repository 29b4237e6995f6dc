"""bench/e2e.py --mode webhook: `partnerbot run` instances on PostgreSQL behind a balancer.

    .venv/bin/python bench/e2e.py --mode webhook --database postgresql://.../empty_db
                                  [--instances 1|3|1,3] [--quick] [--users N] ...

The same load process as the in-process benchmark (bench/e2e_load.py: the loopback Bot API
server and the users, closed loop, the same commands and checks), but the bot is what an
operator runs: N `partnerbot run` processes (tests/e2e/cluster.py: the console script,
configured by environment, webhook mode, `database.url`), each with its own HTTP port,
behind the loopback balancer (tests/fakes/balancer); the Bot API server POSTs each update
to the balancer with the webhook secret, as Telegram does, and waits for the 2xx.

The instances run as in production: AIORateLimiter keeps its budget of 30 messages/s per
instance (the in-process bench lifts it; a process configured by environment cannot), and
the flood limits are at their highest allowed (6000 a minute). A measured run on this
2-core machine (200 users, 2 rounds of 5 s): 1 instance 30 updates/s, p50 922 ms, p99
1722 ms; 3 instances 31 updates/s, p50 902 ms, p99 1579 ms; webhook_3_vs_1 1.04.

The database (an EMPTY PostgreSQL database; it is left filled) is populated once through
BillingService; then for each instance count the cluster is started, warmed up, measured
over the rounds and stopped, one after the other on the same data. Latency is from the
moment the update is queued on the server to the moment the server has recorded the
reply, on the load process's clock. The last line is `webhook_3_vs_1: <updates/s of 3
instances / of 1>` when both ran (the baseline is measured in the same run), else
`webhook_<n>_updates_per_s: <rate>`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from e2e_load import EXPECTED, TOKEN, Load, PhaseRequest, PhaseResult

from core.policy import BillingPolicy
from core.service import BillingService
from partnerbot.dbcopy import existing_tables
from storage.postgres import PostgresStore
from tests.e2e.cluster import WEBHOOK_SECRET, Cluster
from tests.faults import cli

MEMBERS_LIMIT = "6000"  # flood limits at their highest (bench/flood.py measures them)


@dataclass(frozen=True)
class LoadApi:
    """The load process's Bot API server, as the instances' configuration names it."""

    token: str
    base_url: str


@dataclass
class Run:
    instances: int
    phases: list[PhaseResult] = field(default_factory=list)

    def rate(self) -> float:
        return statistics.median(p.in_window / p.seconds for p in self.phases)

    def latencies(self) -> list[float]:
        return sorted(x for p in self.phases for v in p.latencies.values() for x in v)


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


Populate = Callable[[BillingService, int], Awaitable[list[int]]]


async def populate_postgres(url: str, users: int, populate: Populate) -> list[int]:
    """The benchmark's partners and users (bench/e2e.py's populate) in the database."""
    store = await PostgresStore.open(url)
    try:
        ids = await populate(BillingService(store, SystemClock(), BillingPolicy()), users)
    finally:
        await store.close()
    # The set-up's grants queued a notice to every member; the leader's outbox would send
    # them during the rounds, between the answers measured. Marked expanded (made into
    # deliveries) with none made, they are never sent: the in-process bench has no outbox.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE notices SET expanded = 1")
    return ids


async def measure(args: argparse.Namespace, load: Load, base_url: str, n: int,
                  workdir: Path) -> Run:
    """Start n instances, point the Bot API server at the balancer, run the rounds."""
    run = Run(n)
    cluster = Cluster(
        workdir / f"x{n}", LoadApi(TOKEN, base_url), None, instances=n,
        database_url=args.database, mode="webhook",
        PARTNERBOT_LIMITS__MEMBER_PER_MINUTE=MEMBERS_LIMIT,
        PARTNERBOT_LIMITS__STRANGER_PER_MINUTE=MEMBERS_LIMIT,
        PARTNERBOT_LOGGING__FORMAT="text",
    )
    cluster.tmp.mkdir()
    async with cluster:
        await load.call("webhook", cluster.telegram_webhook, WEBHOOK_SECRET)
        warm = PhaseRequest("ours", args.warmup, f"warm-{n}", args.writes, args.inflight,
                            cover_all=True)
        await load.call("phase", warm)
        for r in range(args.rounds):
            phase = PhaseRequest("ours", args.seconds, f"x{n}-round-{r}", args.writes,
                                 args.inflight)
            run.phases.append(await load.call("phase", phase))
        await load.call("webhook", None, None)  # stop delivering before the instances go
        codes = await cluster.stop_all()
        if any(codes):
            raise RuntimeError(f"instances exited {codes}:\n{cluster.logs()[-3000:]}")
    return run


async def bench(
    args: argparse.Namespace, workdir: Path, populate: Populate
) -> tuple[list[Run], list[str]]:
    problems: list[str] = []
    load = Load()
    try:
        base_url = await load.base_url()
        ids = await populate_postgres(args.database, args.users, populate)
        await load.call("users", ids)
        runs = [await measure(args, load, base_url, n, workdir) for n in args.instances]
        for run in runs:
            for p in run.phases:
                if p.bad_count or p.stray:
                    problems.append(f"{run.instances} instances: {p.bad_count} missing or "
                                    f"wrong replies, {p.stray} extra bot messages")
                    problems += p.bad
        problems += await load.call("check")
        done = await cli("ledger", "verify", db=workdir / "unused.db",
                         PARTNERBOT_DATABASE__URL=args.database)
        if done.code != 0:
            problems.append(f"ledger verify: {done.out.strip()[:300]}")
        await load.call("stop")
    finally:
        load.close()
    return runs, problems


def report(runs: list[Run]) -> None:
    print(f"{'instances':>9}  {'updates':>8}  {'updates/s':>9}  {'p50 ms':>7}  {'p99 ms':>7}")
    for run in runs:
        lat = run.latencies()
        n = sum(p.in_window for p in run.phases)
        print(f"{run.instances:>9}  {n:>8,}  {run.rate():>9,.0f}  "
              f"{percentile(lat, 0.5) * 1e3:>7.1f}  {percentile(lat, 0.99) * 1e3:>7.1f}")
    for run in runs:
        by_command = {
            c: sorted(x for p in run.phases for x in p.latencies[c]) for c in EXPECTED
        }
        print(f"{run.instances} instance(s), p99 by command: " + ", ".join(
            f"{c} {percentile(lat, 0.99) * 1e3:.1f} ms" for c, lat in by_command.items()))


def main(args: argparse.Namespace, populate: Populate) -> int:
    if not args.database or not args.database.startswith(("postgresql://", "postgres://")):
        print("--mode webhook needs --database postgresql://... (an empty database)",
              file=sys.stderr)
        return 2
    with psycopg.connect(args.database, autocommit=True) as conn:
        tables = existing_tables(conn)
    if tables:
        print(f"--database must be empty: it has {len(tables)} tables (e.g. {tables[0]})",
              file=sys.stderr)
        return 2
    started = time.perf_counter()
    print(f"webhook mode: {', '.join(map(str, args.instances))} instance(s) behind the "
          f"loopback balancer, one PostgreSQL database; {args.users} users, "
          f"{args.inflight} messages in flight, {args.writes:.0%} /allocate")
    print(f"{args.rounds} rounds of {args.seconds:g} s per instance count after "
          f"{args.warmup:g} s of warm-up")
    with tempfile.TemporaryDirectory(prefix="partnerbot-e2e-cluster-", dir=args.dir) as tmp:
        runs, problems = asyncio.run(bench(args, Path(tmp), populate))
    report(runs)
    if problems:
        print("FAILED:")
        for line in problems:
            print(f"  {line}")
        return 1
    print("every update got exactly one reply; ledger verify ok on PostgreSQL")
    print(f"took {time.perf_counter() - started:.1f} s")
    rates = {run.instances: run.rate() for run in runs}
    if 1 in rates and 3 in rates:
        print(f"webhook_3_vs_1: {rates[3] / rates[1]:.2f}")
    else:
        [(n, rate)] = rates.items()
        print(f"webhook_{n}_updates_per_s: {rate:.0f}")
    return 0
