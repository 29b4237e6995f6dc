"""The PostgreSQL half of bench/ledger.py: PostgresStore against raw psycopg.

"ours" is BillingService.allocate_days over storage.postgres.PostgresStore (a pooled
connection, a worker thread, READ COMMITTED under the ledger's advisory lock), awaited
one after another. "raw" is one plain psycopg 3 connection on the
main thread running the same transaction by hand: BEGIN, pg_advisory_xact_lock, the
statements of bench/ledger.py's raw loop with %s placeholders, COMMIT. Both write to
one migrated database (a partner and a channel each, rounds interleaved, never at the
same time); the raw loop chains its digests on whatever row is last, so the shared
ledger passes `ledger verify` at the end (checked: proof the work is the same).

The server is `--database URL` (a database the benchmark may migrate and write to), else
PARTNERBOT_TEST_DATABASE_URL, else a throwaway server started from the machine's
PostgreSQL binaries by tests/pg_server.py (fsync off: the figures then show the
client's costs, which is what the ratio is about).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ledger as common  # bench/ledger.py (bench/ is on sys.path when it runs)
import psycopg

from core.invariants import verify
from core.names import name_key
from core.policy import BillingPolicy
from core.service import BillingService
from storage.postgres import LEDGER_WRITE_KEY, PgOptions, PostgresStore


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"
LOCK = f"SELECT pg_advisory_xact_lock({LEDGER_WRITE_KEY})"
SQL = {name: _pg(getattr(common, name)) for name in (
    "SQL_OUTCOME", "SQL_PARTNER", "SQL_CHANNEL", "SQL_BALANCE", "SQL_CHANNEL_UPDATE",
    "SQL_LAST", "SQL_CHAIN", "SQL_TRANSFER", "SQL_ALERT", "SQL_SAVE",
)}


async def prepare(url: str, balance: int) -> tuple[int, str]:
    """A partner (a fresh name) holding `balance` days, with one channel."""
    store = await PostgresStore.open(url)
    try:
        billing = BillingService(store, common.SystemClock(), BillingPolicy())
        created = await billing.create_partner(f"Bench {uuid.uuid4().hex[:8]}", common.ACTOR)
        pid = created.partner.id
        left, n = balance, 0
        while left > 0:
            chunk = min(left, 100_000)
            await billing.grant_days(pid, chunk, "benchmark balance", common.ACTOR,
                                     f"grant-{pid}-{n}")
            left -= chunk
            n += 1
        await billing.create_channel(pid, common.CHANNEL, common.ACTOR, f"channel-{pid}")
        return pid, f"p{pid}"
    finally:
        await store.close()


class Ours:
    def __init__(self, url: str, pid: int, tag: str) -> None:
        self.pid, self.tag = pid, tag
        self.loop = asyncio.new_event_loop()
        self.store = self.loop.run_until_complete(
            PostgresStore.open(url, options=PgOptions(min_size=1, max_size=4))
        )
        self.billing = BillingService(self.store, common.SystemClock(), BillingPolicy())
        self.seq = 0

    def run(self, n: int) -> float:
        async def work() -> float:
            billing, pid, base, tag = self.billing, self.pid, self.seq, self.tag
            start = time.perf_counter()
            for i in range(base, base + n):
                await billing.allocate_days(pid, common.CHANNEL, 1, common.ACTOR,
                                            f"{tag}-{i}")
            return time.perf_counter() - start

        elapsed = self.loop.run_until_complete(work())
        self.seq += n
        return elapsed

    def close(self) -> None:
        self.loop.run_until_complete(self.store.close())
        self.loop.close()


class Raw:
    """One psycopg connection, autocommit, the transaction written out by hand."""

    def __init__(self, url: str, pid: int, tag: str) -> None:
        self.conn: psycopg.Connection[Any] = psycopg.connect(url, autocommit=True)
        self.pid, self.tag = pid, tag
        self.seq = 0

    def allocate(self, key: str, days: int) -> None:
        conn, pid, q = self.conn, self.pid, SQL
        now = datetime.now(UTC)
        debit, key_name = f"partner:{pid}", name_key(common.CHANNEL)
        conn.execute(BEGIN)
        try:
            conn.execute(LOCK)
            if conn.execute(q["SQL_OUTCOME"], (key,)).fetchone() is not None:
                raise RuntimeError("key reused")
            if conn.execute(q["SQL_PARTNER"], (pid,)).fetchone() is None:
                raise RuntimeError("no partner")
            ch = conn.execute(q["SQL_CHANNEL"], (pid, key_name)).fetchone()
            assert ch is not None
            balance = conn.execute(q["SQL_BALANCE"], (debit,)).fetchone()[0]  # type: ignore[index]
            if days > balance:
                raise RuntimeError("balance")
            until_us = max(common.to_us(now), ch[4] or 0) + days * 86_400_000_000
            until = common.EPOCH + until_us * common._US
            credit = f"channel:{ch[0]}"
            conn.execute(q["SQL_CHANNEL_UPDATE"], (ch[2], key_name, until_us, *ch[5:], ch[0]))
            last = conn.execute(q["SQL_LAST"]).fetchone()
            tid, previous = (1, common.GENESIS) if last is None else (last[0] + 1, last[1])
            if conn.execute(q["SQL_CHAIN"]).fetchone() is not None:
                raise RuntimeError("the benchmark's ledger has no chain key")
            fields = (previous, str(tid), key, debit, credit, str(days), "allocation",
                      common.ACTOR, "", now.isoformat(timespec="microseconds"), "")
            digest = hashlib.sha256("\x1f".join(fields).encode()).hexdigest()
            conn.execute(q["SQL_TRANSFER"], (tid, key, debit, credit, days, "allocation",
                                             common.ACTOR, "", common.to_us(now), None, digest))
            alert = conn.execute(q["SQL_ALERT"], (pid,)).fetchone()
            assert alert is not None
            if (alert[7] < alert[4]) != bool(alert[8]):
                raise RuntimeError("the benchmark's balance should never cross the threshold")
            outcome = json.dumps(
                {"active_until": until.isoformat(), "balance": balance - days,
                 "channel_id": ch[0], "channel_name": ch[2], "days": days,
                 "partner_id": pid, "transfer_id": tid},
                sort_keys=True, separators=(",", ":"),
            )
            conn.execute(q["SQL_SAVE"], (key, "DaysAllocated", outcome, common.to_us(now)))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def run(self, n: int) -> float:
        allocate, base, tag = self.allocate, self.seq, self.tag
        start = time.perf_counter()
        for i in range(base, base + n):
            allocate(f"{tag}-raw-{i}", 1)
        elapsed = time.perf_counter() - start
        self.seq += n
        return elapsed

    def close(self) -> None:
        self.conn.close()


async def _verify(url: str) -> str:
    store = await PostgresStore.open(url)
    try:
        report = await store.verify(verify)
    finally:
        await store.close()
    if not report.ok:
        raise SystemExit(f"postgres: {report.summary()}: {report.violations[:3]}")
    return report.summary()


def measure(url: str, rounds: int, ops: int, warmup: int) -> dict[str, list[float]]:
    """ops/s per round for ours and raw, rounds interleaved."""
    balance = (rounds * ops + warmup) + 1000
    impls: dict[str, Ours | Raw] = {}
    for name, cls in (("ours", Ours), ("raw", Raw)):
        pid, tag = asyncio.run(prepare(url, balance))
        impls[name] = cls(url, pid, tag)
    results: dict[str, list[float]] = {name: [] for name in impls}
    try:
        for impl in impls.values():
            impl.run(warmup)
        for r in range(rounds):
            order = list(impls.items()) if r % 2 == 0 else list(reversed(impls.items()))
            for name, impl in order:
                results[name].append(ops / impl.run(ops))
    finally:
        for impl in impls.values():
            impl.close()
    asyncio.run(_verify(url))
    return results


def report(url: str, rounds: int, ops: int, warmup: int) -> float:
    """Print the PostgreSQL cell; return ours/raw (medians)."""
    res = measure(url, rounds, ops, warmup)
    o, r = statistics.median(res["ours"]), statistics.median(res["raw"])
    print(common.table([
        ("postgresql", "ours ops/s", "raw ops/s", "ours us/op", "raw us/op", "ours/raw",
         "ours min-max", "raw min-max"),
        ("READ COMMITTED + lock", f"{o:,.0f}", f"{r:,.0f}", f"{1e6 / o:,.0f}",
         f"{1e6 / r:,.0f}", f"{o / r:.2f}",
         f"{min(res['ours']):,.0f}-{max(res['ours']):,.0f}",
         f"{min(res['raw']):,.0f}-{max(res['raw']):,.0f}"),
    ]))
    print("the shared PostgreSQL ledger passes `ledger verify` (same work, valid chain)")
    return o / r


@contextmanager
def server(url: str | None) -> Iterator[str | None]:
    """A database URL to measure on, or None (with the reason printed) when there is
    neither a URL nor PostgreSQL binaries here."""
    if url:
        yield url
        return
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:  # tests.pg_server is not installed; the repository holds it
        sys.path.insert(0, root)
    from tests.pg_server import PgServer, PgUnavailable

    try:
        pg = PgServer.from_environment()
    except PgUnavailable as exc:
        print(f"postgresql: not measured: {exc}")
        yield None
        return
    try:
        database = pg.create_database()
        where = "PARTNERBOT_TEST_DATABASE_URL" if os.environ.get("PARTNERBOT_TEST_DATABASE_URL") \
            else "a throwaway server (fsync off)"
        print(f"postgresql: {where}, psycopg {psycopg.__version__}")
        yield database
    finally:
        pg.stop()
