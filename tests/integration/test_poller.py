"""bot/poller.py's DurablePoller: python-telegram-bot's network code against the loopback
Bot API server (which forgets updates below a confirmed offset, like Telegram), a real
SQLite file as the inbox.

- a batch is recorded before its offset is confirmed: a process that dies between the
  two leaves the updates both in the inbox and with Telegram; the next start handles
  them once, in each user's order, and ignores Telegram's redelivery;
- a batch is one transaction, its "handled" marks are batched too;
- network errors, RetryAfter and a failing store are retried (nothing confirmed
  meanwhile, nothing lost); a refused token and a lasting Conflict stop polling clearly;
- a graceful stop finishes the updates in hand and marks them handled.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from telegram import Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters

import bot.poller
from bot.app import ALLOWED_UPDATES
from bot.ordering import PerUserOrder
from bot.poller import WEBHOOK_SET, DurablePoller, WebhookIsSet
from core.errors import StorageError
from core.ports import Ledger, LedgerSnapshot, Store
from storage.sqlite import SqliteStore
from tests.fakes.telegram_api import FakeTelegram, FakeUser

T = TypeVar("T")
AnyApp = Application[Any, Any, Any, Any, Any, Any]
Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class Died(BaseException):
    """The process is gone: nothing after this point runs."""


class Wrapped:
    """A Store that delegates to a real one, so a test can count or break its writes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.writes = 0

    async def write(self, work: Callable[[Ledger], T]) -> T:
        self.writes += 1
        return await self.store.write(work)

    async def read(self, work: Callable[[Ledger], T]) -> T:
        return await self.store.read(work)

    async def lookup(self, work: Callable[[Ledger], T]) -> T:
        return await self.store.lookup(work)

    async def verify(self, work: Callable[[LedgerSnapshot], T]) -> T:
        return await self.store.verify(work)


class DiesAfterCommit(Wrapped):
    """The first write commits, then the process dies before anything else happens."""

    async def write(self, work: Callable[[Ledger], T]) -> T:
        await super().write(work)
        raise Died


class FailsFirst(Wrapped):
    """The first `times` writes fail as a full disk does."""

    def __init__(self, store: Store, times: int) -> None:
        super().__init__(store)
        self.left = times

    async def write(self, work: Callable[[Ledger], T]) -> T:
        if self.left:
            self.left -= 1
            self.writes += 1
            raise StorageError("database: disk full")
        return await super().write(work)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path / "inbox.db")
    yield opened
    await opened.close()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bot.poller, "FIRST_BACKOFF", 0.05)


