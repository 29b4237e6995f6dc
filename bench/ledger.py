"""Allocations per second: the project's store against raw sqlite3 doing the same work.

    .venv/bin/python bench/ledger.py [--quick] [--rounds R] [--ops N] [--dir DIR]

"ours" is BillingService.allocate_days on SqliteStore, awaited one after another: N
allocations of 1 day to one channel from a large balance. "raw" is plain `sqlite3` on the
main thread running the statements that one allocation runs (storage/sql_ledger.py,
core/channels.py, core/idempotency.py):

    BEGIN IMMEDIATE
    SELECT kind, outcome FROM operations WHERE key = ?              -- once(): stored outcome?
    SELECT ... FROM partners WHERE id = ?                           -- get_partner
    SELECT ... FROM channels WHERE partner_id = ? AND name_key = ?  -- find_channel
    SELECT balance FROM accounts WHERE code = ?                     -- balance
    UPDATE channels SET ... WHERE id = ?                            -- update_channel
    SELECT id, digest FROM transfers ORDER BY id DESC LIMIT 1       -- add_transfer: chain
    SELECT keyed_from, seal FROM ledger_chain WHERE id = 1          -- keyed from here?
    INSERT INTO transfers ...                                       -- triggers move balances
    SELECT ... FROM partners JOIN accounts LEFT JOIN alert_state    -- rule 7 check (move)
    INSERT INTO operations ...                                      -- save_outcome
    COMMIT

with the same schema (storage.migrate.migrate on a fresh file, set up through the service
like ours), the same PRAGMAs (storage.sqlite.configure) and the same synchronous setting.
The raw loop also computes the transfer digest and the outcome JSON, so its file passes
`ledger verify` too (checked at the end: proof the work is the same).

Both run at synchronous=FULL (the default) and NORMAL, rounds interleaved, after a warm-up;
the figure per cell is the median of the rounds. The last line printed is
`ledger_vs_sqlite3: <ours/raw at FULL>`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core import channels
from core.ledger import GENESIS
from core.names import name_key
from core.policy import BillingPolicy
from core.service import BillingService
from storage import rows
from storage.errors import Connection
from storage.sql_ledger import ALERT_STATE_SQL, SqlLedger
from storage.sqlite import SqliteStore, Synchronous, configure

CHANNEL = "bench"
ACTOR = "bench:runner"
BUSY_TIMEOUT_MS = 5000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


# set-up ------------------------------------------------------------------------------


async def prepare(path: Path, synchronous: Synchronous, balance: int) -> tuple[int, int]:
    """A fresh migrated file with one partner holding `balance` days and one channel."""
    store = await SqliteStore.open(path, synchronous=synchronous)
    try:
        billing = BillingService(store, SystemClock(), BillingPolicy())
        created = await billing.create_partner("Bench", ACTOR)
        pid = created.partner.id
        left, n = balance, 0
        while left > 0:
            chunk = min(left, 100_000)
            await billing.grant_days(pid, chunk, "benchmark balance", ACTOR, f"grant-{n}")
            left -= chunk
            n += 1
        channel = await billing.create_channel(pid, CHANNEL, ACTOR, "channel")
        return pid, channel.channel_id
    finally:
        await store.close()


# ours ----------------------------------------------------------------------------------


class Ours:
    """The project's path: BillingService.allocate_days over SqliteStore."""

    def __init__(self, path: Path, synchronous: Synchronous, pid: int) -> None:
        self.path, self.synchronous, self.pid = path, synchronous, pid
        self.loop = asyncio.new_event_loop()
        self.store = self.loop.run_until_complete(
            SqliteStore.open(path, synchronous=synchronous, busy_timeout_ms=BUSY_TIMEOUT_MS)
        )
        self.billing = BillingService(self.store, SystemClock(), BillingPolicy())
        self.seq = 0

    def run(self, n: int) -> float:
        """Seconds for n allocations, each awaited before the next."""

        async def work() -> float:
            billing, pid, base = self.billing, self.pid, self.seq
            start = time.perf_counter()
            for i in range(base, base + n):
                await billing.allocate_days(pid, CHANNEL, 1, ACTOR, f"alloc-{i}")
            return time.perf_counter() - start

        elapsed = self.loop.run_until_complete(work())
        self.seq += n
        return elapsed

    def close(self) -> None:
        self.loop.run_until_complete(self.store.close())
        self.loop.close()


