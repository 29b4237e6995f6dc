"""Hypothesis-generated chat input to every command, from every kind of user.

Every command of `bot.commands.COMMANDS` gets random argument shapes: nothing, white
space, huge, negative and fractional numbers, unicode (right-to-left, emoji, zero-width
and control characters), HTML fragments, blobs over Telegram's 4096 characters, and names
of existing and foreign channels and partners. They come from a linked owner, a linked
member of another partner, an unlinked user and support staff, in private chats and (less
often) in a group. For every message:

- the bot answers exactly once in a private chat; in a group it answers a command meant
  for it at most once and stays silent otherwise (privacy mode, unknown commands),
- the error handler never runs (no "Sorry, something went wrong"), and the Bot API fake
  refuses nothing the bot sent (HTML it cannot parse, text over 4096 characters...),
- a message that did not succeed changes nothing (a snapshot of every table), a linked
  user never changes another partner's rows, an unlinked user never changes anything,
- what a successful /newchannel or /allocate did is what the message said.

One bot, one database and one FakeStripe serve the whole module; `verify()` runs at the
end. Each update's end is observed through a handler in a late group (it runs after the
command's handler and the error handler), so no test relies on quiet periods.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from telegram import Update
from telegram.ext import TypeHandler

from bot import callbacks
from bot.callbacks import CancelDelete, ConfirmDelete, ListKind, Noop, Page
from bot.commands import COMMANDS
from core.names import name_key
from core.payments import PaymentService
from payments.stripe_gateway import StripeGateway
from tests.conftest import START
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.telegram_api import FakeChat, FakeGroup, FakeUser
from tests.integration.bot_harness import (
    BOT_USERNAME,
    Account,
    BotHarness,
    Snapshot,
    bot_harness,
)
from tests.integration.payments_harness import HTTPX_DEPRECATION, SyncedClock

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.filterwarnings(HTTPX_DEPRECATION),
]

EXAMPLES = 150
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the working tree
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,
    ],
)
APOLOGY = "Sorry, something went wrong"
# The one Bot API refusal the bot provokes on purpose: a press that would show what the
# message already shows ("page 2" on page 2) is answered "not modified", which it ignores.
NOT_MODIFIED = "message is not modified"
OWNER_ID, TEAMMATE_ID, FOREIGN_ID, UNLINKED_ID = 101, 102, 201, 301
GROUP_ID = -4_000_001


# ------------------------------------------------------------------------------ the world


@dataclass
class World:
    h: BotHarness
    acme: Account
    globex: Account
    teammate: FakeUser
    unlinked: FakeUser
    groups: list[FakeGroup]
    done: set[int] = field(default_factory=set)  # update ids fully handled
    errors: list[str] = field(default_factory=list)  # error handler runs
    stats: Counter[str] = field(default_factory=Counter)

    def user(self, who: str) -> FakeUser:
        return {
            "owner": self.acme.owner,
            "teammate": self.teammate,
            "foreign": self.globex.owner,
            "unlinked": self.unlinked,
            "support": self.h.support,
        }[who]

    def next_group(self) -> FakeGroup:
        """Groups in turn: python-telegram-bot's rate limiter allows a group 20 messages
        a minute (Telegram's limit), which one group would reach within the test."""
        self.stats["group messages"] += 1
        return self.groups[self.stats["group messages"] % len(self.groups)]

    def own_partner(self, who: str) -> int | None:
        return {"owner": self.acme.id, "teammate": self.acme.id, "foreign": self.globex.id}.get(
            who
        )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with FakeStripe() as fake:
        clock = SyncedClock(START, fake)
        gateway = StripeGateway(
            fake.api_key, api_base=fake.base_url,
            success_url=lambda: f"https://t.me/{BOT_USERNAME}", timeout_seconds=5,
            max_network_retries=0,
        )
        async with bot_harness(
            tmp_path_factory.mktemp("chat-fuzz"), clock=clock,
            payments=lambda store, clock: PaymentService(store, clock, gateway),
        ) as h:
            acme = await h.new_partner("Acme", owner_id=OWNER_ID, days=500)
            await h.add_channel(acme.id, "shop")  # never active
            await h.add_channel(acme.id, "live", days=40)
            await h.add_channel(acme.id, "Ünï 🚀 shop")
            globex = await h.new_partner("Globex", owner_id=FOREIGN_ID, days=70)
            await h.add_channel(globex.id, "gchan", days=20)
            await h.add_channel(globex.id, "secret-of-globex")
            teammate = await h.link(TEAMMATE_ID, acme.id)
            groups = [h.tg.group(GROUP_ID - i, f"Resellers {i}") for i in range(8)]
            w = World(
                h, acme, globex, teammate, h.tg.user(UNLINKED_ID, "Una"), groups,
                errors=h.error_handler_runs,
            )

            async def handled(update: object, context: Any) -> None:
                if isinstance(update, Update):
                    w.done.add(update.update_id)

            h.app.add_handler(TypeHandler(Update, handled), group=99)
            try:
                yield w
                await h.verify()
                assert h.errors_except(NOT_MODIFIED) == []
                assert fake.internal_errors == []
            finally:
                await gateway.close()
        print(f"\nchat fuzz: {sum(w.stats.values())} messages: {dict(sorted(w.stats.items()))}")


# ------------------------------------------------------------------------- strategies

NAMES = [
    "shop", "SHOP", "live", " live ", "Ünï 🚀 shop", "ünï 🚀 SHOP",  # Acme's channels
    "gchan", "secret-of-globex",  # Globex's channels
    "Acme", "acme", "Globex", "1", "2", "3", "999", "#1", "Acme Globex",  # partners
    "nosuch", "shop-berlin",
]
FRAGMENTS = [
    "<b>", "</b>", "</a>", "<a href=\"http://x\">", "<script>alert(1)</script>", "&", "&amp;",
    "&lt;", "&#0;", "<", ">", "<<", "<tg-spoiler>", "<pre>", "\"", "'", "`", "*", "_", "[x](y)",
    "\u202e", "\u200b", "\u200f", "\u200d", "\u2066", "\ufeff", "\x00", "\x07", "\r", "\t",
    "🙂", "👨‍👩‍👧", "🇩🇪", "שלום", "مرحبا", "中文", "é", "ﬁ", "１２", "٣", "\U0001d7d9",
    "on", "off", "ON", "monthly", "annual", "yearly", "12.50", "0.01", "12,50", "1e3",
    "NaN", "inf", "-0", "+5", "0x1F", "1_000", "1,000", "00030",
]
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
NUMBER = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.integers(-5, 400).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
)
BLOB = st.builds(
    lambda unit, n: (unit * n)[: n + 10],
    st.sampled_from(["x", "9", "😀", "<b>", "&", " a", "שׁ", "\u200b"]),
    st.integers(4090, 4400),
)
ATOM = st.one_of(
    st.sampled_from(NAMES), st.sampled_from(FRAGMENTS), NUMBER, TEXT,
    st.lists(st.sampled_from(FRAGMENTS), min_size=2, max_size=6).map("".join),
)
SEPARATOR = st.sampled_from([" ", " ", " ", "  ", "\t", "\n", " \u200b"])