def echo(seen: list[tuple[int, str]]) -> Handler:
    async def handle(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None and message.text is not None and update.effective_user
        seen.append((update.effective_user.id, message.text))
        await message.reply_text(f"done {message.text}")

    return handle


@asynccontextmanager
async def polling(
    tg: FakeTelegram, store: Store, handler: Handler, *, graceful: bool = True
) -> AsyncIterator[tuple[AnyApp, DurablePoller]]:
    """An application fed by a DurablePoller, as the runner starts and stops it."""
    app = tg.application_builder().concurrent_updates(PerUserOrder()).updater(None).build()
    app.add_handler(MessageHandler(filters.TEXT, handler))
    poller = DurablePoller(app, store, Clock(), allowed_updates=ALLOWED_UPDATES, timeout=1)
    await app.initialize()
    await app.start()
    try:
        await poller.start()
        yield app, poller
        if graceful:
            await poller.stop()
            await app.stop()
            await poller.close()
    finally:
        if app.running:
            await app.stop()
        await app.shutdown()


def texts(user: FakeUser) -> list[str]:
    return [m.text for m in user.replies]


async def pending_in_inbox(store: Store) -> list[int]:
    return [u.update_id for u in await store.read(lambda lg: lg.pending_updates())]


async def test_a_crash_between_recording_and_confirming_loses_nothing_and_repeats_nothing(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.poller")
    seen: list[tuple[int, str]] = []
    async with FakeTelegram() as tg:
        ann, bob = tg.user(1, "Ann"), tg.user(2, "Bob")
        sent = [await ann.send("a1"), await bob.send("b1"), await ann.send("a2"),
                await ann.send("a3"), await bob.send("b2")]
        ids = [int(u["update_id"]) for u in sent]
        dying = DiesAfterCommit(store)
        with pytest.raises(Died):
            async with polling(tg, dying, echo(seen), graceful=False) as (_, poller):
                await tg.wait_until(lambda: not poller.running, what="the crash")
                await poller.stop()  # raises what killed it: the process is gone

        # Recorded, never handled, and still unconfirmed with Telegram.
        assert seen == []
        assert await pending_in_inbox(store) == ids
        assert [u["update_id"] for u in tg.pending_updates] == ids

        async with polling(tg, store, echo(seen)):
            await tg.wait_until(lambda: len(seen) == 5 and not tg.pending_updates,
                                what="the replay, and Telegram's redelivery confirmed")
            await tg.wait_idle()

    # Each handled once (the redelivered batch was recognised), each user's in order.
    assert Counter(seen) == Counter({(1, "a1"): 1, (2, "b1"): 1, (1, "a2"): 1,
                                     (1, "a3"): 1, (2, "b2"): 1})
    assert [text for user, text in seen if user == 1] == ["a1", "a2", "a3"]
    assert [text for user, text in seen if user == 2] == ["b1", "b2"]
    assert texts(ann) == ["done a1", "done a2", "done a3"]
    assert texts(bob) == ["done b1", "done b2"]
    assert await pending_in_inbox(store) == []
    assert "replaying 5 updates" in caplog.text
    assert "ignored 5 updates Telegram delivered again" in caplog.text


async def test_a_batch_is_one_transaction_and_its_marks_are_batched(store: SqliteStore) -> None:
    seen: list[tuple[int, str]] = []
    counting = Wrapped(store)
    async with FakeTelegram() as tg:
        users = [tg.user(10 + i, f"U{i}") for i in range(20)]
        for user in users:
            await user.send("hello")
        async with polling(tg, counting, echo(seen)):
            await tg.wait_until(lambda: len(seen) == 20 and not tg.pending_updates,
                                what="every update handled and confirmed")
    # One write recorded the batch of 20; their marks took one or two more (the timer,
    # or the close), never one per update.
    assert 2 <= counting.writes <= 3
    assert await pending_in_inbox(store) == []


async def test_network_errors_are_retried_and_nothing_is_lost(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.poller")
    seen: list[tuple[int, str]] = []
    async with FakeTelegram() as tg:
        ann = tg.user(1, "Ann")
        tg.fail_server_error("getUpdates", status=502, times=2)
        tg.drop_connection("getUpdates", times=1)
        await ann.send("hi")
        async with polling(tg, store, echo(seen)) as (_, poller):
            await tg.wait_until(lambda: texts(ann) == ["done hi"], what="the answer")
            assert poller.running
    assert seen == [(1, "hi")]
    assert caplog.text.count("getUpdates failed") >= 2


async def test_retry_after_is_honoured(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.poller")
    seen: list[tuple[int, str]] = []
    async with FakeTelegram() as tg:
        ann = tg.user(1, "Ann")
        tg.fail_retry_after("getUpdates", 1)
        await ann.send("hi")
        async with polling(tg, store, echo(seen)):
            await tg.wait_until(lambda: texts(ann) == ["done hi"], timeout=10, what="the answer")
    assert "Telegram asks to wait; retrying in 1.5 s" in caplog.text
    assert seen == [(1, "hi")]


async def test_a_failing_store_leaves_the_updates_unconfirmed_until_it_recovers(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="bot.poller")
    seen: list[tuple[int, str]] = []
    async with FakeTelegram() as tg:
        ann = tg.user(1, "Ann")
        update = await ann.send("hi")
        failing = FailsFirst(store, times=3)
        async with polling(tg, failing, echo(seen)):
            await tg.wait_until(lambda: failing.left == 0, what="three failed writes")
            # Not recorded, so not confirmed: Telegram still holds it.
            assert [u["update_id"] for u in tg.pending_updates] == [update["update_id"]]
            await tg.wait_until(lambda: texts(ann) == ["done hi"], what="the answer")
    assert seen == [(1, "hi")]
    assert caplog.text.count("could not record incoming updates") == 3


async def test_a_refused_token_stops_polling_with_an_error(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="bot.poller")
    async with FakeTelegram() as tg, polling(tg, store, echo([])) as (_, poller):
        tg.fail("getUpdates", status=401, description="Unauthorized", times=None)
        await tg.wait_until(lambda: not poller.running, timeout=10, what="polling stops")
        assert poller.failure is not None and "telegram.token" in poller.failure
    assert "polling stopped: telegram.token: Telegram refused the bot token" in caplog.text


async def test_a_lasting_conflict_stops_polling_with_an_error(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.poller")
    async with FakeTelegram() as tg, polling(tg, store, echo([])) as (_, poller):
        tg.fail("getUpdates", status=409, times=None,
                description="Conflict: terminated by other getUpdates request")
        await tg.wait_until(lambda: not poller.running, timeout=10, what="polling stops")
        assert poller.failure is not None and "another process" in poller.failure
    # Two conflicts are retried (an old process may still be finishing its long poll).
    assert caplog.text.count("Conflict: terminated by other getUpdates request; retrying") == 2


async def test_a_graceful_stop_finishes_the_updates_in_hand_and_marks_them(
    store: SqliteStore,
) -> None:
    release = asyncio.Event()
    entered: list[str] = []

    async def slow(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        entered.append(update.effective_message.text or "")
        await release.wait()
        await update.effective_message.reply_text("finished")

    async with FakeTelegram() as tg:
        ann = tg.user(1, "Ann")
        await ann.send("slow one")
        async with polling(tg, store, slow, graceful=False) as (app, poller):
            await tg.wait_until(lambda: entered == ["slow one"], what="the handler")
            await poller.stop()
            stopping = asyncio.create_task(app.stop())
            await asyncio.sleep(0.05)
            assert not stopping.done()  # waits for the update in hand
            release.set()
            await stopping
            await poller.close()
        assert texts(ann) == ["finished"]
    assert await pending_in_inbox(store) == []


async def test_a_webhook_set_while_polling_stops_polling_at_once_and_says_so(
    store: SqliteStore,
) -> None:
    async with FakeTelegram() as tg, polling(tg, store, echo([])) as (_, poller):
        await tg.bot().set_webhook("https://bot.example.com/telegram/webhook")
        await tg.wait_until(lambda: not poller.running, timeout=10, what="polling stops")

        assert poller.failure == WEBHOOK_SET  # no retries: it stays until removed
        assert tg.webhook["url"]  # and the poller left it in place
        assert tg.calls_to("deleteWebhook") == []


async def test_polling_does_not_start_while_a_webhook_is_set(store: SqliteStore) -> None:
    async with FakeTelegram() as tg:
        await tg.bot().set_webhook("https://bot.example.com/telegram/webhook")
        with pytest.raises(WebhookIsSet, match="partnerbot webhook delete"):
            async with polling(tg, store, echo([])):
                pass

        assert tg.get_updates_calls == []