# raw -----------------------------------------------------------------------------------

SQL_OUTCOME = "SELECT kind, outcome FROM operations WHERE key = ?"
SQL_PARTNER = f"SELECT {rows.PARTNER_COLS} FROM partners WHERE id = ?"
SQL_CHANNEL = (
    f"SELECT {rows.CHANNEL_COLS} FROM channels"
    " WHERE partner_id = ? AND name_key = ? AND deleted_at IS NULL"
)
SQL_BALANCE = "SELECT balance FROM accounts WHERE code = ?"
SQL_LAST = "SELECT id, digest FROM transfers ORDER BY id DESC LIMIT 1"
SQL_CHAIN = "SELECT keyed_from, seal FROM ledger_chain WHERE id = 1"  # no key: no row
SQL_TRANSFER = f"INSERT INTO transfers ({rows.TRANSFER_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
# SqlLedger.update_channel writes name, name_key and every column after created_at.
_CHANNEL_REST = [c.strip() for c in rows.CHANNEL_COLS.split(",")][4:]  # active_until, ...
SQL_CHANNEL_UPDATE = (
    "UPDATE channels SET name = ?, name_key = ?, "
    + ", ".join(f"{c} = ?" for c in _CHANNEL_REST)
    + " WHERE id = ?"
)
SQL_ALERT = ALERT_STATE_SQL
SQL_SAVE = "INSERT INTO operations (key, kind, outcome, created_at) VALUES (?, ?, ?, ?)"


def to_us(instant: datetime) -> int:
    return (instant - EPOCH) // _US


class Raw:
    """Plain sqlite3 on this thread, the same statements in one transaction."""

    def __init__(self, path: Path, synchronous: Synchronous, pid: int) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        configure(self.conn, synchronous, BUSY_TIMEOUT_MS)
        self.pid = pid
        self.seq = 0

    def allocate(self, key: str, days: int) -> None:
        conn, pid = self.conn, self.pid
        now = datetime.now(UTC)
        debit, key_name = f"partner:{pid}", name_key(CHANNEL)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute(SQL_OUTCOME, (key,)).fetchone() is not None:
                raise RuntimeError("key reused")
            if conn.execute(SQL_PARTNER, (pid,)).fetchone() is None:
                raise RuntimeError("no partner")
            ch = conn.execute(SQL_CHANNEL, (pid, key_name)).fetchone()
            balance = conn.execute(SQL_BALANCE, (debit,)).fetchone()[0]
            if days > balance:
                raise RuntimeError("balance")
            until_us = max(to_us(now), ch[4] or 0) + days * 86_400_000_000
            until = EPOCH + until_us * _US
            credit = f"channel:{ch[0]}"
            conn.execute(SQL_CHANNEL_UPDATE, (ch[2], key_name, until_us, *ch[5:], ch[0]))
            last = conn.execute(SQL_LAST).fetchone()
            tid, previous = (1, GENESIS) if last is None else (last[0] + 1, last[1])
            if conn.execute(SQL_CHAIN).fetchone() is not None:
                raise RuntimeError("the benchmark's ledger has no chain key")
            fields = (previous, str(tid), key, debit, credit, str(days), "allocation", ACTOR,
                      "", now.isoformat(timespec="microseconds"), "")
            digest = hashlib.sha256("\x1f".join(fields).encode()).hexdigest()
            conn.execute(SQL_TRANSFER, (tid, key, debit, credit, days, "allocation", ACTOR,
                                        "", to_us(now), None, digest))
            alert = conn.execute(SQL_ALERT, (pid,)).fetchone()
            if (alert[7] < alert[4]) != bool(alert[8]):
                raise RuntimeError("the benchmark's balance should never cross the threshold")
            outcome = json.dumps(
                {"active_until": until.isoformat(), "balance": balance - days,
                 "channel_id": ch[0], "channel_name": ch[2], "days": days,
                 "partner_id": pid, "transfer_id": tid},
                sort_keys=True, separators=(",", ":"),
            )
            conn.execute(SQL_SAVE, (key, "DaysAllocated", outcome, to_us(now)))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def run(self, n: int) -> float:
        allocate, base = self.allocate, self.seq
        start = time.perf_counter()
        for i in range(base, base + n):
            allocate(f"alloc-{i}", 1)
        elapsed = time.perf_counter() - start
        self.seq += n
        return elapsed

    def close(self) -> None:
        self.conn.execute("PRAGMA optimize")
        self.conn.close()