SMALL = st.one_of(st.integers(0, 60).map(str), st.sampled_from(["1", "5", "30", "007"]))


@st.composite
def plausible(draw: st.DrawFn) -> str:
    """Arguments shaped like the usage line (NAME DAYS, PARTNER DAYS REASON...), so that
    some messages succeed and what they did can be compared with what they said."""
    name = draw(st.one_of(st.sampled_from(NAMES), TEXT.filter(str.strip)))
    shape = draw(st.sampled_from(["name", "name days", "partner days reason", "name switch"]))
    if shape == "name":
        return name
    if shape == "name days":
        return f"{name}{draw(SEPARATOR)}{draw(SMALL)}"
    if shape == "partner days reason":
        sign = draw(st.sampled_from(["", "", "-"]))
        return f"{name} {sign}{draw(SMALL)} {draw(st.one_of(TEXT, st.sampled_from(FRAGMENTS)))}"
    switch = draw(st.sampled_from(["on", "off", "monthly", "annual", "yearly", "ON", "maybe"]))
    return f"{name}{draw(SEPARATOR)}{switch}"


@st.composite
def arguments(draw: st.DrawFn) -> str:
    shape = draw(st.sampled_from(
        ["empty", "blank", "atoms", "atoms", "plausible", "plausible", "plausible", "blob"]
    ))
    if shape == "plausible":
        return draw(plausible())
    if shape == "empty":
        return ""
    if shape == "blank":
        return draw(st.text(" \t\n\u00a0\u2003", min_size=1, max_size=5))
    if shape == "blob":
        return draw(st.sampled_from(["", "shop ", "Acme 5 "])) + draw(BLOB)
    parts = draw(st.lists(ATOM, min_size=1, max_size=4))
    text = parts[0]
    for part in parts[1:]:
        text += draw(SEPARATOR) + part
    return text


