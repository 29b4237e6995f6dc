"""Telegram's Bot API and Stripe's API failing for a while, end to end.

The real python-telegram-bot application (bot.app.build_application) polls FakeTelegram, the
real StripeGateway talks to FakeStripe, the real StripeWebhook is served over HTTP as
`partnerbot run` serves it, all over one SQLite file and one clock that moves only when told
(FakeStripe's clock moves with it). Faults are injected on the fakes: 5xx (JSON and nginx's
HTML page), dropped connections, answers that come too late, 429 with retry_after. For each:

- the bot stays up and says something clear: the answer itself once Telegram is back, or
  "Stripe is not answering right now ..." while Stripe is not;
- what a command, a button, a payment or a job did, it did once (balances, transfers and
  orders read from the store): a retried answer, a redelivered update, a retried payment link
  or a late webhook never does it again;
- when the fault clears the bot carries on by itself: pending updates are fetched and answered,
  queued notices delivered, payments taken and credited, reconciliation fulfils;
- the ledger invariants hold (`partnerbot ledger verify`; `verify()` after every test).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from telegram.error import NetworkError
from telegram.request import HTTPXRequest

from bot import request as bot_request
from bot.handlers.payments import STRIPE_DOWN
from bot.outbox import Dispatcher
from core import notices
from core.model import OrderStatus, TransferKind
from core.payments import PaymentService
from partnerbot.config import load_settings
from partnerbot.http import HttpServer, build_http_app
from partnerbot.jobs import JobFailed, run_job
from partnerbot.wiring import Services
from payments.stripe_gateway import StripeGateway
from payments.webhook import StripeWebhook
from storage.sqlite import SqliteStore
from tests.conftest import START, FakeClock
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.telegram_api import BotMessage, FakeUser
from tests.faults import ledger_verify
from tests.integration.bot_harness import (
    BOT_USERNAME,
    QUIET,
    SUPPORT_ID,
    Account,
    BotHarness,
    bot_harness,
)
from tests.integration.payments_harness import (
    CHECKOUT,
    HTTPX_DEPRECATION,
    SESSION_TTL,
    SyncedClock,
)

pytestmark = [
    pytest.mark.filterwarnings(HTTPX_DEPRECATION),
    # python-telegram-bot's rate limiter reads RetryAfter.retry_after, which warns in 22.x.
    pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning"),
]

SECRET = "whsec_degraded_apis_0123456789abcdef"
OWNER, MATE, GLOBEX_OWNER = 101, 102, 201
GATEWAY_TIMEOUT = 0.5  # seconds before a hung Stripe call gives up
RECONCILE_AFTER = 15  # minutes: jobs.reconcile_after_minutes
RETRIEVE = "/v1/checkout/sessions/*"
SESSION_ID = re.compile(r"cs_test_[A-Za-z0-9]+")


@dataclass
class World:
    h: BotHarness
    stripe: FakeStripe
    clock: SyncedClock
    payments: PaymentService
    services: Services  # what `partnerbot jobs run` and the scheduler run jobs with
    webhook_url: str
    db: Path
    acme: Account  # 100 days, channel "shop" (no days)
    globex: Account  # 40 days, channel "gchan" (no days)

    async def deliver(self, event: dict[str, Any]) -> dict[str, Any]:
        """A signed webhook delivery, as Stripe makes it; must be answered 200."""
        status, body = await FakeStripe.deliver_webhook(event, self.webhook_url, SECRET)
        assert status == 200, (status, body)
        answer: dict[str, Any] = json.loads(body)
        return answer

    def sends_to(self, chat_id: int) -> int:
        return sum(1 for c in self.h.tg.calls_to("sendMessage") if c.get("chat_id") == chat_id)

    async def balance(self, account: Account) -> int:
        return await self.h.balance(account.id)

    async def notices_of(self, kind: str) -> int:
        [(count,)] = await self.h.store.execute_raw(
            "SELECT count(*) FROM notices WHERE kind = ?", (kind,)
        )
        return int(count)

    async def deliveries(self) -> dict[str, int]:
        rows = await self.h.store.execute_raw(
            "SELECT status, count(*) FROM deliveries GROUP BY status"
        )
        return {str(status): int(n) for status, n in rows}


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with FakeStripe() as fake:
        clock = SyncedClock(START, fake)
        gateway = StripeGateway(
            fake.api_key, api_base=fake.base_url,
            success_url=lambda: f"https://t.me/{BOT_USERNAME}",
            timeout_seconds=GATEWAY_TIMEOUT, max_network_retries=0,
        )

        def payments_for(store: SqliteStore, clock: FakeClock) -> PaymentService:
            return PaymentService(store, clock, gateway, session_ttl=SESSION_TTL)

        async with bot_harness(tmp_path, clock=clock, payments=payments_for) as h:
            payments = h.payments
            assert payments is not None
            webhook = StripeWebhook(payments, SECRET)

            async def healthy() -> dict[str, bool]:
                return {"database": await h.store.ping()}

            server = HttpServer(build_http_app(webhook, healthy), "127.0.0.1", 0)
            await server.start()
            try:
                port = int(server.addresses[0][1])
                db = tmp_path / "partnerbot.db"  # bot_harness's database file
                config = tmp_path / "config.toml"
                config.write_text(
                    f'[database]\npath = "{db}"\n'
                    f"[jobs]\nreconcile_after_minutes = {RECONCILE_AFTER}\n",
                    encoding="utf-8",
                )
                services = Services(
                    load_settings(config, environ={}), h.store, clock, h.billing, payments,
                    gateway,
                )
                acme = await h.new_partner("Acme", owner_id=OWNER, days=100)
                await h.add_channel(acme.id, "shop")
                globex = await h.new_partner("Globex", owner_id=GLOBEX_OWNER, days=40)
                await h.add_channel(globex.id, "gchan")
                yield World(
                    h, fake, clock, payments, services,
                    f"http://127.0.0.1:{port}/stripe/webhook", db, acme, globex,
                )
                await h.verify()
                assert h.app.running and h.app.updater is not None and h.app.updater.running
                assert fake.internal_errors == []
            finally:
                await server.stop()
                await gateway.close()


def apologies(user: FakeUser) -> list[str]:
    return [m.text for m in user.replies if m.text.startswith("Sorry, something went wrong")]


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, within: float = 5.0
) -> None:
    """Wait until the async `check` holds (polled every 10 ms)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.01)


