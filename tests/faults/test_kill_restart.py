"""`partnerbot run` killed with SIGKILL under a stream of operations, and restarted.

A real process (the console script, configured by environment) runs against FakeTelegram
and FakeStripe on loopback with a database file. Four users (support, Acme's owner and a
teammate, Globex's owner) each drive a stream of operations through Telegram: new
channels, allocations, deletions confirmed with the button, top-ups paid through
FakeStripe and announced by signed webhooks (redelivered until answered 200, as Stripe
does), grants by support. Meanwhile the process is killed with SIGKILL at random moments
and started again, 4 times; Telegram redelivers what the dead process had not confirmed.

Afterwards (the seed is printed; PARTNERBOT_FAULTS_SEED replays a kill plan):

- `partnerbot ledger verify` exits 0;
- every reply the bot sent is reflected in the database: each "Gave N days to X" and
  "Channel X created" reply's update has its `tg:<update_id>` operation, each grant its
  transfer, each deletion its deleted channel, each quoted top-up its order;
- every notice queued (notices/deliveries) was delivered to every recipient after the
  last restart: none pending, none failed, and its text is in the recipient's chat; each
  "days credited" message belongs to a paid order and each paid order was announced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.notices import render
from core.model import Notice
from tests.e2e import clean_env, console_script
from tests.fakes.html_check import format_text
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.telegram_api import BotMessage, FakeTelegram, FakeUser
from tests.faults import free_port, ledger_verify

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

SECRET = "whsec_faults_kill_restart_0123456789abcdef"
SUPPORT, ACME_OWNER, ACME_MATE, GLOBEX_OWNER = 900_001, 910_001, 910_002, 920_001
KILLS = 4
AFTER_LAST_START = 3  # operations each user still makes once the last process is up
LOST_AFTER = 3.0  # s a new process has been healthy before an unanswered update is lost


def _microseconds(value: int | None) -> datetime:
    return datetime.fromtimestamp((value or 0) / 1e6, tz=UTC)


class Process:
    """The `partnerbot run` process of the moment, started again after each kill."""

    def __init__(self, tmp: Path, tg: FakeTelegram, stripe: FakeStripe) -> None:
        self.tmp, self.tg, self.stripe = tmp, tg, stripe
        self.db = tmp / "bot.db"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.generation = 0
        self.kills = 0
        self.healthy_since: float | None = None  # monotonic time; None while down
        self.starts: list[float] = []

    def env(self) -> dict[str, str]:
        return clean_env(
            PARTNERBOT_TELEGRAM__TOKEN=self.tg.token,
            PARTNERBOT_TELEGRAM__API_BASE_URL=self.tg.base_url,
            PARTNERBOT_ACCESS__SUPPORT_USER_IDS=f"[{SUPPORT}]",
            PARTNERBOT_DATABASE__PATH=str(self.db),
            PARTNERBOT_STRIPE__API_KEY=self.stripe.api_key,
            PARTNERBOT_STRIPE__API_BASE=self.stripe.base_url,
            PARTNERBOT_STRIPE__WEBHOOK_SECRET=SECRET,
            PARTNERBOT_SERVER__PORT=str(self.port),
            PARTNERBOT_LOGGING__FORMAT="json",
        )

    def log(self, generation: int | None = None) -> Path:
        return self.tmp / f"bot-{self.generation if generation is None else generation}.log"

    def tail(self) -> str:
        return self.log().read_text(errors="replace")[-3000:] if self.log().exists() else ""

    async def start(self) -> None:
        self.generation += 1
        begun = time.monotonic()
        with self.log().open("wb") as sink:
            self.proc = await asyncio.create_subprocess_exec(
                *console_script(), "run", cwd=self.tmp, env=self.env(), stdout=sink, stderr=sink
            )
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while time.monotonic() - begun < 40:  # a loaded 2-core machine starts slowly
                if self.proc.returncode is not None:
                    raise AssertionError(f"the bot exited on start:\n{self.tail()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(self.url + "/healthz") as resp:
                        if resp.status == 200:
                            self.healthy_since = time.monotonic()
                            self.starts.append(self.healthy_since - begun)
                            return
                await asyncio.sleep(0.05)
        raise AssertionError(f"the bot was not healthy within 40 s:\n{self.tail()}")

    async def kill(self) -> None:
        assert self.proc is not None and self.proc.returncode is None, self.tail()
        self.healthy_since = None
        self.kills += 1
        self.proc.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(self.proc.wait(), 20) == -signal.SIGKILL

    async def stop(self) -> None:
        """SIGTERM: a graceful stop, exit status 0."""
        assert self.proc is not None
        self.healthy_since = None
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), 30)
        assert code == 0, f"exit {code}:\n{self.tail()}"

    def healthy_for(self) -> float:
        return 0.0 if self.healthy_since is None else time.monotonic() - self.healthy_since

    async def deliver(self, event: dict[str, Any]) -> str:
        """Deliver a signed webhook like Stripe: again and again until it gets a 200."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                status, body = await FakeStripe.deliver_webhook(
                    event, self.url + "/stripe/webhook", SECRET, total_seconds=5
                )
                assert status != 400, body
                if status == 200:
                    return body
            await asyncio.sleep(0.1)
        raise AssertionError(f"webhook {event['id']} never answered 200:\n{self.tail()}")


