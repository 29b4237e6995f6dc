"""Child process of test_crash.py: ledger operations in a loop until it is killed.

    python crash_worker.py DB_PATH TAG SEED

Opens the SQLite store at DB_PATH (synchronous=FULL, the default) and, forever, in
LANES concurrent lanes (so that writes also commit in groups), runs random operations
through BillingService: credit a paid top-up order, grant days, create
a channel, allocate days, delete a channel. After each operation has COMMITTED (the
awaited service call returned) it writes one line to stdout and flushes:

    ok <op> <key> <outcome kind> <outcome JSON> <args JSON>    (tab-separated)

where <args JSON> holds what the parent needs to replay the same call. A refusal (e.g.
not enough balance) prints `refused <op> <key> <reason>`; it committed nothing. Keys
start with TAG, so each restart uses fresh ones. "ready <partner id>" comes first.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from datetime import UTC, datetime

from core import outcomes
from core.errors import BillingError, PartnerNotFound
from core.model import OrderKind
from core.policy import BillingPolicy
from core.service import BillingService
from storage.sqlite import SqliteStore

PARTNER = "Crash Test Partner"
LANES = 4


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def report(op: str, key: str, result: object, args: dict[str, object]) -> None:
    kind, payload = outcomes.encode(result)
    emit("\t".join(["ok", op, key, kind, payload, json.dumps(args)]))


async def main(path: str, tag: str, seed: int) -> None:
    rng = random.Random(seed)
    store = await SqliteStore.open(path)
    billing = BillingService(store, SystemClock(), BillingPolicy())
    try:
        pid = (await billing.resolve_partner(PARTNER)).id
    except PartnerNotFound:
        pid = (await billing.create_partner(PARTNER, "cli:crash-test")).partner.id
    # Channels left live by earlier (killed) runs are fair game too.
    live: dict[int, str] = {
        c.id: c.name for c in await store.read(lambda lg: lg.list_channels(pid))
    }
    emit(f"ready {pid}")
    # Several lanes at once, so that writes queue together and commit as a group (one
    # transaction, a savepoint each): a kill must not lose a reported one there either.
    await asyncio.gather(*(lane(billing, rng, pid, live, f"{tag}-{k}") for k in range(LANES)))


async def lane(
    billing: BillingService, rng: random.Random, pid: int, live: dict[int, str], tag: str
) -> None:
    n = 0
    while True:
        n += 1
        key = f"{tag}-{n}"
        op = rng.choices(
            ["credit", "grant", "create", "allocate", "delete"], weights=[2, 2, 2, 5, 1]
        )[0]
        if op in ("allocate", "delete") and not live:
            op = "create"
        try:
            if op == "credit":
                order = await billing.open_order(pid, OrderKind.TOPUP, rng.randint(30, 90),
                                                 "user:1")
                key = f"order:{order.id}:credit"
                result: object = await billing.credit_paid_order(
                    order.id, order.amount, order.currency, f"stripe:evt_{tag}_{n}",
                    payment_ref=f"pi_{tag}_{n}",
                )
                report(op, key, result, {"order_id": order.id, "amount": order.amount,
                                         "currency": order.currency})
            elif op == "grant":
                days = rng.choice([rng.randint(1, 50), -rng.randint(1, 5)])
                result = await billing.grant_days(pid, days, "crash test", "support:9", key)
                report(op, key, result, {"days": days})
            elif op == "create":
                name = f"{tag} channel {n}"
                created = await billing.create_channel(pid, name, "user:1", key)
                live[created.channel_id] = created.name
                report(op, key, created, {"name": name})
            elif op == "allocate":
                name = live[rng.choice(sorted(live))]
                days = rng.randint(1, 10)
                result = await billing.allocate_days(pid, name, days, "user:1", key)
                report(op, key, result, {"name": name, "days": days})
            else:
                channel_id = rng.choice(sorted(live))
                del live[channel_id]  # before the await: no other lane picks it meanwhile
                result = await billing.delete_channel(pid, channel_id, "user:1", key)
                report(op, key, result, {"channel_id": channel_id})
        except BillingError as exc:
            emit("\t".join(["refused", op, key, type(exc).__name__]))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