COMMAND_NAMES = [c.name for c in COMMANDS]


@st.composite
def command_text(draw: st.DrawFn) -> str:
    """A command message: any command of the table (or a stranger one) with arguments."""
    name = draw(st.one_of(
        st.sampled_from(COMMAND_NAMES),
        st.sampled_from(COMMAND_NAMES).map(str.upper),
        st.sampled_from(["frobnicate", "balances", "start_", "x" * 64, "admin", "_"]),
    ))
    mention = draw(st.sampled_from(["", "", "", "", f"@{BOT_USERNAME}", "@other_bot"]))
    args = draw(arguments())
    glue = draw(st.sampled_from([" ", " ", " ", "\n", "\t", ""]))
    return f"/{name}{mention}{glue if args else ''}{args}"


MESSAGE = st.one_of(
    command_text(), command_text(), command_text(), command_text(),
    arguments().filter(lambda t: bool(t.strip())),  # not a command at all
)


# --------------------------------------------------------------------------- checking

_COMMAND = re.compile(r"^/([A-Za-z0-9_]{1,64})(@[A-Za-z0-9_]{3,32})?(?![\w/])")

# What a command answers when it changed something; every other answer must leave the
# database exactly as it was.
SUCCESS: dict[str, re.Pattern[str]] = {
    "start": re.compile(r"^Welcome! You are linked to "),
    "newchannel": re.compile(r"^Channel (.+) created\. Give it days: /allocate ", re.S),
    "allocate": re.compile(r"^Gave ([\d,]+) days? to (.+)\.\nBalance: [\d,]+ days\n", re.S),
    "topup": re.compile(r"^[\d,]+ days? for [\d,.]+ [A-Z]{3}\.\nPay with the button"),
    "subscribe": re.compile(r"^Subscription for .+: [\d,.]+ [A-Z]{3} a (month|year); ", re.S),
    "alerts": re.compile(r"^Done: I will warn every member when the balance of "),
    "autorenew": re.compile(r"^Auto-renew is (on|off) for "),
    "invite": re.compile(r"^Send this link to your teammate\. It works once, until "),
    "newpartner": re.compile(r"^Partner .+ \(#\d+\) created at ", re.S),
    "credit": re.compile(r"^(Granted|Removed) [\d,]+ days? (to|from) .+\nBalance: ", re.S),
    "setprice": re.compile(r"^.+ now pays [\d,.]+ [A-Z]{3} per channel-month \(was ", re.S),
    "invoice": re.compile(r"^Invoice (#\d+ for .+: \d+ channels × 30 = |recorded, but Stripe)",
                          re.S),
}


def command_of(text: str) -> str | None:
    """The command the bot is asked for (None: not a command, or one for another bot)."""
    found = _COMMAND.match(text)
    if found is None or found.group(2) not in (None, f"@{BOT_USERNAME}"):
        return None
    return found.group(1).lower()


def arguments_of(text: str) -> str:
    """What the user typed after the command word, as Telegram's entity delimits it."""
    found = _COMMAND.match(text)
    assert found is not None
    return text[found.end():]