# running -------------------------------------------------------------------------------


async def verify_file(path: Path) -> str:
    store = await SqliteStore.open(path)
    try:
        report = await BillingService(store, SystemClock(), BillingPolicy()).verify()
    finally:
        await store.close()
    if not report.ok:
        raise SystemExit(f"{path.name}: {report.summary()}: {report.violations[:3]}")
    return report.summary()


def measure(
    workdir: Path, synchronous: Synchronous, rounds: int, ops: int, warmup: int
) -> dict[str, list[float]]:
    """ops/s per round for each implementation, rounds interleaved (ours, raw, ours...)."""
    balance = (rounds * ops + warmup) + 1000
    impls: dict[str, Ours | Raw] = {}
    for name, cls in (("ours", Ours), ("raw", Raw)):
        path = workdir / f"{name}-{synchronous.lower()}.db"
        pid, _ = asyncio.run(prepare(path, synchronous, balance))
        impls[name] = cls(path, synchronous, pid)
    results: dict[str, list[float]] = {name: [] for name in impls}
    try:
        for impl in impls.values():
            impl.run(warmup)
        for r in range(rounds):
            # Alternate who goes first, so neither always follows the other's checkpoint.
            order = list(impls.items()) if r % 2 == 0 else list(reversed(impls.items()))
            for name, impl in order:
                results[name].append(ops / impl.run(ops))
    finally:
        for impl in impls.values():
            impl.close()
    for name in impls:
        asyncio.run(verify_file(workdir / f"{name}-{synchronous.lower()}.db"))
    return results


def _shape(sql: str) -> str:
    """A traced statement with its literal values replaced by ?."""
    sql = re.sub(r"'(?:[^']|'')*'", "?", sql)
    return re.sub(r"\b\d+\b", "?", " ".join(sql.split()))


def statements(workdir: Path) -> tuple[list[str], list[str]]:
    """The statements one allocation runs, traced by SQLite (trigger bodies included):
    ours (the use case over SqlLedger, in BEGIN IMMEDIATE ... COMMIT as the store
    runs it) and raw, as shapes with the values taken out."""
    path = workdir / "trace.db"
    pid, _ = asyncio.run(prepare(path, "FULL", 1000))
    traced: list[str] = []
    conn = sqlite3.connect(path, isolation_level=None)
    configure(conn, "FULL", BUSY_TIMEOUT_MS)
    conn.set_trace_callback(traced.append)
    conn.execute("BEGIN IMMEDIATE")
    ledger = SqlLedger(Connection(conn))
    channels.allocate_days(ledger, datetime.now(UTC), pid, CHANNEL, 1, ACTOR, "t-1")
    conn.execute("COMMIT")
    conn.close()
    ours = [_shape(t) for t in traced]
    traced.clear()
    raw = Raw(path, "FULL", pid)
    raw.conn.set_trace_callback(traced.append)
    raw.allocate("t-2", 1)
    raw.conn.set_trace_callback(None)
    raw.close()
    return ours, [_shape(t) for t in traced]