@dataclass
class Driver:
    """One user's stream of operations; every text it sends is unique, so every answer
    can be traced to the update that asked for it."""

    name: str
    user: FakeUser
    bot: Process
    rng: random.Random
    partner: str = ""
    counter: int = 0
    done: int = 0
    after_last_start: int = 0
    lost: list[int] = field(default_factory=list)  # update ids a kill left unanswered
    ops: Counter[str] = field(default_factory=Counter)
    sent: list[tuple[int, str]] = field(default_factory=list)  # (update id, text)

    def unique(self) -> int:
        self.counter += 1
        return self.counter

    async def wait_for(
        self, found: Callable[[], Any], update_id: int | None, what: str
    ) -> Any:
        """`found()` once it is truthy; None if a kill lost the update (fetched and
        confirmed by a process that died before answering)."""
        kills = self.bot.kills
        begun = time.monotonic()
        assert update_id is not None
        while True:
            result = found()
            if result:
                return result
            pending = any(
                u["update_id"] == update_id for u in self.bot.tg.pending_updates
            )
            if self.bot.kills > kills and not pending and self.bot.healthy_for() > LOST_AFTER:
                self.lost.append(update_id)
                return None
            if time.monotonic() - begun > 45:
                raise AssertionError(f"{self.name}: no answer to {what}:\n{self.bot.tail()}")
            await asyncio.sleep(0.02)

    async def ask(self, text: str, answer_pattern: str) -> BotMessage | None:
        """Send `text`; the first message after it that matches `answer_pattern` (other
        messages arrive meanwhile: notices, answers repeated for a redelivered update)."""
        seen = len(self.user.replies)
        update = await self.user.send(text)
        update_id = int(update["update_id"])
        self.sent.append((update_id, text))
        pattern = re.compile(answer_pattern)

        def answer() -> BotMessage | None:
            return next((m for m in self.user.replies[seen:] if pattern.match(m.text)), None)

        return await self.wait_for(answer, update_id, text)  # type: ignore[no-any-return]

    async def press(self, message: BotMessage, label: str, token: str) -> bool:
        seen = len(self.user.replies)
        press = await self.user.press(message, label)
        update_id = int(press.update["update_id"])

        def answered() -> bool:
            edited = any(token in m.text for m in self.user.replies[seen:])
            return edited or press.answer is not None

        return bool(await self.wait_for(answered, update_id, f"press {label}"))


def live_channels(db: Path, partner: str) -> list[str]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as c:
        rows = c.execute(
            "SELECT c.name FROM channels c JOIN partners p ON p.id = c.partner_id"
            " WHERE p.name = ? AND c.deleted_at IS NULL ORDER BY c.id", (partner,),
        ).fetchall()
    return [str(r[0]) for r in rows]