def session_of(quote: BotMessage) -> str:
    """The Checkout Session id behind the Pay button of a /topup quote."""
    [[(_, url)]] = quote.buttons()
    found = SESSION_ID.search(url or "")
    assert found, quote.buttons()
    return found.group(0)


# ----------------------------------------------------------------- Telegram: sendMessage 5xx


async def test_the_answer_to_allocate_waits_out_telegram_5xx_and_the_days_move_once(
    w: World,
) -> None:
    h, owner = w.h, w.acme.owner
    await h.drain(owner)
    sends, errors = w.sends_to(OWNER), len(h.tg.errors)
    h.tg.fail_server_error("sendMessage", status=502, chat_id=OWNER)  # nginx's HTML page
    h.tg.fail_server_error("sendMessage", status=503, chat_id=OWNER)

    reply = await h.ask(owner, "/allocate shop 30")  # exactly one answer

    assert reply.text.splitlines()[:2] == ["Gave 30 days to shop.", "Balance: 70 days"]
    assert w.sends_to(OWNER) - sends == 3  # two refused, the third got through
    assert [(e.method, e.status) for e in h.tg.errors[errors:]] == [
        ("sendMessage", 502), ("sendMessage", 503),
    ]
    assert await w.balance(w.acme) == 70
    assert await h.transfers_of(w.acme.id, TransferKind.ALLOCATION) == 1

    # Telegram is back: the next commands are answered at once, as usual.
    assert (await h.ask(owner, "/balance")).text.startswith("Balance: 70 days")
    again = await h.ask(owner, "/allocate shop 5")
    assert again.text.splitlines()[:2] == ["Gave 5 days to shop.", "Balance: 65 days"]
    assert await h.transfers_of(w.acme.id, TransferKind.ALLOCATION) == 2
    assert len(h.tg.errors) == errors + 2
    assert apologies(owner) == []
    await ledger_verify(w.db)  # the real `partnerbot ledger verify`, on the live file