def folded(text: str) -> str:
    return " ".join(text.split())


def foreign_rows(snap: Snapshot, own: int) -> tuple[Any, ...]:
    """Everything in the snapshot that belongs to partners other than `own`."""
    theirs = {row[0]: row[1] for row in snap.channels}  # channel id -> partner id
    accounts = tuple(
        row for row in snap.accounts
        if (row[0].startswith("partner:") and int(row[0].split(":")[1]) != own)
        or (row[0].startswith("channel:") and theirs.get(int(row[0].split(":")[1])) != own)
    )
    return (
        tuple(r for r in snap.partners if r[0] != own),
        tuple(r for r in snap.channels if r[1] != own),
        tuple(r for r in snap.invites if r[1] != own),
        tuple(r for r in snap.orders if r[1] != own),
        tuple(r for r in snap.members if r[1] != own),
        accounts,
    )


async def exchange(w: World, who: str, text: str, chat: FakeChat | None = None) -> None:
    """Send `text` as `who`; check the answer and what changed."""
    h = w.h
    user = w.user(who)
    where: FakeChat = chat or user
    await h.drain(where)
    errors_before = len(h.tg.errors)
    before = await h.snapshot()
    update = h.tg.user_message(user, text, chat=chat)
    uid = int(update["update_id"])
    delivered = not any(u["update_id"] == uid for u in h.tg.undelivered)
    if delivered:
        await h.tg.wait_until(lambda: uid in w.done, timeout=20, what=f"update {uid} handled")
    replies = where.pending_replies()
    if replies:
        await where.wait_replies(len(replies))
    after = await h.snapshot()

    shown = f"{who} sent {text[:120]!r}: {[r.text[:200] for r in replies]}"
    assert not w.errors, f"the error handler ran; {shown}"
    assert all(APOLOGY not in r.text for r in replies), shown
    new_errors = [f"{e.method}: {e.status} {e.description}" for e in h.tg.errors[errors_before:]]
    assert not new_errors, f"the Bot API refused {new_errors}; {shown}"
    assert all(r.kind == "sent" for r in replies), shown

    name = command_of(text)
    if chat is None:
        assert len(replies) == 1, f"not exactly one answer; {shown}"
    else:
        assert len(replies) <= 1, f"more than one answer in a group; {shown}"
        if name is None or not delivered:
            assert not replies, f"an answer to what was not for the bot; {shown}"
    reply = replies[0].text if replies else ""
    pattern = SUCCESS.get(name or "")
    succeeded = bool(pattern and chat is None and pattern.search(reply))
    known = name if name in COMMAND_NAMES else "other"
    w.stats[f"{who}:{known or '-'}:{'ok' if succeeded else 'no'}"] += 1
    if not succeeded:
        assert after == before, f"a message that did not succeed changed the database; {shown}"
        return
    assert name is not None and pattern is not None
    if who == "unlinked":
        raise AssertionError(f"an unlinked user changed something; {shown}")
    own = w.own_partner(who)
    if own is not None:
        assert foreign_rows(after, own) == foreign_rows(before, own), (
            f"a member changed another partner's rows; {shown}"
        )
    typed = folded(arguments_of(text))
    found = pattern.search(reply)
    assert found is not None
    if name == "newchannel":
        assert found.group(1) == typed, f"created another name than typed; {shown}"
    if name == "allocate":
        typed_name, typed_count = typed.rsplit(" ", 1)
        assert int(found.group(1).replace(",", "")) == int(typed_count), shown
        assert name_key(found.group(2)) == name_key(typed_name), shown


# ------------------------------------------------------------------------------ tests


@FUZZ
@given(text=MESSAGE)
# Found by this test: the arguments began after the first plain space, so a name typed
# on the next line, or glued to the command, lost its first word.
@example(text="/newchannel\nshop berlin")
@example(text="/newchannel\tshop  paris")
@example(text="/newchannel\x1ajunk  maybe")
@example(text="/allocate\nlive 1")
async def test_linked_owner(world: World, text: str) -> None:
    await exchange(world, "owner", text)