async def partner_stream(d: Driver, stop: asyncio.Event, pay: bool) -> None:
    """Acme's and Globex's people: channels, days, deletions and top-ups."""
    tag = d.name
    while not stop.is_set() or d.after_last_start < AFTER_LAST_START:
        if stop.is_set():
            d.after_last_start += 1
        op = d.rng.choice(["newchannel", "allocate", "allocate", "delete", "topup"])
        channels = await asyncio.to_thread(live_channels, d.bot.db, d.partner)
        if op in ("allocate", "delete") and not channels:
            op = "newchannel"
        d.ops[op] += 1
        if op == "newchannel":
            name = f"{tag}-{d.unique():03d}"
            await d.ask(f"/newchannel {name}", f"Channel {name} created")
        elif op == "allocate":
            days = d.unique()  # unique per user: "this needs N" names the update too
            name = d.rng.choice(channels)
            await d.ask(
                f"/allocate {name} {days}",
                rf"Gave {days} days? to |You have .*, this needs {days}:|No channel named “{name}”",
            )
        elif op == "delete":
            name = d.rng.choice(channels)
            d.unique()
            prompt = await d.ask(
                f"/delete {name}", rf"Delete channel {name}\?|No channel named “{name}”"
            )
            if prompt is not None and prompt.text.startswith("Delete channel"):
                await d.press(prompt, "Delete it", f"Channel {name} deleted")
        elif pay:
            days = 30 + d.unique()
            quote = await d.ask(f"/topup {days}", f"{days} days for ")
            if quote is not None and quote.buttons():
                [[(_, url)]] = quote.buttons()
                session = re.search(r"cs_test_[A-Za-z0-9]+", url or "")
                assert session, url
                event = await asyncio.to_thread(d.bot.stripe.complete_session, session.group(0))
                await d.bot.deliver(event)
        d.done += 1


async def support_stream(d: Driver, stop: asyncio.Event) -> None:
    while not stop.is_set() or d.after_last_start < AFTER_LAST_START:
        if stop.is_set():
            d.after_last_start += 1
        n = d.unique()
        partner = d.rng.choice(["Acme", "Globex"])
        days = d.rng.choice([10, 20, 30])
        d.ops["credit"] += 1
        await d.ask(f"/credit {partner} {days} kill-test op{n:04d}", rf".*op{n:04d}\)")
        d.done += 1
        await asyncio.sleep(d.rng.uniform(0.0, 0.3))


async def set_up(bot: Process, support: FakeUser, people: dict[str, FakeUser]) -> None:
    """Partners, members and starting balances, through the bot itself."""
    async def say(user: FakeUser, text: str, token: str) -> BotMessage:
        seen = len(user.replies)
        await user.send(text)
        await bot.tg.wait_until(
            lambda: any(token in m.text for m in user.replies[seen:]), timeout=20, what=text
        )
        return next(m for m in user.replies[seen:] if token in m.text)

    codes = {}
    for partner in ("Acme", "Globex"):
        reply = await say(support, f"/newpartner {partner}", "?start=")
        found = re.search(r"\?start=([A-Za-z0-9_-]+)", reply.text)
        assert found, reply.text
        codes[partner] = found.group(1)
        await say(support, f"/credit {partner} 80 starting balance", "Granted")
    await say(people["acme-owner"], f"/start {codes['Acme']}", "linked to Acme")
    await say(people["globex"], f"/start {codes['Globex']}", "linked to Globex")
    invite = await say(people["acme-owner"], "/invite", "?start=")
    found = re.search(r"\?start=([A-Za-z0-9_-]+)", invite.text)
    assert found, invite.text
    await say(people["acme-mate"], f"/start {found.group(1)}", "linked to Acme")
    # High thresholds: balances cross them both ways, so low-balance alerts are queued too.
    await say(people["acme-owner"], "/alerts 150", "Done: I will warn")
    await say(people["globex"], "/alerts 100", "Done: I will warn")


async def killer(bot: Process, rng: random.Random, stop: asyncio.Event) -> None:
    for _ in range(KILLS):
        await asyncio.sleep(rng.uniform(0.8, 2.5))
        await bot.kill()
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        await bot.start()
    stop.set()


def rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as c:
        return [tuple(r) for r in c.execute(sql, args).fetchall()]


async def wait_outbox_empty(bot: Process) -> None:
    """Every notice expanded and every delivery sent (the dispatcher polls each second).

    Deliveries go out at most one a second per chat, and support's grants are announced
    to every member too: the wait lasts while the outbox makes progress, and fails once
    it has made none for 40 s."""
    deadline = time.monotonic() + 40
    before: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline:
        left = await asyncio.to_thread(
            rows, bot.db,
            "SELECT (SELECT count(*) FROM notices WHERE expanded = 0),"
            " (SELECT count(*) FROM deliveries WHERE status = 'pending')",
        )
        if left == [(0, 0)]:
            return
        if before and left[0][1] < before[0][1]:
            deadline = time.monotonic() + 40
        before = left
        await asyncio.sleep(0.1)
    raise AssertionError(f"the outbox did not drain: {left}\n{bot.tail()}")


