"""Issue 12's acceptance: 3 `partnerbot run` instances on one PostgreSQL database in webhook
mode, behind a loopback balancer (tests/e2e/cluster.py), Telegram (the fake Bot API)
posting updates to the balancer and Stripe's webhooks going through it too.

- journeys across instances: each request may land on any instance;
- the leader killed (SIGKILL) while notices are queued: another instance leads within
  `cluster.failover_seconds`, and every queued notice is delivered exactly once;
- an instance SIGKILLed under a stream of `/allocate`: every acknowledged allocation is in
  the ledger, none is done twice, `ledger verify` passes on PostgreSQL;
- one Stripe event delivered to two instances at once credits once;
- a wrong or missing webhook secret is refused and nothing is processed.

It needs h-sql (the PostgreSQL store), h-webhook (webhook mode, `partnerbot webhook set`,
FakeTelegram.start_delivery) and h-cluster (the leader, /healthz `role`): until all are in
the tree the module skips with one line naming what is missing (`missing_parts`). On a
trial merge of the three with this branch, all five tests passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from partnerbot.cli import build_parser
from tests.e2e.cluster import STRIPE_SECRET, SUPPORT, WEBHOOK_SECRET, Cluster
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.telegram_api import FakeTelegram, FakeUser
from tests.faults import cli
from tests.faults.test_crash_updates import GAVE, MATE_1, MATE_2, OWNER, answered, say, set_up

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]
FAILOVER = 3.0  # cluster.failover_seconds, its lowest allowed value
# What "within the failover time" may take on top on a loaded 2-core machine: the time to
# notice it over /healthz polls and for the new leader's first round.
FAILOVER_GRACE = 5.0
Running = Cluster[FakeTelegram, FakeStripe]
DELIVERY = "start_delivery"  # h-webhook's FakeTelegram (tests/fakes/telegram_api/delivery.py)
# Telegram posts to one webhook over up to 40 connections (setWebhook's max_connections
# default); one sender's updates one at a time, each after the previous was acknowledged.
CONNECTIONS = 8


def missing_parts() -> list[str]:
    """The parts of issue 12 this test needs that are not in this tree yet."""
    missing = []
    if importlib.util.find_spec("storage.postgres") is None:
        missing.append("h-sql: the PostgreSQL store (storage/postgres.py)")
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            build_parser().parse_args(["webhook", "info"])
    except SystemExit:
        missing.append("h-webhook: `partnerbot webhook set|info|delete`")
    if not hasattr(FakeTelegram, DELIVERY):
        missing.append(f"h-webhook: the fake Bot API delivering updates (FakeTelegram.{DELIVERY})")
    return missing


MISSING = missing_parts()
if MISSING:  # one line for the module, before any database or process is made
    pytest.skip("issue 12 acceptance waits for " + "; ".join(MISSING), allow_module_level=True)


def telegram_delivers_to(tg: FakeTelegram, url: str, secret: str) -> None:
    """Telegram posts every queued update to `url` with the secret header, redelivering
    until it gets a 2xx."""
    tg.start_delivery(url, secret=secret, connections=CONNECTIONS)


def pg_rows(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [tuple(r) for r in conn.execute(sql, args).fetchall()]


@pytest.fixture
async def cluster(
    tmp_path: Path, pg_url: str
) -> AsyncIterator[Running]:
    async with (
        FakeTelegram() as tg, FakeStripe() as stripe,
        Cluster(
            tmp_path, tg, stripe, instances=3, database_url=pg_url, mode="webhook",
            PARTNERBOT_CLUSTER__FAILOVER_SECONDS=str(FAILOVER),
            # Three members sending 50 commands each at once is the load this test needs,
            # not a flood. The stranger allowance too: an instance that has not handled a
            # sender's update yet limits them as a stranger (bot/limits.py Sender.UNKNOWN),
            # and with claims the instance that records an update is not always the one
            # that handles it.
            PARTNERBOT_LIMITS__MEMBER_PER_MINUTE="6000",
            PARTNERBOT_LIMITS__STRANGER_PER_MINUTE="6000",
        ) as running,
    ):
        roles = await running.roles()
        if not any(roles.values()):
            pytest.skip(f"waits for h-cluster: /healthz has no role ({roles})")
        # The operator's step (README): `partnerbot webhook set` with the configured URL.
        settings = {
            k: v for k, v in running.env(running.instances[0]).items()
            if k.startswith("PARTNERBOT_")
        }
        done = await cli("webhook", "set", db=tmp_path / "unused.db", **settings)  # type: ignore[arg-type]
        assert done.code == 0, done.err
        telegram_delivers_to(tg, running.telegram_webhook, WEBHOOK_SECRET)
        yield running


def people(tg: FakeTelegram) -> tuple[FakeUser, list[FakeUser]]:
    return tg.user(SUPPORT, "Sam"), [
        tg.user(OWNER, "Olga"), tg.user(MATE_1, "Mia"), tg.user(MATE_2, "Max"),
    ]


async def verify_ledger(cluster: Running) -> str:
    assert cluster.database_url is not None
    done = await cli(
        "ledger", "verify", db=cluster.tmp / "unused.db",
        PARTNERBOT_DATABASE__URL=cluster.database_url,
    )
    assert done.code == 0, done.out + done.err
    return done.out.strip()


async def test_journeys_go_through_every_instance(cluster: Running) -> None:
    tg, stripe = cluster.tg, cluster.stripe
    support, members = people(tg)
    await set_up(tg, support, members)  # partner, owner, two mates, channel "shop"
    owner = members[0]
    for days in (3, 4, 5):
        await say(tg, owner, f"/allocate shop {days}", f"Gave {days} days to shop")
    quote = await say(tg, owner, "/topup 300", "300 days for ")
    [[(_, url)]] = quote.buttons()
    session = re.search(r"cs_test_[A-Za-z0-9]+", url or "")
    assert session, url
    event = stripe.complete_session(session.group(0))
    status, _ = await stripe.deliver_webhook(event, cluster.stripe_webhook, STRIPE_SECRET)
    assert status == 200
    await tg.wait_until(
        lambda: all(any("300 days credited" in m.text for m in u.replies) for u in members),
        timeout=30, what="every member told of the payment",
    )
    balance = await say(tg, owner, "/balance", "Balance: ")
    assert balance.text.splitlines()[0] == "Balance: 90,288 days"  # 90,000 - 12 + 300
    assert set(cluster.balancer.served) == {0, 1, 2}, cluster.balancer.served
    assert (await verify_ledger(cluster)).startswith("ledger ok")


async def test_the_leader_killed_with_notices_queued_another_leads_and_sends_each_once(
    cluster: Running,
) -> None:
    tg = cluster.tg
    support, members = people(tg)
    await set_up(tg, support, members)
    leader = await cluster.wait_leader()
    # Telegram fails every send to the members for now: the notices below stay queued
    # (nothing half-sent when the leader dies, so "exactly once" is exact).
    for member in members:
        tg.fail_server_error("sendMessage", chat_id=member.user_id, times=None)
    grants = [f"failover op{n}" for n in range(5)]
    for reason in grants:
        await say(tg, support, f"/credit Acme 1 {reason}", "Granted")
    await leader.kill()
    killed_at = time.monotonic()
    tg.clear_faults()
    new = await cluster.wait_leader(within=FAILOVER + FAILOVER_GRACE, other_than=leader.index)
    took = time.monotonic() - killed_at
    print(f"\ninstance {new.index} leads {took:.1f} s after instance {leader.index} was killed")

    def told(member: FakeUser) -> Counter[str]:
        return Counter(r for m in member.replies for r in grants if f"({r})" in m.text
                       or f": {r}." in m.text)

    await tg.wait_until(
        lambda: all(set(told(m)) == set(grants) for m in members), timeout=60,
        what="every grant told to every member",
    )
    await asyncio.sleep(FAILOVER)  # room for a second sending, were there one
    assert all(told(m) == Counter(grants) for m in members), [told(m) for m in members]
    [(pending,)] = pg_rows(
        cluster.database_url or "", "SELECT count(*) FROM deliveries WHERE status = 'pending'"
    )
    assert pending == 0
    await leader.start()  # comes back as a standby
    assert (await cluster.roles())[leader.index] == "standby"


async def test_an_instance_killed_under_a_stream_of_allocations_loses_and_repeats_nothing(
    cluster: Running,
) -> None:
    tg = cluster.tg
    support, members = people(tg)
    await set_up(tg, support, members)
    sent: dict[int, int] = {}  # days -> update id
    for days in range(1, 151):
        update = await members[days % len(members)].send(f"/allocate shop {days}")
        sent[days] = int(update["update_id"])
    await tg.wait_until(lambda: sum(answered(members).values()) >= 10, timeout=60,
                        what="first answers")
    victim = cluster.instances[1]
    await victim.kill()
    acknowledged_before = set(answered(members))
    try:
        await tg.wait_until(
            lambda: len(answered(members)) == len(sent), timeout=120,
            what=f"an answer to each of {len(sent)} commands",
        )
    except AssertionError:
        unanswered = sorted(set(sent) - set(answered(members)))
        found = pg_rows(
            cluster.database_url or "",
            "SELECT update_id, handled_at, claimed_by, claimed_until FROM inbox"
            " WHERE update_id = ANY(%s)", [sent[d] for d in unanswered],
        )
        raise AssertionError(f"unanswered days {unanswered}; their inbox rows {found}") from None
    await victim.start()
    assert acknowledged_before <= set(answered(members))
    allocations = Counter(
        str(key) for (key,) in pg_rows(
            cluster.database_url or "", "SELECT key FROM transfers WHERE kind = 'allocation'"
        )
    )
    twice = [key for key, n in allocations.items() if n > 1]
    assert not twice, twice
    assert set(allocations) == {f"tg:{uid}" for uid in sent.values()}
    gave = [GAVE.match(m.text) for u in members for m in u.replies]
    assert {int(g[1]) for g in gave if g} == set(sent)  # each answer names a command sent
    assert (await verify_ledger(cluster)).startswith("ledger ok")


async def test_one_stripe_event_at_two_instances_at_once_credits_once(cluster: Running) -> None:
    tg, stripe = cluster.tg, cluster.stripe
    support, members = people(tg)
    await set_up(tg, support, members)
    owner = members[0]
    quote = await say(tg, owner, "/topup 300", "300 days for ")
    [[(_, url)]] = quote.buttons()
    session = re.search(r"cs_test_[A-Za-z0-9]+", url or "")
    assert session, url
    event = stripe.complete_session(session.group(0))
    a, b = cluster.instances[0], cluster.instances[1]
    answers = await asyncio.gather(
        stripe.deliver_webhook(event, a.url + "/stripe/webhook", STRIPE_SECRET),
        stripe.deliver_webhook(event, b.url + "/stripe/webhook", STRIPE_SECRET),
    )
    assert [status for status, _ in answers] == [200, 200]
    await tg.wait_until(lambda: any("300 days credited" in m.text for m in owner.replies),
                        timeout=30, what="the payment announced")
    await asyncio.sleep(FAILOVER)  # room for a second credit, were there one
    assert sum("300 days credited" in m.text for m in owner.replies) == 1
    [(credited,)] = pg_rows(
        cluster.database_url or "",
        "SELECT count(*) FROM transfers WHERE kind = 'purchase'",
    )
    assert credited == 1
    metrics = await a.metrics() + await b.metrics()
    assert metrics.count('partnerbot_webhooks_total{result="credited"} 1.0') == 1
    assert metrics.count('partnerbot_webhooks_total{result="duplicate"} 1.0') == 1


async def test_a_wrong_or_missing_webhook_secret_is_refused_and_nothing_is_done(
    cluster: Running,
) -> None:
    update = {
        "update_id": 777_000_001,
        "message": {
            "message_id": 1, "date": int(time.time()), "text": "/newpartner Intruder",
            "chat": {"id": SUPPORT, "type": "private", "first_name": "Sam"},
            "from": {"id": SUPPORT, "is_bot": False, "first_name": "Sam"},
            "entities": [{"type": "bot_command", "offset": 0, "length": 11}],
        },
    }
    async with aiohttp.ClientSession() as http:
        for headers in ({"X-Telegram-Bot-Api-Secret-Token": "not-the-secret"}, {}):
            for _ in range(3):  # each instance in turn
                async with http.post(cluster.telegram_webhook, json=update,
                                     headers=headers) as r:
                    assert r.status in (401, 403), (headers, r.status, await r.text())
    assert pg_rows(cluster.database_url or "",
                   "SELECT count(*) FROM partners WHERE name = 'Intruder'") == [(0,)]
    assert pg_rows(cluster.database_url or "",
                   "SELECT count(*) FROM inbox WHERE update_id = 777000001") == [(0,)]
    assert set(cluster.balancer.served) == {0, 1, 2}