@FUZZ
@given(text=MESSAGE)
async def test_member_of_another_partner_using_acme_names(world: World, text: str) -> None:
    await exchange(world, "foreign", text)


@FUZZ
@given(text=MESSAGE)
async def test_unlinked_user(world: World, text: str) -> None:
    await exchange(world, "unlinked", text)


@FUZZ
@given(text=MESSAGE, account=st.sampled_from(["", "", "/account Acme", "/account Globex"]))
async def test_support(world: World, text: str, account: str) -> None:
    if account:  # support acts on a chosen partner (or on none yet)
        await exchange(world, "support", account)
    await exchange(world, "support", text)


@settings(FUZZ, max_examples=EXAMPLES // 2)
@given(text=MESSAGE, who=st.sampled_from(["owner", "teammate", "unlinked", "support"]))
async def test_in_a_group_nothing_private_is_shown(world: World, text: str, who: str) -> None:
    await exchange(world, who, text, chat=world.next_group())


def _forged(draw: Callable[[st.SearchStrategy[Any]], Any]) -> str:
    ids = st.one_of(st.integers(0, 12), st.integers(0, 10**19 - 1))
    made = draw(st.sampled_from(["page", "delete", "keep", "noop", "raw"]))
    if made == "page":
        cb: callbacks.Callback = Page(draw(st.sampled_from(list(ListKind))), draw(ids), draw(ids))
    elif made == "delete":
        cb = ConfirmDelete(draw(ids), draw(ids), draw(st.sampled_from([0, 1, 10**15])))
    elif made == "keep":
        cb = CancelDelete(draw(ids), draw(ids))
    elif made == "noop":
        cb = Noop()
    else:
        raw = draw(st.one_of(TEXT, st.sampled_from(["1:", "1:d", "1:d:1:2", "2:n", "1:p:xx:1:1",
                                                    "1:d:-1:2:3", "1:k:1:2:3", ":::"])))
        return raw.encode()[:64].decode(errors="ignore") or "x"
    return callbacks.encode(cb)


@st.composite
def forged_data(draw: st.DrawFn) -> str:
    return _forged(draw)


@FUZZ
@given(data=forged_data(), who=st.sampled_from(["owner", "foreign", "unlinked"]))
async def test_forged_button_data_is_answered_once_and_changes_nothing(
    world: World, data: str, who: str
) -> None:
    """A modified client chooses callback_data: a press on the bot's own message with data
    it never made is answered (once), shows nobody else's data and deletes nothing."""
    h, user = world.h, world.user(who)
    await h.drain(user)
    if user.last_reply is None:
        await exchange(world, who, "/help")
    message = user.last_reply
    assert message is not None
    before = await h.snapshot()
    errors_before = len(h.tg.errors)
    press = await user.press_data(message, data)
    uid = int(press.update["update_id"])
    await h.tg.wait_until(lambda: uid in world.done, timeout=20, what=f"press {uid} handled")
    answer = await press.wait_answer()
    edits = user.pending_replies()
    if edits:
        await user.wait_replies(len(edits))
    shown = f"{who} pressed {data!r}: {answer.text!r} {[e.text[:200] for e in edits]}"
    assert not world.errors, shown
    assert APOLOGY not in (answer.text or ""), shown
    refused = [e for e in h.tg.errors[errors_before:] if NOT_MODIFIED not in e.description]
    assert not refused, f"{refused}; {shown}"
    after = await h.snapshot()
    own = world.own_partner(who)
    cb = callbacks.parse(data) if answer.text == "Deleted." else None
    if isinstance(cb, ConfirmDelete) and cb.partner_id == own:
        # Exactly what the bot's own button for that channel does: allowed, own rows only.
        assert foreign_rows(after, own) == foreign_rows(before, own), shown
    else:
        assert after == before, shown
    other = world.globex.name if who != "foreign" else world.acme.name
    for edit in edits:  # a page of somebody else's list is never shown
        assert not re.match(rf"(Channels|History) of {re.escape(other)}\b", edit.text), shown
    world.stats[f"{who}:press"] += 1
