"""How long the scheduler's sweeps take over a large book, and how they grow with it.

    .venv/bin/python bench/sweep.py [--quick] [--partners N] [--channels M] [--rounds R]
                                    [--dir DIR]

Builds N partners (default 10,000) with M channels (default 200,000) in a SQLite file
migrated by storage.migrate, bulk-loaded with raw sqlite3 executemany (the service would
take minutes to make 200,000 channels one transaction at a time), then times the
`expiry`, `alerts` and `renew` sweeps (core/sweeps.py over storage.sqlite.SqliteStore at
synchronous=FULL, the default), each on a fresh copy of the file. It repeats everything
at a tenth of the size. Each figure is the median of R rounds (default 3; --quick: 1).

The data is the steady state of a book the scheduler has been sweeping all along:

- channels: 85 % running, their active_until spread evenly over the next 30 days (they
  are given 30 days at a time); 10 % expired in the last 60 days; 4 % never given days;
  1 % deleted. 30 % of the live ones auto-renew (of the expired ones, 5 %: the partner
  could not pay). A few are paid by their own Stripe subscription.
- expiry warnings: every warning due more than an hour ago is already recorded (the
  sweep runs hourly), so a run finds the new ones among many already sent.
- partners: thresholds of 10-60 days; balances spread around them (about 15 % below;
  most of those were told already, some have just crossed, some have come back up).
  About 1 in 8 partners cannot cover all of its channels due for renewal.
- members: one or two per partner.

Ledger rows are not made for the loaded balances (the sweeps read the accounts' cached
balances, never the history); what the sweeps write goes through the real code.

Prints the time of each sweep at both sizes and, as the last line,
`sweep_growth_10x: <sweeps at full size / sweeps at a tenth>` (linear is about 10).
Target: the three full-size sweeps together under 2 s; growth no worse than linear.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core import sweeps
from core.names import name_key
from storage.migrate import migrate
from storage.rows import to_us
from storage.sqlite import SqliteStore, configure

NOW = datetime(2030, 1, 14, 9, 30, tzinfo=UTC)
DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
SEED = 20300114


class Clock:
    def now(self) -> datetime:
        return NOW


@dataclass(frozen=True)
class Shape:
    partners: int
    channels: int


@dataclass
class Built:
    path: Path
    seconds: float
    in_window: int  # live channels in the expiry sweep's window
    renew_due: int  # auto-renew channels due within the renew sweep's horizon
    alert_candidates: int  # partners whose balance is on the other side of what is recorded


def _split(total: int, parts: int, rng: random.Random) -> list[int]:
    """`total` channels over `parts` partners, uneven (1 to ~3x the mean), summing exactly."""
    mean = total / parts
    weights = [rng.uniform(0.05, 1.95) for _ in range(parts)]
    scale = total / sum(weights)
    counts = [max(0, int(w * scale)) for w in weights]
    short = total - sum(counts)
    for i in range(abs(short)):
        counts[i % parts] += 1 if short > 0 else -1
    assert sum(counts) == total and min(counts) >= 0, (mean, min(counts))
    return counts


def build(path: Path, shape: Shape, seed: int = SEED) -> Built:
    rng = random.Random(seed)
    started = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    configure(conn, "NORMAL", 5000)
    migrate(conn)
    now = to_us(NOW)
    created = now - 400 * DAY_US
    renew_horizon = now + 24 * HOUR_US  # jobs.renew_before_hours default
    window_lo, window_hi = now - 7 * DAY_US, now + 3 * DAY_US

    partners, accounts, members = [], [], []
    states: dict[int, tuple[int, int, int, int]] = {}
    channel_rows, channel_accounts, warnings = [], [], []
    counts = _split(shape.channels, shape.partners, rng)
    channel_id = 0
    in_window = renew_due = 0
    thresholds: dict[int, int] = {}
    for pid in range(1, shape.partners + 1):
        threshold = rng.choice((10, 15, 20, 30, 30, 30, 45, 60))
        n = counts[pid - 1]
        # Where the balance stands against the threshold, and what was recorded.
        roll = rng.random()
        if roll < 0.12:  # below, told already
            balance, below, crossings = rng.randint(0, max(threshold - 1, 0)), 1, rng.randint(1, 4)
        elif roll < 0.15:  # just crossed down: the sweep (or the next transfer) tells
            balance, below, crossings = rng.randint(0, max(threshold - 1, 0)), 0, rng.randint(0, 3)
        elif roll < 0.17:  # came back up: to re-arm
            balance, below, crossings = threshold + rng.randint(0, 200), 1, rng.randint(1, 3)
        else:  # comfortably above, or around it but above
            balance = threshold + int(rng.expovariate(1 / max(30 * n, 30)))
            below, crossings = 0, rng.randint(0, 2)
        thresholds[pid] = threshold
        partners.append((pid, f"Partner {pid}", name_key(f"Partner {pid}"), "usd", 1000,
                         threshold, rng.randint(1, 31), created))
        accounts.append((f"partner:{pid}", pid, None, balance))
        if crossings or below:
            states[pid] = (pid, below, crossings, now - rng.randint(1, 90) * DAY_US)
        for k in range(rng.choice((1, 1, 1, 2))):
            members.append((1_000_000 + 2 * pid + k, pid, "owner" if k == 0 else "member",
                            created))
        poor = rng.random() < 0.125  # cannot cover its renewals
        if poor:
            accounts[-1] = (f"partner:{pid}", pid, None, rng.randint(0, 29))
            if not below and accounts[-1][3] < threshold:
                # Told when its balance went low (a candidate again only if it came back).
                states[pid] = (pid, 1, max(crossings, 1), now - DAY_US)
        for _ in range(n):
            channel_id += 1
            roll = rng.random()
            deleted = None
            billing = "balance"
            if roll < 0.85:
                until: int | None = now + rng.randint(1, 30 * DAY_US)
            elif roll < 0.95:
                until = now - rng.randint(1, 60 * DAY_US)
            elif roll < 0.99:
                until = None
            else:
                until = now - rng.randint(1, 200 * DAY_US)
                deleted = until
            live = deleted is None
            if until is not None and until > now:
                auto = live and rng.random() < 0.30
            else:
                auto = live and until is not None and rng.random() < 0.05
            if live and until is not None and rng.random() < 0.02:
                billing, auto = "subscription", False
            name = f"chan-{pid}-{channel_id}"
            channel_rows.append((channel_id, pid, name, name_key(name), created, until,
                                 int(auto), deleted, billing))
            channel_accounts.append((f"channel:{channel_id}", pid, channel_id,
                                     max(0, ((until or now) - now) // DAY_US)))
            if not live or until is None:
                continue
            if auto and billing == "balance" and until <= renew_horizon:
                renew_due += 1
            if window_lo < until <= window_hi:
                in_window += 1
                # The warnings due before the last hourly run were sent then.
                for stage in (3, 1, 0):
                    if until - stage * DAY_US <= now - HOUR_US:
                        warnings.append((channel_id, until, stage, until - stage * DAY_US))
    candidates = sum(
        1 for code, pid, _, balance in accounts[: shape.partners]
        if (balance < thresholds[pid]) != bool(states.get(pid, (0, 0))[1])
    )
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO partners (id, name, name_key, currency, monthly_price, low_balance_days,"
        " billing_day, created_at) VALUES (?,?,?,?,?,?,?,?)", partners)
    conn.executemany(
        "INSERT INTO channels (id, partner_id, name, name_key, created_at, active_until,"
        " auto_renew, deleted_at, billing) VALUES (?,?,?,?,?,?,?,?,?)", channel_rows)
    conn.executemany(
        "INSERT INTO accounts (code, partner_id, channel_id, balance) VALUES (?,?,?,?)",
        accounts + channel_accounts)
    conn.executemany(
        "INSERT INTO members (user_id, partner_id, role, linked_at) VALUES (?,?,?,?)", members)
    conn.executemany(
        "INSERT INTO alert_state (partner_id, below, crossings, changed_at) VALUES (?,?,?,?)",
        list(states.values()))
    conn.executemany(
        "INSERT INTO expiry_warnings (channel_id, active_until, stage, sent_at)"
        " VALUES (?,?,?,?)", warnings)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return Built(path, time.perf_counter() - started, in_window, renew_due, candidates)


Sweep = Callable[[SqliteStore], Awaitable[sweeps.SweepResult]]
SWEEPS: dict[str, Sweep] = {
    "expiry": lambda s: sweeps.sweep_expiry(s, Clock()),
    "alerts": lambda s: sweeps.sweep_alerts(s, Clock()),
    "renew": lambda s: sweeps.sweep_renew(s, Clock(), timedelta(hours=24)),
}


async def _time_one(path: Path, name: str) -> tuple[float, sweeps.SweepResult]:
    store = await SqliteStore.open(path)  # synchronous=FULL, as shipped
    try:
        await store.execute_raw("SELECT count(*) FROM channels")  # warm the page cache
        start = time.perf_counter()
        result = await SWEEPS[name](store)
        return time.perf_counter() - start, result
    finally:
        await store.close()


def time_sweeps(built: Built, workdir: Path, rounds: int) -> dict[str, tuple[float, str]]:
    """Median seconds of each sweep, each round on a fresh copy of the built file."""
    found: dict[str, tuple[float, str]] = {}
    for name in SWEEPS:
        seconds, summary = [], ""
        for r in range(rounds):
            copy = workdir / f"{built.path.stem}-{name}-{r}.db"
            shutil.copyfile(built.path, copy)
            took, result = asyncio.run(_time_one(copy, name))
            seconds.append(took)
            summary = result.summary()
            copy.unlink()
            for extra in ("-wal", "-shm"):
                Path(f"{copy}{extra}").unlink(missing_ok=True)
        found[name] = (statistics.median(seconds), summary)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round per figure")
    parser.add_argument("--partners", type=int, default=10_000)
    parser.add_argument("--channels", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, help="rounds per figure (default 3, quick 1)")
    parser.add_argument("--dir", type=Path, help="where the files go (default: a temp dir)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    full = Shape(args.partners, args.channels)
    tenth = Shape(max(1, full.partners // 10), max(1, full.channels // 10))

    print(f"sqlite {sqlite3.sqlite_version}, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cpus; median of {rounds} round(s), synchronous=FULL")
    totals: dict[Shape, float] = {}
    with tempfile.TemporaryDirectory(prefix="partnerbot-sweep-", dir=args.dir) as tmp:
        workdir = Path(tmp)
        for shape in (full, tenth):
            built = build(workdir / f"book-{shape.partners}.db", shape)
            size_mb = built.path.stat().st_size / 1e6
            print(f"\n{shape.partners:,} partners, {shape.channels:,} channels: built in "
                  f"{built.seconds:.1f} s ({size_mb:.0f} MB); {built.in_window:,} channels in "
                  f"the expiry window, {built.renew_due:,} due for renewal, "
                  f"{built.alert_candidates:,} partners across their threshold")
            times = time_sweeps(built, workdir, rounds)
            for name, (took, summary) in times.items():
                print(f"  {name:<7} {took * 1000:8.1f} ms   {summary}")
            totals[shape] = sum(t for t, _ in times.values())
            print(f"  {'total':<7} {totals[shape] * 1000:8.1f} ms")
    ratio = totals[full] / totals[tenth]
    verdict = "within" if totals[full] < 2.0 else "OVER"
    print(f"\nfull size: {totals[full]:.3f} s for the three sweeps ({verdict} the 2 s target)")
    print(f"sweep_growth_10x: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