def breakdown(workdir: Path, synchronous: Synchronous, ops: int) -> tuple[float, float]:
    """Where ours spends its time beyond raw: (a) the use case (core + SqlLedger) run
    synchronously on this thread, no database thread; (b) one round trip to the store's
    database thread of a trivial statement. Both in microseconds per operation."""
    path = workdir / f"split-{synchronous.lower()}.db"
    pid, _ = asyncio.run(prepare(path, synchronous, ops * 2 + 1000))
    conn = sqlite3.connect(path, isolation_level=None)
    configure(conn, synchronous, BUSY_TIMEOUT_MS)
    ledger = SqlLedger(Connection(conn))

    def one(i: int) -> None:
        now = datetime.now(UTC)
        conn.execute("BEGIN IMMEDIATE")
        try:
            channels.allocate_days(ledger, now, pid, CHANNEL, 1, ACTOR, f"split-{i}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    for i in range(ops // 5):
        one(i)
    start = time.perf_counter()
    for i in range(ops // 5, ops // 5 + ops):
        one(i)
    sync_us = (time.perf_counter() - start) / ops * 1e6
    conn.close()

    async def hops() -> float:
        store = await SqliteStore.open(path, synchronous=synchronous)
        try:
            for _ in range(ops // 5):
                await store.execute_raw("SELECT 1")
            start = time.perf_counter()
            for _ in range(ops):
                await store.execute_raw("SELECT 1")
            return (time.perf_counter() - start) / ops * 1e6
        finally:
            await store.close()

    return sync_us, asyncio.run(hops())


def table(rows_: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows_) for i in range(len(rows_[0]))]
    lines = []
    for k, r in enumerate(rows_):
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                               enumerate(zip(r, widths, strict=True))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and operations")
    parser.add_argument("--rounds", type=int, help="timed rounds per cell (default 7, quick 3)")
    parser.add_argument("--ops", type=int, help="allocations per round (default 1500, quick 300)")
    parser.add_argument("--breakdown", action="store_true", help="also time ours in parts: "
                        "the use case without the database thread, and one round trip to it")
    parser.add_argument("--dir", type=Path, help="where the database files go (default: a "
                        "temporary directory; use a directory on the disk you care about)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 7)
    ops = args.ops or (300 if args.quick else 1500)
    warmup = max(20, ops // 5)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="partnerbot-bench-", dir=args.dir) as tmp:
        workdir = Path(tmp)
        print(f"sqlite {sqlite3.sqlite_version}, python {sys.version.split()[0]}, "
              f"{os.cpu_count()} cpus; files in {workdir}")
        print(f"{rounds} rounds x {ops} allocations of 1 day per cell, after {warmup} "
              "warm-up allocations; median of the rounds")
        ours_sql, raw_sql = statements(workdir)
        if ours_sql != raw_sql:
            print("NOT EQUIVALENT: the raw baseline no longer runs what allocate_days runs")
            for k in range(max(len(ours_sql), len(raw_sql))):
                a = ours_sql[k] if k < len(ours_sql) else "-"
                b = raw_sql[k] if k < len(raw_sql) else "-"
                print(f"  {'  ' if a == b else '!!'} ours: {a[:90]}\n     raw:  {b[:90]}")
            return 1
        print(f"one allocation = {len(ours_sql)} statements traced by SQLite (trigger "
              "bodies included), the same shapes for ours and raw")
        print()
        cells: dict[str, dict[str, float]] = {}
        spread: dict[str, dict[str, tuple[float, float]]] = {}
        for sync in ("FULL", "NORMAL"):
            res = measure(workdir, sync, rounds, ops, warmup)
            cells[sync] = {k: statistics.median(v) for k, v in res.items()}
            spread[sync] = {k: (min(v), max(v)) for k, v in res.items()}
        body: list[tuple[str, ...]] = [
            ("synchronous", "ours ops/s", "raw ops/s", "ours us/op", "raw us/op", "ours/raw",
             "ours min-max", "raw min-max"),
        ]
        for sync, c in cells.items():
            o, r = c["ours"], c["raw"]
            so, sr = spread[sync]["ours"], spread[sync]["raw"]
            body.append((
                sync + (" (default)" if sync == "FULL" else ""), f"{o:,.0f}", f"{r:,.0f}",
                f"{1e6 / o:,.0f}", f"{1e6 / r:,.0f}", f"{o / r:.2f}",
                f"{so[0]:,.0f}-{so[1]:,.0f}", f"{sr[0]:,.0f}-{sr[1]:,.0f}",
            ))
        print(table(body))
        print()
        if args.breakdown:
            modes: tuple[Synchronous, ...] = ("FULL", "NORMAL")
            for sync in modes:
                sync_us, hop_us = breakdown(workdir, sync, ops)
                print(f"{sync}: use case on one thread (core + SqlLedger, no database thread) "
                      f"{sync_us:,.0f} us/op; database thread round trip {hop_us:,.0f} us; "
                      f"raw {1e6 / cells[sync]['raw']:,.0f} us/op")
            print()
        print("both files of each cell pass `ledger verify` (same work, valid chain)")
        print(f"took {time.perf_counter() - started:.1f} s")
    ratio = cells["FULL"]["ours"] / cells["FULL"]["raw"]
    print(f"ledger_vs_sqlite3: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