def check_replies(db: Path, drivers: list[Driver], tg: FakeTelegram) -> Counter[str]:
    """Every reply the bot sent is reflected in the database."""
    operations = {r[0] for r in rows(db, "SELECT key FROM operations")}
    channels = {r[0]: r for r in rows(db, "SELECT name, deleted_at, id FROM channels")}
    grants = {r[0] for r in rows(db, "SELECT reason FROM transfers WHERE kind = 'grant'")}
    orders = {r[0]: r for r in rows(db, "SELECT provider_ref, status FROM orders")}
    checked: Counter[str] = Counter()
    for d in drivers:
        by_text: dict[str, list[int]] = {}
        for update_id, text in d.sent:
            by_text.setdefault(text, []).append(update_id)

        def update_of(text: str, reply: str, d: Driver = d, sent: Any = by_text) -> int:
            ids = sent.get(text, [])
            assert len(ids) == 1, f"{d.name}: {reply!r} answers {ids} ({text!r})"
            return int(ids[0])

        for m in d.user.replies:
            if found := re.match(r"Gave (\d+) days? to (.+)\.\n", m.text):
                uid = update_of(f"/allocate {found.group(2)} {found.group(1)}", m.text)
                assert f"tg:{uid}" in operations, (d.name, m.text, uid)
                checked["allocation replies"] += 1
            elif found := re.match(r"Channel (\S+) created\.", m.text):
                uid = update_of(f"/newchannel {found.group(1)}", m.text)
                assert f"tg:{uid}" in operations, (d.name, m.text, uid)
                assert found.group(1) in channels, m.text
                checked["creation replies"] += 1
            elif found := re.match(r"Granted \d+ days to \S+ \((kill-test op\d+)\)\.", m.text):
                uid = update_of(next(t for t in by_text if found.group(1) in t), m.text)
                assert f"tg:{uid}" in operations and found.group(1) in grants, m.text
                checked["grant replies"] += 1
            elif found := re.match(r"Channel (\S+) deleted\. ", m.text):
                assert channels[found.group(1)][1] is not None, m.text
                checked["deletion replies"] += 1
            elif re.match(r"\d+ days for ", m.text):
                [[(_, url)]] = m.buttons()
                session = re.search(r"cs_test_[A-Za-z0-9]+", url or "")
                assert session and session.group(0) in orders, m.text
                checked["top-up quotes"] += 1
    return checked


def check_notices(db: Path, tg: FakeTelegram, people: list[FakeUser]) -> Counter[str]:
    """Every notice was delivered to every recipient; "days credited" ones match orders."""
    checked: Counter[str] = Counter()
    statuses = Counter(r[0] for r in rows(db, "SELECT status FROM deliveries"))
    assert set(statuses) <= {"sent"}, statuses
    deliveries = rows(
        db,
        "SELECT d.user_id, n.id, n.key, n.partner_id, n.kind, n.payload, n.created_at"
        " FROM deliveries d JOIN notices n ON n.id = d.notice_id ORDER BY d.id",
    )
    chats = {u.user_id: [m.text for m in u.replies] for u in people}
    for user_id, *notice in deliveries:
        text = render(Notice(*notice[:5], created_at=_microseconds(notice[5])), UTC)
        shown = format_text(text, "HTML").text
        assert shown in chats[user_id], f"notice never reached {user_id}: {shown!r}"
        checked[f"{notice[3]} delivered"] += 1
        checked["sent twice (a kill between send and record)"] += chats[user_id].count(shown) > 1
    # Each paid top-up was announced once (one notice), to every member of its partner.
    paid = rows(
        db,
        "SELECT o.id, o.partner_id, o.days FROM orders o WHERE o.status = 'paid'"
        " AND o.kind = 'topup'",
    )
    credited = Counter(
        (r[0], r[1]) for r in rows(db, "SELECT partner_id, kind FROM notices")
        if r[1] == "days_credited"
    )
    per_partner = Counter(p for _, p, _ in paid)
    assert {p: credited[(p, "days_credited")] for p in per_partner} == dict(per_partner)
    members = rows(db, "SELECT user_id, partner_id FROM members")
    for user_id, partner_id in members:
        told = [t for t in chats[user_id] if re.fullmatch(r"\d+ days credited; .*", t)]
        mine = sorted(f"{d} days credited" for _, p, d in paid if p == partner_id)
        assert sorted({t.split(";")[0] for t in told}) == sorted(set(mine)), (user_id, told)
        checked["credited messages"] += len(told)
    return checked


