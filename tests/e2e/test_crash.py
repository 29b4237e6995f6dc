"""Crash safety: SIGKILL a process in the middle of ledger operations, several times.

A child (crash_worker.py) runs operations through BillingService on one SQLite file and
reports each one after it committed. The parent kills it at random moments, restarts it
on the same file with fresh keys, and at the end checks that

- `ledger verify` passes (through the service and through the console script), and
- every operation the child reported before a kill is durable: replaying its key
  returns replayed=True with the very outcome reported, and its transfers exist.

The seed is printed (and can be forced with PARTNERBOT_CRASH_SEED) to replay a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core import outcomes
from core.policy import BillingPolicy
from core.service import BillingService
from partnerbot.wiring import SystemClock
from storage.sqlite import SqliteStore
from tests.e2e import clean_env, console_script

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("crash_worker.py")
KILLS = 6


@dataclass(frozen=True)
class Reported:
    op: str
    key: str
    kind: str
    payload: str
    args: dict[str, Any]


def parse(line: str) -> Reported | None:
    if not line.startswith("ok\t"):
        return None
    _, op, key, kind, payload, args = line.split("\t")
    return Reported(op, key, kind, payload, json.loads(args))


class Child:
    """One worker process and a thread collecting its complete stdout lines."""

    def __init__(self, db: Path, tag: str, seed: int) -> None:
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(db), tag, str(seed)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=db.parent,
            env=clean_env(),
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.endswith("\n"):
                break  # cut off by the kill: never reported as committed
            self.lines.append(line.rstrip("\n"))
            if line.startswith("ready "):
                self.ready.set()

    def kill(self) -> str:
        """SIGKILL; returns stderr (empty unless the worker failed on its own)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.reader.join(timeout=10)
        assert self.proc.stderr is not None
        return self.proc.stderr.read()


async def replay_all(db: Path, reported: list[Reported]) -> dict[str, int]:
    """Replay every reported operation and check its stored effects; counts per op."""
    store = await SqliteStore.open(db)
    billing = BillingService(store, SystemClock(), BillingPolicy())
    counts: dict[str, int] = {}
    try:
        report = await billing.verify()
        assert report.ok, [str(v) for v in report.violations]
        pid = (await billing.resolve_partner("Crash Test Partner")).id
        transfers = {
            row[1]: row
            for row in await store.execute_raw("SELECT id, key, days FROM transfers")
        }
        by_id = {row[0]: row for row in transfers.values()}
        for r in reported:
            a = r.args
            result: object
            if r.op == "credit":
                result = await billing.credit_paid_order(
                    a["order_id"], a["amount"], a["currency"], "stripe:replay"
                )
            elif r.op == "grant":
                result = await billing.grant_days(pid, a["days"], "crash test", "support:9", r.key)
            elif r.op == "create":
                result = await billing.create_channel(pid, a["name"], "user:1", r.key)
            elif r.op == "allocate":
                result = await billing.allocate_days(pid, a["name"], a["days"], "user:1", r.key)
            else:
                result = await billing.delete_channel(pid, a["channel_id"], "user:1", r.key)
            assert getattr(result, "replayed", False) is True, (r, result)
            assert outcomes.encode(result) == (r.kind, r.payload), r
            stored = json.loads(r.payload)
            if "transfer_id" in stored:
                row = by_id.get(stored["transfer_id"])
                assert row is not None and row[1] == r.key, (r, row)
                assert row[2] == abs(stored["days"]), (r, row)
            if r.op == "delete":
                for suffix, field in (("return", "returned_days"), ("consumed", "consumed_days")):
                    row = transfers.get(f"{r.key}/{suffix}")
                    if stored[field]:
                        assert row is not None and row[2] == stored[field], (r, row)
                    else:
                        assert row is None, (r, row)
            if r.op == "create":
                names = await billing.channel_names(pid)
                assert names.get(stored["channel_id"]) == stored["name"], r
            counts[r.op] = counts.get(r.op, 0) + 1
        # The replays changed nothing.
        after = await store.execute_raw("SELECT count(*) FROM transfers")
        assert after[0][0] == len(transfers)
        assert (await billing.verify()).ok
    finally:
        await store.close()
    return counts


def test_sigkill_at_random_moments_loses_no_committed_operation(tmp_path: Path) -> None:
    seed = int(os.environ.get("PARTNERBOT_CRASH_SEED", "0")) or random.randrange(1, 10**9)
    print(f"crash test seed: {seed} (PARTNERBOT_CRASH_SEED={seed} replays the kill plan)")
    rng = random.Random(seed)
    db = tmp_path / "crash.db"
    reported: list[Reported] = []
    started = time.monotonic()
    for round_no in range(KILLS):
        child = Child(db, f"r{round_no}", rng.randrange(10**9))
        if round_no == 0:
            # The first kill may land anywhere, opening and migrating the file included.
            time.sleep(rng.uniform(0.0, 0.5))
        else:
            assert child.ready.wait(timeout=20), "worker did not start"
            time.sleep(rng.uniform(0.05, 0.8))
        err = child.kill()
        # Killed by us, not dead of its own error.
        assert child.proc.returncode == -signal.SIGKILL, (child.proc.returncode, err)
        reported.extend(r for r in map(parse, child.lines) if r is not None)
    assert time.monotonic() - started < 30
    assert len(reported) > 50, "too few operations completed to test anything"

    counts = asyncio.run(replay_all(db, reported))
    print(f"{len(reported)} committed operations replayed: {counts}")
    assert set(counts) >= {"credit", "grant", "create", "allocate"}

    # And the operator's view agrees.
    env = clean_env(PARTNERBOT_DATABASE__PATH=str(db))
    done = subprocess.run(
        [*console_script(), "ledger", "verify"], capture_output=True, text=True, env=env,
        cwd=tmp_path, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ledger ok")
