"""The whole bot on loopback: FakeTelegram + a real SQLite file + BillingService + the Application.

The bot's real python-telegram-bot network code talks to :class:`FakeTelegram`, which answers
like Telegram (text over 4096 characters, callback_data over 64 bytes and HTML it cannot parse
are refused), over a real database file, with a clock that moves only when told::

    async with bot_harness(tmp_path) as h:
        acme = await h.new_partner("Acme", owner_id=101, days=12)
        reply = await h.ask(acme.owner, "/balance")
        assert reply.text.splitlines()[0] == "Balance: 12 days"
        before = await h.snapshot()
        ...
        assert await h.snapshot() == before
        await h.verify()

Setting up state goes through the service (fast) or through the bot itself (`via_bot=True`,
the real /newpartner and /start flow); what is under test always goes through the bot.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any

from bot.app import build_application, start_up
from bot.limits import FloodLimits
from core import channels
from core.model import Partner, TransferKind
from core.payments import PaymentService
from core.policy import BillingPolicy
from core.service import BillingService
from storage.sqlite import SqliteStore
from tests.conftest import FakeClock
from tests.fakes.telegram_api import (
    BotMessage,
    FakeChat,
    FakeTelegram,
    FakeUser,
    running_application,
)

AnyApp = Any  # telegram.ext.Application[...]: six type parameters nobody here needs

# Flood limits no test but tests/faults/test_flood.py reaches.
UNLIMITED = FloodLimits(
    member_per_minute=1_000_000, stranger_per_minute=1_000_000, group_per_minute=1_000_000
)
# How long the bot must stay quiet before "it answered nothing more" is believed.
QUIET = 0.02
SUPPORT_ID = 900
OTHER_SUPPORT_ID = 901  # configured as support, never writes unless a test makes them
BOT_USERNAME = "partner_test_bot"
INVITE_LINK = re.compile(rf"https://t\.me/{BOT_USERNAME}\?start=([A-Za-z0-9_-]{{1,64}})$")
APOLOGY = re.compile(
    r"^Sorry, something went wrong on my side \(ref ([0-9A-F]{8})\)\. Please try again; "
    r"if it keeps happening, tell support this reference\.$"
)


@dataclass(frozen=True)
class Account:
    """A partner set up for a test, and the Telegram user who owns it."""

    partner: Partner
    owner: FakeUser

    @property
    def id(self) -> int:
        return self.partner.id

    @property
    def name(self) -> str:
        return self.partner.name


@dataclass(frozen=True)
class Snapshot:
    """Everything a command could change, for "changes nothing" assertions (equality)."""

    partners: tuple[tuple[Any, ...], ...]
    channels: tuple[tuple[Any, ...], ...]
    members: tuple[tuple[Any, ...], ...]
    accounts: tuple[tuple[Any, ...], ...]
    invites: tuple[tuple[Any, ...], ...]
    orders: tuple[tuple[Any, ...], ...]
    transfers: int
    operations: int
    events: int


class BotHarness:
    def __init__(
        self,
        tg: FakeTelegram,
        store: SqliteStore,
        clock: FakeClock,
        billing: BillingService,
        app: AnyApp,
        tz: tzinfo,
        payments: PaymentService | None = None,
        error_handler_runs: list[str] | None = None,
    ) -> None:
        self.tg = tg
        self.store = store
        self.clock = clock
        self.billing = billing
        self.app = app
        self.tz = tz
        self.support = tg.user(SUPPORT_ID, "Sam", "sam_support")
        self.payments = payments  # what the bot reaches; None: payments are not set up
        # One entry each time the bot's error handler ran (its on_error hook).
        self.error_handler_runs = [] if error_handler_runs is None else error_handler_runs
        self._keys = 0

    # ---------------------------------------------------------------------- talking to the bot

    async def ask(
        self, user: FakeUser, text: str, *, chat: FakeChat | None = None, within: float = 5.0
    ) -> BotMessage:
        """Send `text` as `user` and return the one message the bot answers with.

        Replies not yet read are dropped first, so a case that failed half-way does not
        shift the answers of the next one. Fails if the bot answers with more than one message.
        """
        where = chat or user
        await self.drain(where)
        await user.send(text, chat=chat)
        reply = await where.wait_reply(timeout=within)
        await self.tg.wait_idle(quiet=QUIET)
        extra = where.pending_replies()
        assert not extra, f"more than one answer to {text[:60]!r}: {[m.text for m in extra]}"
        return reply

    async def drain(self, chat: FakeChat) -> None:
        pending = chat.pending_replies()
        if pending:
            await chat.wait_replies(len(pending))

    async def silent(self, user: FakeUser, text: str, *, chat: FakeChat | None = None) -> None:
        """Send `text` and check that the bot answers nothing at all."""
        where = chat or user
        await self.drain(where)
        await user.send(text, chat=chat)
        await self.tg.wait_idle(quiet=QUIET)
        await where.expect_no_reply(within=QUIET)

    # ----------------------------------------------------------------------------- set-up

    def key(self, prefix: str = "test") -> str:
        self._keys += 1
        return f"{prefix}:{self._keys}"

    async def new_partner(
        self, name: str, *, owner_id: int, days: int = 0, via_bot: bool = False
    ) -> Account:
        """A partner whose owner (Telegram user `owner_id`) is linked through /start.

        `via_bot`: support creates it with /newpartner (else through the service).
        """
        if via_bot:
            reply = await self.ask(self.support, f"/newpartner {name}")
            found = INVITE_LINK.search(reply.text)
            assert found, f"no invite link in {reply.text!r}"
            code = found.group(1)
            partner = await self.billing.resolve_partner(name)
        else:
            made = await self.billing.create_partner(name, f"support:{SUPPORT_ID}")
            partner, code = made.partner, made.invite_code
        owner = self.tg.user(owner_id, f"Owner{owner_id}")
        welcome = await self.ask(owner, f"/start {code}")
        assert welcome.text.startswith("Welcome! You are linked to"), welcome.text
        if days:
            await self.grant(partner.id, days)
        return Account(partner, owner)

    async def link(self, user_id: int, partner_id: int, first_name: str = "Mia") -> FakeUser:
        """Link another Telegram user to the partner: an invite, then /start CODE in the bot."""
        invite = await self.billing.create_invite(partner_id, f"support:{SUPPORT_ID}")
        user = self.tg.user(user_id, first_name)
        welcome = await self.ask(user, f"/start {invite.code}")
        assert welcome.text.startswith("Welcome! You are linked to"), welcome.text
        return user

    async def grant(self, partner_id: int, days: int, reason: str = "test set-up") -> None:
        await self.billing.grant_days(
            partner_id, days, reason, f"support:{SUPPORT_ID}", self.key("grant")
        )

    async def add_channel(self, partner_id: int, name: str, days: int = 0) -> int:
        """A channel through the service, with `days` from the balance (granted first)."""
        actor = f"support:{SUPPORT_ID}"
        made = await self.billing.create_channel(partner_id, name, actor, self.key("channel"))
        if days:
            await self.grant(partner_id, days)
            await self.billing.allocate_days(partner_id, name, days, actor, self.key("allocate"))
        return made.channel_id

    async def add_channels(self, partner_id: int, names: Iterable[str], days: int = 0) -> None:
        """Many channels in one transaction (500 one by one would cost seconds of fsync)."""
        now = self.clock.now()
        actor = f"support:{SUPPORT_ID}"
        wanted = list(names)
        if days:
            await self.grant(partner_id, days * len(wanted))

        def work(ledger: Any) -> None:
            for i, name in enumerate(wanted):
                channels.create_channel(ledger, now, partner_id, name, actor, f"bulk:{name}:{i}")
                if days:
                    channels.allocate_days(
                        ledger, now, partner_id, name, days, actor, f"bulk-allocate:{name}:{i}"
                    )

        await self.store.write(work)

    # ------------------------------------------------------------------------- observing

    async def snapshot(self) -> Snapshot:
        async def rows(sql: str) -> tuple[tuple[Any, ...], ...]:
            return tuple(await self.store.execute_raw(sql))

        async def count(table: str) -> int:
            (row,) = await self.store.execute_raw(f"SELECT COUNT(*) FROM {table}")
            return int(row[0])

        return Snapshot(
            partners=await rows("SELECT * FROM partners ORDER BY id"),
            channels=await rows("SELECT * FROM channels ORDER BY id"),
            members=await rows("SELECT * FROM members ORDER BY user_id"),
            accounts=await rows("SELECT code, balance FROM accounts ORDER BY code"),
            invites=await rows("SELECT * FROM invites ORDER BY id"),
            orders=await rows("SELECT * FROM orders ORDER BY id"),
            transfers=await count("transfers"),
            operations=await count("operations"),
            events=await count("events"),
        )

    async def balance(self, partner_id: int) -> int:
        return (await self.billing.summary(partner_id)).balance

    async def transfers_of(self, partner_id: int, kind: TransferKind) -> int:
        rows = await self.billing.history(partner_id, limit=10_000)
        return sum(1 for t in rows if t.kind is kind)

    async def verify(self) -> None:
        """The ledger invariants hold (what `partnerbot ledger verify` checks)."""
        report = await self.billing.verify()
        assert report.ok, "\n".join(str(v) for v in report.violations)

    def errors_except(self, *allowed: str) -> list[str]:
        """Bot API errors the server answered, minus those whose description has an allowed part."""
        return [
            f"{e.method}: {e.status} {e.description}"
            for e in self.tg.errors
            if not any(part in e.description for part in allowed)
        ]


@contextlib.asynccontextmanager
async def started_application(app: AnyApp) -> AsyncIterator[AnyApp]:
    """Started in `partnerbot run`'s order: initialize (getMe), the start-up step
    (bot.app.start_up), then start and poll (running_application, whose own initialize
    finds the work done); stopped and shut down on the way out."""
    await app.initialize()
    try:
        await start_up(app)
    except BaseException:
        await app.shutdown()
        raise
    async with running_application(app):
        yield app


@contextlib.asynccontextmanager
async def bot_harness(
    directory: Path,
    *,
    clock: FakeClock | None = None,
    support_ids: frozenset[int] = frozenset({SUPPORT_ID, OTHER_SUPPORT_ID}),
    tz: tzinfo = UTC,
    policy: BillingPolicy | None = None,
    payments: Callable[[SqliteStore, FakeClock], PaymentService] | None = None,
    on_update: Callable[[str], None] | None = None,
    limits: FloodLimits = UNLIMITED,
) -> AsyncIterator[BotHarness]:
    """Start everything; stop it all (and close the database) on the way out.

    `payments` makes the PaymentService the bot reaches (none: payments are not set up);
    `on_update` receives the label of each update as `partnerbot_updates_total` counts it;
    `limits`: the flood limits, by default out of reach (the clock stands still, so a test
    sending more than a minute's allowance as one user would otherwise meet them)."""
    async with FakeTelegram(bot_username=BOT_USERNAME) as tg:
        store = await SqliteStore.open(directory / "partnerbot.db", synchronous="NORMAL")
        try:
            clock = clock or FakeClock()
            billing = BillingService(store, clock, policy or BillingPolicy())
            error_handler_runs: list[str] = []
            payment_service = payments(store, clock) if payments is not None else None
            app = build_application(
                token=tg.token,
                api_base_url=tg.base_url,
                billing=billing,
                support_ids=support_ids,
                tz=tz,
                payments=payment_service,
                on_error=lambda: error_handler_runs.append("error handler ran"),
                limits=limits,
                **({} if on_update is None else {"on_update": on_update}),
            )
            async with started_application(app):
                yield BotHarness(
                    tg, store, clock, billing, app, tz, payment_service, error_handler_runs
                )
        finally:
            await store.close()