async def test_sigkill_under_a_stream_of_operations_loses_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("PARTNERBOT_FAULTS_SEED", "0")) or random.randrange(1, 10**9)
    print(f"\nkill/restart seed: {seed} (PARTNERBOT_FAULTS_SEED={seed} replays the plan)")
    rng = random.Random(seed)
    begun = time.monotonic()
    async with FakeTelegram() as tg, FakeStripe() as stripe:
        bot = Process(tmp_path, tg, stripe)
        support = tg.user(SUPPORT, "Sam")
        people = {
            "acme-owner": tg.user(ACME_OWNER, "Olga"),
            "acme-mate": tg.user(ACME_MATE, "Mia"),
            "globex": tg.user(GLOBEX_OWNER, "Gus"),
        }
        try:
            await bot.start()
            await set_up(bot, support, people)
            drivers = [
                Driver("ao", people["acme-owner"], bot, random.Random(rng.random()), "Acme"),
                Driver("am", people["acme-mate"], bot, random.Random(rng.random()), "Acme"),
                Driver("go", people["globex"], bot, random.Random(rng.random()), "Globex"),
                Driver("su", support, bot, random.Random(rng.random())),
            ]
            stop = asyncio.Event()
            streams: list[Awaitable[None]] = [
                partner_stream(drivers[0], stop, pay=True),
                partner_stream(drivers[1], stop, pay=True),
                partner_stream(drivers[2], stop, pay=True),
                support_stream(drivers[3], stop),
                killer(bot, random.Random(rng.random()), stop),
            ]
            phases = {"set-up": time.monotonic() - begun}
            await asyncio.wait_for(asyncio.gather(*streams), 120)
            phases["streams"] = time.monotonic() - begun
            await wait_outbox_empty(bot)
            phases["outbox"] = time.monotonic() - begun
            await bot.stop()
            phases["stop"] = time.monotonic() - begun
        finally:
            if bot.proc is not None and bot.proc.returncode is None:
                bot.proc.kill()
                await bot.proc.wait()

        summary = await ledger_verify(bot.db)
        phases["verify"] = time.monotonic() - begun
        everyone = [support, *people.values()]
        replies = check_replies(bot.db, drivers, tg)
        notices = check_notices(bot.db, tg, everyone)
        log = "".join(bot.log(g).read_text(errors="replace") for g in range(1, bot.generation + 1))
        assert tg.token not in log and SECRET not in log and stripe.api_key not in log

    ops = sum((d.ops for d in drivers), Counter())
    lost = {f"tg:{u}" for d in drivers for u in d.lost}
    operations = {r[0] for r in rows(bot.db, "SELECT key FROM operations")}
    elapsed = time.monotonic() - begun
    print(
        f"{bot.kills} kills, {bot.generation} starts ({', '.join(f'{s:.1f}' for s in bot.starts)}"
        f" s to healthy); {sum(d.done for d in drivers)} operations {dict(ops)}; "
        f"{len(lost)} updates unanswered after a kill ({len(lost & operations)} of them done,"
        f" the rest fetched and confirmed but never handled); {summary}; "
        f"replies checked {dict(replies)}; notices {dict(notices)}; {elapsed:.1f} s "
        f"({', '.join(f'{k} at {v:.1f}' for k, v in phases.items())})"
    )
    assert bot.kills == KILLS
    assert replies["allocation replies"] > 5 and replies["creation replies"] > 3
    assert notices["credited messages"] > 0
    # Each kill was followed by exactly one start, and every start became healthy (the
    # wall time is printed above, not asserted: a loaded machine is no failure).
    assert bot.generation == bot.kills + 1 == len(bot.starts)
