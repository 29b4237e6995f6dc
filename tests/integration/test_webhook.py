"""Webhook mode in this process: the bot's real Application and HTTP server, a real SQLite
file, the fake Bot API posting updates as Telegram does (tests/integration/webhook_harness).

- the secret token is checked before anything is read: missing 401, wrong 403, counted,
  nothing stored, nothing handled;
- a body that is not an update gets 400 (413 when too large) and stores nothing;
- an update is recorded before its 2xx; a redelivery is answered 200 and handled once; a
  store that cannot record answers 503 and Telegram's redelivery is handled later;
- the flood limits drop a flood before any database work;
- two instances on one database receiving one user's updates interleaved handle them in
  update-id order, each once; an update claimed by an instance that died is handled by
  another once the claim's lease runs out.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.limits import FloodLimits
from core.inbox import InboxUpdate
from core.model import TransferKind
from partnerbot import logs
from tests.conftest import FakeClock
from tests.fakes.telegram_api import FakeTelegram, FakeUser
from tests.integration.bot_harness import SUPPORT_ID
from tests.integration.webhook_harness import SECRET, Instance, webhook_instance

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

STRANGER, OWNER = 700_001, 700_002
UNKNOWN = "I don't know that command. /help lists what you can do."


def message(update_id: int, user_id: int, text: str) -> dict[str, Any]:
    """An update as Telegram posts it: a private message with a command."""
    chat = {"id": user_id, "type": "private", "first_name": "Ann"}
    sender = {"id": user_id, "is_bot": False, "first_name": "Ann"}
    entities = [{"type": "bot_command", "offset": 0, "length": len(text.split(maxsplit=1)[0])}]
    return {
        "update_id": update_id,
        "message": {"message_id": update_id, "from": sender, "chat": chat, "date": 1,
                    "text": text, "entities": entities},
    }


async def test_an_update_posted_with_the_secret_is_recorded_handled_and_marked(
    tmp_path: Path,
) -> None:
    async with FakeTelegram() as tg, webhook_instance(tg, tmp_path / "bot.db", FakeClock()) as a:
        user = tg.user(STRANGER, "Ann")
        tg.start_delivery(a.url, secret=SECRET)
        update = await user.send("/nonsense")

        assert (await user.wait_reply()).text == UNKNOWN
        await tg.wait_until(lambda: a.claims.in_hand == 0, what="the update marked")
        assert tg.acknowledged == [update["update_id"]]
        assert await a.inbox_rows() == [(update["update_id"], STRANGER, 1, None)]
        assert a.results == {"recorded": 1}


async def test_an_update_from_nobody_is_recorded_without_a_sender_and_handled(
    tmp_path: Path,
) -> None:
    async with FakeTelegram() as tg, webhook_instance(tg, tmp_path / "bot.db", FakeClock()) as a:
        answer = await a.post({"update_id": 9, "something_new": {"id": 1}})
        await tg.wait_until(lambda: a.claims.in_hand == 0, what="handled")

        assert answer[0] == 200
        assert await a.inbox_rows() == [(9, None, 1, None)]


@pytest.mark.parametrize(
    ("secret", "status"), [(None, 401), ("wrong", 403), (SECRET + "x", 403), ("", 403)]
)
async def test_a_missing_or_wrong_secret_is_refused_counted_and_nothing_is_stored(
    tmp_path: Path, secret: str | None, status: int
) -> None:
    async with FakeTelegram() as tg, webhook_instance(tg, tmp_path / "bot.db", FakeClock()) as a:
        tg.user(STRANGER, "Ann", started=True)
        writes = a.inbox.writes

        answer = await a.post(message(1, STRANGER, "/help"), secret=secret)

        assert answer[0] == status
        assert a.results == {"refused": 1}
        assert await a.inbox_rows() == []
        assert a.inbox.writes == writes  # no database work at all
        assert tg.calls_to("sendMessage") == []


@pytest.mark.usefixtures("restore_logging")
async def test_refusals_are_logged_once_a_minute_not_once_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.setup("INFO", "text", [SECRET])
    async with FakeTelegram() as tg, webhook_instance(tg, tmp_path / "bot.db", FakeClock()) as a:
        for n in range(1, 21):
            assert (await a.post(message(n, STRANGER, "/help"), secret="guess"))[0] == 403

    assert a.results == {"refused": 20}  # every one counted
    assert capsys.readouterr().err.count("wrong secret token") == 1  # a stranger cannot
    # fill the disk with log lines


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"\xff\xfe", 400),
        ('{"update_id": 5}'.encode("utf-16"), 400),
        (b"[1, 2]", 400),
        (b'{"message": {"text": "/help"}}', 400),
        (b'{"update_id": "7"}', 400),
        (b'{"update_id": true}', 400),
        (b'{"update_id": 1.5}', 400),
        (b'{"update_id": -1}', 400),
        (b'{"update_id": 99999999999999999999999}', 400),
        (b'{"update_id": 1, "pad": "' + b"x" * 600_000 + b'"}', 413),
    ],
)
async def test_a_body_that_is_not_an_update_is_refused_and_nothing_is_stored(
    tmp_path: Path, body: bytes, status: int
) -> None:
    async with FakeTelegram() as tg, webhook_instance(tg, tmp_path / "bot.db", FakeClock()) as a:
        answer = await a.post(body)

        assert answer[0] == status
        assert a.results == {"bad": 1}
        assert await a.inbox_rows() == []


async def test_a_redelivered_update_is_answered_200_and_handled_once(tmp_path: Path) -> None:
    async with FakeTelegram() as tg, webhook_instance(tg, tmp_path / "bot.db", FakeClock()) as a:
        user = tg.user(STRANGER, "Ann", started=True)
        update = message(41, STRANGER, "/nonsense")

        first = await a.post(update)
        await user.wait_reply()
        again = await a.post(update)
        await tg.wait_until(lambda: a.claims.in_hand == 0, what="handled")

        assert (first[0], again[0]) == (200, 200)
        assert first[1] == again[1] == ""  # no JSON: Telegram would read it as a method call
        assert a.results == {"recorded": 1, "duplicate": 1}
        await user.expect_no_reply(within=0.05)
        assert len(tg.calls_to("sendMessage")) == 1


async def test_a_store_that_cannot_record_answers_503_and_the_redelivery_is_handled(
    tmp_path: Path,
) -> None:
    async with FakeTelegram() as tg, webhook_instance(tg, tmp_path / "bot.db", FakeClock()) as a:
        user = tg.user(STRANGER, "Ann")
        a.inbox.broken = True
        tg.start_delivery(a.url, secret=SECRET, retry_delay=0.05)
        update = await user.send("/nonsense")
        await tg.wait_until(lambda: len(tg.deliveries) >= 2, what="refused deliveries")

        assert {d.status for d in tg.deliveries} == {503}
        assert tg.pending_updates == [update]  # Telegram keeps it
        assert await a.inbox_rows() == []
        a.inbox.broken = False

        assert (await user.wait_reply()).text == UNKNOWN
        assert tg.acknowledged == [update["update_id"]]
        assert a.results["failed"] >= 2 and a.results["recorded"] == 1
        info = await tg.bot().get_webhook_info()
        assert info.last_error_message == "Wrong response from the webhook: 503"


async def test_a_flood_is_dropped_before_any_database_work(tmp_path: Path) -> None:
    limits = FloodLimits(stranger_per_minute=2)
    async with FakeTelegram() as tg, webhook_instance(
        tg, tmp_path / "bot.db", FakeClock(), limits=limits
    ) as a:
        user = tg.user(STRANGER, "Ann", started=True)
        writes = a.inbox.writes

        statuses = [(await a.post(message(n, STRANGER, "/nonsense")))[0] for n in range(1, 6)]

        replies = await user.wait_replies(3)  # two answers, and "too many" once
        await tg.wait_until(lambda: a.claims.in_hand == 0, what="marked")
        assert statuses == [200] * 5  # Telegram must not redeliver a flood
        assert a.results == {"recorded": 2, "limited": 3}
        assert [row[0] for row in await a.inbox_rows()] == [1, 2]
        # Recorded, then marked handled: two writes per admitted update, none for the flood.
        assert a.inbox.writes - writes == 4
        assert sum(r.text == UNKNOWN for r in replies) == 2


async def link_owner(tg: FakeTelegram, a: Instance) -> FakeUser:
    made = await a.billing.create_partner("Acme", f"support:{SUPPORT_ID}")
    await a.billing.grant_days(made.partner.id, 1000, "test", "support:1", "grant:1")
    await a.billing.create_channel(made.partner.id, "shop", "support:1", "channel:1")
    owner = tg.user(OWNER, "Olga")
    await owner.send(f"/start {made.invite_code}")
    assert "linked to Acme" in (await owner.wait_reply(10)).text
    return owner


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_two_instances_handle_one_users_interleaved_updates_in_order_once(
    tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    clock = FakeClock()
    db: Path | str = tmp_path / "bot.db"
    if engine == "postgres":
        db = request.getfixturevalue("pg_url")
    async with FakeTelegram() as tg, webhook_instance(tg, db, clock, name="a") as a, \
            webhook_instance(tg, db, clock, name="b") as b:
        # Four connections alternating between the instances: one user's updates reach
        # both at once, as behind a load balancer.
        tg.start_delivery(a.url, b.url, secret=SECRET, connections=4)
        owner = await link_owner(tg, a)
        # The first answer is slow: the next updates arrive while it is in hand.
        tg.delay("sendMessage", 0.5, chat_id=OWNER)
        sent = [await owner.send(f"/allocate shop {days}") for days in range(1, 13)]

        replies = await owner.wait_replies(12, timeout=30)
        await tg.wait_until(lambda: a.claims.in_hand == b.claims.in_hand == 0, what="idle")
        history = await a.billing.history(1, limit=100)

    gave = [re.match(r"Gave (\d+) days? to shop", r.text) for r in replies]
    assert [int(m.group(1)) for m in gave if m] == list(range(1, 13))  # update-id order
    assert a.results["recorded"] > 0 and b.results["recorded"] > 0  # both received some
    assert sorted(tg.acknowledged) == sorted({*tg.acknowledged})  # each acknowledged once
    allocations = [t for t in history if t.kind is TransferKind.ALLOCATION]
    assert sorted(t.days for t in allocations) == list(range(1, 13))  # each done once
    assert {u["update_id"] for u in sent} <= set(tg.acknowledged)


async def test_an_update_held_by_a_dead_instance_is_handled_once_its_lease_runs_out(
    tmp_path: Path,
) -> None:
    db, clock = tmp_path / "bot.db", FakeClock()
    async with FakeTelegram() as tg, webhook_instance(tg, db, clock, lease=10) as b:
        user = tg.user(STRANGER, "Ann", started=True)
        update = message(77, STRANGER, "/nonsense")
        # An instance recorded and claimed it, answered 200, and died before handling it.
        now = clock.now()
        held = await b.store.write(lambda lg: (
            lg.add_updates([_recorded(update, now)]),
            lg.claim_next_update(STRANGER, "dead", now, now + timedelta(seconds=10)),
        ))
        assert held[1] is not None
        b.claims.wake()
        await user.expect_no_reply(within=0.1)  # still held: nobody else touches it

        clock.advance(timedelta(seconds=10))
        b.claims.wake()

        assert (await user.wait_reply()).text == UNKNOWN
        await tg.wait_until(lambda: b.claims.in_hand == 0, what="marked")
        assert await b.inbox_rows() == [(77, STRANGER, 1, None)]


def _recorded(update: dict[str, Any], now: datetime) -> InboxUpdate:
    return InboxUpdate(update["update_id"], json.dumps(update), now, STRANGER)


async def test_a_graceful_stop_releases_what_the_instance_held_for_the_others_at_once(
    tmp_path: Path,
) -> None:
    db, clock = tmp_path / "bot.db", FakeClock()
    async with FakeTelegram() as tg, webhook_instance(tg, db, clock, name="b") as b:
        user = tg.user(STRANGER, "Ann", started=True)
        async with webhook_instance(tg, db, clock, name="a") as a:
            # Held by "a" (as when its mark failed), which then stops with SIGTERM.
            now = clock.now()
            await a.store.write(lambda lg: (
                lg.add_updates([_recorded(message(80, STRANGER, "/nonsense"), now)]),
                lg.claim_next_update(STRANGER, "a", now, now + timedelta(seconds=10)),
            ))
            b.claims.wake()
            await user.expect_no_reply(within=0.1)

        b.claims.wake()  # no lease had to run out: the clock has not moved

        assert (await user.wait_reply()).text == UNKNOWN
        await tg.wait_until(lambda: b.claims.in_hand == 0, what="marked")
        assert await b.inbox_rows() == [(80, STRANGER, 1, None)]


async def test_a_member_new_to_this_instance_gets_a_members_allowance(tmp_path: Path) -> None:
    """Behind a balancer the instance that records a member's update has often never
    handled one of theirs: it reads who they are, and does not hold them to a stranger's
    allowance (h-ops saw members' bursts dropped with three instances)."""
    db, clock = tmp_path / "bot.db", FakeClock()
    strict = FloodLimits(member_per_minute=30, stranger_per_minute=2)
    async with FakeTelegram() as tg, webhook_instance(tg, db, clock, name="a") as a:
        tg.start_delivery(a.url, secret=SECRET)
        await link_owner(tg, a)
        async with webhook_instance(tg, db, clock, limits=strict, name="b") as b:
            # At once, as Telegram's connections bring them: none is handled (where b
            # would learn who the sender is) before the others meet the limit.
            answers = await asyncio.gather(
                *(b.post(message(900 + n, OWNER, "/balance")) for n in range(6))
            )
            statuses = [status for status, *_ in answers]
            stranger = [
                (await b.post(message(950 + n, STRANGER, "/nonsense")))[0] for n in range(4)
            ]
            await tg.wait_until(lambda: b.claims.in_hand == 0, what="handled")

    assert statuses == [200] * 6 and stranger == [200] * 4
    # All six of the member's recorded; the stranger still held to two.
    assert b.results == {"recorded": 8, "limited": 2}