async def test_an_outage_longer_than_the_answer_retries_keeps_the_work_and_the_bot(
    w: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Telegram refuses every message to one chat for longer than the answer is retried:
    the days moved once, nobody is asked to "try again" (that would move them twice),
    other chats are served meanwhile, and once Telegram is back the user sees the result."""
    monkeypatch.setattr(bot_request, "REPLY_RETRY_PAUSES", (0.02, 0.05, 0.1))  # same steps, faster
    caplog.set_level(logging.ERROR, logger="bot.errors")
    h, owner, other = w.h, w.acme.owner, w.globex.owner
    await h.drain(owner)
    sends = w.sends_to(OWNER)
    h.tg.fail_server_error("sendMessage", status=500, chat_id=OWNER, times=None)

    await owner.send("/allocate shop 30")
    served = await h.ask(other, "/balance")  # another chat, while this one fails
    await h.tg.wait_until(
        lambda: any(r.name == "bot.errors" for r in caplog.records),
        what="the error handler to see the undeliverable answer",
    )
    await h.tg.wait_idle(quiet=QUIET)

    assert served.text.startswith("Balance: 40 days")
    assert w.sends_to(OWNER) - sends == 1 + len(bot_request.REPLY_RETRY_PAUSES)  # no apology
    assert owner.pending_replies() == []
    [record] = [r for r in caplog.records if r.name == "bot.errors"]
    assert record.exc_info is not None and isinstance(record.exc_info[1], NetworkError)
    assert await w.balance(w.acme) == 70
    assert await h.transfers_of(w.acme.id, TransferKind.ALLOCATION) == 1

    h.tg.clear_faults()
    after = await h.ask(owner, "/balance")
    assert after.text.startswith("Balance: 70 days")  # done once, and now visible
    assert apologies(owner) == []


async def test_a_confirm_button_whose_edit_fails_deletes_once_and_a_second_press_says_so(
    w: World,
) -> None:
    """Telegram fails the edit that shows the outcome of a deletion: the deletion stands,
    the press goes unanswered (the error handler stays quiet on Telegram's own failures),
    and pressing again answers clearly without deleting or returning anything twice."""
    h, owner = w.h, w.acme.owner
    await h.add_channel(w.acme.id, "web", days=40)  # 100 + 40 granted, 40 into web
    ask = await h.ask(owner, "/delete web")
    errors_before = len(h.error_handler_runs)
    h.tg.fail_server_error("editMessageText", status=502, chat_id=OWNER)

    first = await owner.press(ask, "Delete it")
    await h.tg.wait_until(
        lambda: len(h.error_handler_runs) > errors_before,
        what="the failed edit to reach the error handler",
    )
    await h.tg.wait_idle(quiet=QUIET)
    assert first.answer is None  # the edit failed before the press was answered
    assert await w.balance(w.acme) == 140  # but the channel is deleted, its days back
    assert [v.channel.name for v in await h.billing.channel_views(w.acme.id)] == ["shop"]

    second = await owner.press(ask, "Delete it")  # the user tries again
    assert (await second.wait_answer()).text == "Already deleted; nothing more to do."
    await h.tg.wait_idle(quiet=QUIET)
    assert await w.balance(w.acme) == 140
    assert await h.transfers_of(w.acme.id, TransferKind.RETURN) == 1
    assert (await h.ask(owner, "/balance")).text.startswith("Balance: 140 days")
    assert apologies(owner) == [] and h.error_handler_runs[errors_before:] == ["error handler ran"]


# --------------------------------------------------------------------- Telegram: getUpdates


async def test_updates_sent_while_get_updates_fails_are_each_answered_once_afterwards(
    w: World,
) -> None:
    h, owner, other = w.h, w.acme.owner, w.globex.owner
    # The bot waits for a long poll 5 s beyond its own 1 s; here 0.3 s, so that the answer
    # to getUpdates that never comes times out quickly. Nothing else changes.
    poll_request = h.app.bot._request[0]
    assert isinstance(poll_request, HTTPXRequest)
    poll_request._client.timeout = httpx.Timeout(5.0, read=0.3)
    await h.drain(owner)
    await h.drain(other)

    polls = len(h.tg.get_updates_calls)
    h.tg.fail_server_error("getUpdates", status=502)
    h.tg.drop_connection("getUpdates")
    h.tg.delay("getUpdates", 3.0)  # handed out, but the answer is lost: the bot times out
    # A message first: it ends the long poll in hand, which began before the faults (or,
    # had the bot been between two polls, it meets them itself). Either way, what is sent
    # once getUpdates has failed waits out the faults that are left.
    wake = await owner.send("/balance")
    await h.tg.wait_until(
        lambda: any(e.method == "getUpdates" and e.status == 502 for e in h.tg.errors),
        what="getUpdates to fail",
    )

    # Meanwhile people write; Telegram keeps their messages until the bot confirms them.
    sent = [
        await owner.send("/allocate shop 10"),
        await other.send("/allocate gchan 5"),
        await owner.send("/newchannel web"),
        await owner.send("/balance"),
    ]
    woken, *mine = await owner.wait_replies(4, timeout=10)
    theirs = await other.wait_reply(timeout=10)
    await h.tg.wait_idle(quiet=QUIET)

    assert woken.text.startswith("Balance: 100 days")
    assert mine[0].text.splitlines()[:2] == ["Gave 10 days to shop.", "Balance: 90 days"]
    assert mine[1].text.startswith("Channel web created.")
    assert mine[2].text.startswith("Balance: 90 days\nChannels: 2 ")
    assert theirs.text.splitlines()[:2] == ["Gave 5 days to gchan.", "Balance: 35 days"]
    assert owner.pending_replies() == [] and other.pending_replies() == []  # none twice
    assert h.tg.pending_updates == []  # none left behind
    assert await h.transfers_of(w.acme.id, TransferKind.ALLOCATION) == 1
    assert await h.transfers_of(w.globex.id, TransferKind.ALLOCATION) == 1
    assert [v.channel.name for v in await h.billing.channel_views(w.acme.id)] == ["shop", "web"]
    # The faults were met: 502, dropped, lost answer, then the same offset again (the batch
    # handed out twice by Telegram, handled once), then past the batch.
    offsets = [c.get("offset") for c in h.tg.get_updates_calls[polls:]]
    assert offsets[0] in (wake["update_id"], wake["update_id"] + 1), offsets
    assert offsets[:4] == [offsets[0]] * 4, offsets
    assert offsets[4] == sent[-1]["update_id"] + 1, offsets
    # And the bot goes on as usual.
    assert (await h.ask(other, "/balance")).text.startswith("Balance: 35 days")


# ---------------------------------------------------------------------------- Telegram: 429


async def test_a_429_flood_holds_every_answer_until_retry_after_and_nothing_runs_twice(
    w: World,
) -> None:
    h, owner, other = w.h, w.acme.owner, w.globex.owner
    await h.drain(owner)
    await h.drain(other)
    sends = len(h.tg.calls_to("sendMessage"))
    h.tg.fail_retry_after("sendMessage", retry_after=1, chat_id=OWNER)
    h.tg.fail_retry_after("sendMessage", retry_after=1, chat_id=GLOBEX_OWNER)

    started = time.monotonic()
    await owner.send("/allocate shop 30")
    await other.send("/allocate gchan 10")
    mine = await owner.wait_reply()
    theirs = await other.wait_reply()
    waited = time.monotonic() - started
    await h.tg.wait_idle(quiet=QUIET)

    assert waited >= 1.0  # retry_after honoured
    assert mine.text.splitlines()[:2] == ["Gave 30 days to shop.", "Balance: 70 days"]
    assert theirs.text.splitlines()[:2] == ["Gave 10 days to gchan.", "Balance: 30 days"]
    assert owner.pending_replies() == [] and other.pending_replies() == []
    assert h.tg.status_counts[429] == 2
    assert len(h.tg.calls_to("sendMessage")) - sends == 4  # each refused once, sent once
    assert await h.transfers_of(w.acme.id, TransferKind.ALLOCATION) == 1
    assert await h.transfers_of(w.globex.id, TransferKind.ALLOCATION) == 1
    assert await w.balance(w.acme) == 70 and await w.balance(w.globex) == 30
    assert apologies(owner) == [] and apologies(other) == []


# ----------------------------------------------------------------- Telegram: outbox outage


async def test_notices_queued_during_a_telegram_outage_are_delivered_once_after_it(
    w: World,
) -> None:
    h, acme, globex = w.h, w.acme, w.globex
    mate = await h.link(MATE, acme.id)
    people = {OWNER: acme.owner, MATE: mate, GLOBEX_OWNER: globex.owner, SUPPORT_ID: h.support}
    # The set-up's support grants are announced to the members (Acme's two, Globex's
    # one): delivered before the outage, so that what follows counts the outage's own.
    before = Dispatcher(h.app.bot, h.store, h.clock, UTC, [SUPPORT_ID], per_chat_interval=0)
    while await before.run_once():
        pass
    for person in people.values():
        await h.drain(person)
    assert await w.deliveries() == {"sent": 3}
    # Every sendMessage fails: gateway pages, dropped connections, then 503s until cleared.
    h.tg.fail_server_error("sendMessage", status=502, times=2)
    h.tg.drop_connection("sendMessage", times=2)
    h.tg.fail_server_error("sendMessage", status=503, times=None)

    async def tried() -> tuple[int, int]:
        """(pending deliveries, attempts made at them so far)."""
        [(count, total)] = await h.store.execute_raw(
            "SELECT count(*), coalesce(sum(attempts), 0) FROM deliveries"
            " WHERE status = 'pending'"
        )
        return int(count), int(total)

    async def attempted(count: int, total: int) -> None:
        await eventually(
            lambda: _equal(tried(), (count, total)), f"{count} deliveries, {total} attempts"
        )

    async def topup_paid(days: int) -> None:
        order = await w.payments.start_topup(acme.id, days, f"user:{OWNER}")
        assert order.provider_ref is not None
        paid = await w.deliver(w.stripe.complete_session(order.provider_ref))
        assert paid["result"] == "credited"

    # What happens meanwhile queues notices: a paid top-up (both of Acme's members) and
    # Globex's balance falling below its alert (its owner).
    await topup_paid(30)
    await h.billing.allocate_days(globex.id, "gchan", 20, f"user:{GLOBEX_OWNER}", "outage:1")
    d = Dispatcher(
        h.app.bot, h.store, h.clock, UTC, [SUPPORT_ID], interval=0.02, per_chat_interval=0
    )
    d.start()
    try:
        await attempted(3, 3)  # each tried at once, and refused
        h.clock.advance(timedelta(minutes=10))  # past its backoff: each tried once more
        await attempted(3, 6)
        await topup_paid(45)  # another notice in the middle of it: tried at once
        await attempted(5, 8)
        for total in (13, 18):  # 30 minutes of outage in all: never given up
            h.clock.advance(timedelta(minutes=10))
            await attempted(5, total)
        during = {uid: len(p.pending_replies()) for uid, p in people.items()}
        statuses_during = await w.deliveries()

        h.tg.clear_faults()
        h.tg.delay("sendMessage", 0.05, times=None)  # back, and slow for a while
        h.clock.advance(timedelta(hours=1))  # past every backoff: nothing waits for a person
        await eventually(
            lambda: _equal(w.deliveries(), {"sent": 3 + 5}), "every notice delivered"
        )
        h.clock.advance(timedelta(days=1))
        await asyncio.sleep(0.1)  # a few more rounds: nothing is sent again
    finally:
        await d.stop()

    assert during == {OWNER: 0, MATE: 0, GLOBEX_OWNER: 0, SUPPORT_ID: 0}
    assert statuses_during == {"pending": 5, "sent": 3}  # never given up
    credited = ["30 days credited; balance 130 days.", "45 days credited; balance 175 days."]
    assert sorted(m.text for m in acme.owner.pending_replies()) == credited
    assert sorted(m.text for m in mate.pending_replies()) == credited
    [low] = globex.owner.pending_replies()
    assert low.text.startswith("Low balance: 20 days left, below your alert at 30 days.")
    assert h.support.pending_replies() == []
    assert await w.deliveries() == {"sent": 3 + 5}
    assert await w.notices_of(notices.DAYS_CREDITED) == 2
    assert await w.balance(acme) == 175


async def _equal(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


# ------------------------------------------------------------------------------- Stripe


async def test_stripe_failing_during_topup_gets_a_clear_answer_and_leaves_nothing_payable(
    w: World,
) -> None:
    h, owner, stripe = w.h, w.acme.owner, w.stripe
    faults: dict[str, Callable[[], None]] = {
        "500": lambda: stripe.fail_next(path=CHECKOUT, method="POST", status=500),
        "503": lambda: stripe.fail_next(path=CHECKOUT, method="POST", status=503),
        "rate limited": lambda: stripe.fail_next(path=CHECKOUT, method="POST", status=429),
        "dropped": lambda: stripe.drop_next(path=CHECKOUT, method="POST"),
        "timeout": lambda: stripe.hang_next(3.0, path=CHECKOUT, method="POST"),
        # Stripe made the session but its answer never came: nobody ever sees that link.
        "answer lost": lambda: stripe.hang_next(
            3.0, path=CHECKOUT, method="POST", process="before"
        ),
    }
    for fault, inject in faults.items():
        inject()
        reply = await h.ask(owner, "/topup 30")
        assert (fault, reply.text) == (fault, STRIPE_DOWN)
        assert reply.buttons() == []
    stripe.fail_next(path=CHECKOUT, method="POST", status=500)
    reply = await h.ask(owner, "/subscribe shop monthly")
    assert reply.text == STRIPE_DOWN and reply.buttons() == []
    assert "\n" not in STRIPE_DOWN and "try again" in STRIPE_DOWN  # one clear line

    made = await h.billing.orders(w.acme.id)
    assert len(made) == len(faults) + 1
    assert {o.status for o in made} == {OrderStatus.CANCELED}  # none open, none payable
    assert all(o.url is None for o in made)
    assert len(stripe.requests_to(CHECKOUT, "POST")) == len(faults) + 1  # asked once each
    assert await w.balance(w.acme) == 100
    assert await h.transfers_of(w.acme.id, TransferKind.PURCHASE) == 0
    assert apologies(owner) == []

    # Stripe is back: a top-up goes through, and its webhook credits once.
    quote = await h.ask(owner, "/topup 30")
    assert quote.text.startswith("30 days for ")
    paid = w.stripe.complete_session(session_of(quote))
    assert (await w.deliver(paid))["result"] == "credited"
    again = await w.deliver(paid)  # Stripe delivers again
    assert again["status"] == "duplicate"
    assert await w.balance(w.acme) == 130
    assert await h.transfers_of(w.acme.id, TransferKind.PURCHASE) == 1
    assert await w.notices_of(notices.DAYS_CREDITED) == 1
    assert (await h.ask(owner, "/balance")).text.startswith("Balance: 130 days")
    assert await h.billing.orders(w.acme.id, (OrderStatus.OPEN,)) == []


async def test_stripe_failing_during_reconcile_changes_nothing_and_a_later_run_fulfils(
    w: World,
) -> None:
    h, owner, stripe = w.h, w.acme.owner, w.stripe
    quote = await h.ask(owner, "/topup 30")
    paid = stripe.complete_session(session_of(quote))  # paid; the webhook does not arrive
    w.clock.advance(timedelta(minutes=RECONCILE_AFTER + 5))
    before = await h.snapshot()

    stripe.fail_next(path=RETRIEVE, method="GET", status=500)
    with pytest.raises(JobFailed, match=r"0 credited.*1 could not be checked"):
        await run_job("reconcile", w.services)
    stripe.hang_next(3.0, path=RETRIEVE, method="GET")
    with pytest.raises(JobFailed, match="1 could not be checked"):
        await run_job("reconcile", w.services)
    assert await h.snapshot() == before  # nothing changed
    [waiting] = await h.billing.orders(w.acme.id, (OrderStatus.OPEN,))
    assert await w.balance(w.acme) == 100

    done = await run_job("reconcile", w.services)  # Stripe answers again
    assert "1 open orders checked with Stripe, 1 credited" in done
    assert await w.balance(w.acme) == 130
    assert (await h.billing.orders(w.acme.id, (OrderStatus.PAID,)))[0].id == waiting.id
    late = await w.deliver(paid)  # the webhook turns up after all
    assert late["result"] == "already"
    assert "0 open orders checked" in await run_job("reconcile", w.services)
    assert await w.balance(w.acme) == 130
    assert await h.transfers_of(w.acme.id, TransferKind.PURCHASE) == 1
    assert await w.notices_of(notices.DAYS_CREDITED) == 1
    runs = await h.store.execute_raw("SELECT ok FROM job_runs WHERE job = 'reconcile' ORDER BY id")
    assert [ok for (ok,) in runs] == [0, 0, 1, 1]
    assert (await h.ask(owner, "/balance")).text.startswith("Balance: 130 days")
