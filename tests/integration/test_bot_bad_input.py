"""A table of bad inputs per command: each gets a one-line hint and changes nothing.

Missing, zero, negative, huge and non-numeric arguments, unicode, control characters and HTML
in names, and 10 kB messages. The Bot API fake refuses replies Telegram would refuse (over
4096 characters, HTML it cannot parse), so a hint that quotes the input back unescaped or
uncut fails here as it would in production.

One bot and database serve the whole module; the snapshot is compared around every case.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from bot.commands import usage
from tests.fakes.telegram_api import FakeUser
from tests.integration.bot_harness import Account, BotHarness, bot_harness

pytestmark = pytest.mark.asyncio(loop_scope="module")

KB10 = 10_000
X64 = "x" * 63 + "…"  # how a long echo is cut: 63 characters and an ellipsis


@dataclass
class World:
    h: BotHarness
    acme: Account
    unlinked: FakeUser

    def user(self, who: str) -> FakeUser:
        return {"owner": self.acme.owner, "support": self.h.support, "unlinked": self.unlinked}[
            who
        ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with bot_harness(tmp_path_factory.mktemp("bad-input")) as h:
        acme = await h.new_partner("Acme", owner_id=101)
        await h.add_channel(acme.id, "shop")  # never active
        await h.add_channel(acme.id, "live", days=10)
        await h.grant(acme.id, 12)  # the balance: 12 days
        yield World(h, acme, h.tg.user(301, "Una"))
        h.tg.assert_no_errors()


def hint(reason: str, command: str) -> str:
    return f"{reason} {usage(command)}"


NOT_DAYS = "is not a whole number of days."
CASES: list[tuple[str, str, str]] = [
    # /newchannel NAME
    ("owner", "/newchannel", hint("Missing NAME.", "newchannel")),
    ("owner", "/newchannel    ", hint("Missing NAME.", "newchannel")),
    ("owner", "/newchannel " + "x" * 65,
     hint("Name must be at most 64 characters.", "newchannel")),
    ("owner", "/newchannel " + "x" * KB10,
     hint("Name must be at most 64 characters.", "newchannel")),
    ("owner", "/newchannel shop", "A channel named “shop” already exists. Pick another name."),
    ("owner", "/newchannel SHOP", "A channel named “SHOP” already exists. Pick another name."),
    ("owner", "/newchannel  live  ", "A channel named “live” already exists. Pick another name."),
    ("owner", "/newchannel evil\u202etxt.exe",
     hint("Name must not contain control characters.", "newchannel")),
    ("owner", "/newchannel zero\u200bwidth",
     hint("Name must not contain control characters.", "newchannel")),
    # /allocate CHANNEL DAYS
    ("owner", "/allocate", hint("Missing CHANNEL and DAYS.", "allocate")),
    ("owner", "/allocate shop", hint("Missing DAYS.", "allocate")),
    ("owner", "/allocate 30", hint("Missing DAYS.", "allocate")),
    ("owner", "/allocate shop 0", hint("Days must be at least 1.", "allocate")),
    ("owner", "/allocate shop -5", hint(f"“-5” {NOT_DAYS}", "allocate")),
    ("owner", "/allocate shop +5", hint(f"“+5” {NOT_DAYS}", "allocate")),
    ("owner", "/allocate shop 100001", hint("Days must be at most 100,000.", "allocate")),
    ("owner", "/allocate shop 99999999999", hint(f"“99999999999” {NOT_DAYS}", "allocate")),
    ("owner", "/allocate shop abc", hint(f"“abc” {NOT_DAYS}", "allocate")),
    ("owner", "/allocate shop 1.5", hint(f"“1.5” {NOT_DAYS}", "allocate")),
    ("owner", "/allocate shop 1<2", hint(f"“1<2” {NOT_DAYS}", "allocate")),
    ("owner", "/allocate shop <b>5</b>", hint(f"“<b>5</b>” {NOT_DAYS}", "allocate")),
    ("owner", "/allocate shop " + "9" * KB10, hint(f"“{'9' * 19}…” {NOT_DAYS}", "allocate")),
    ("owner", "/allocate shop 30", "You have 12 days, this needs 30: /topup 18"),
    ("owner", "/allocate shop 13", "You have 12 days, this needs 13: /topup 1"),
    ("owner", "/allocate nosuch 5", "No channel named “nosuch”. /channels lists yours."),
    ("owner", "/allocate <b>shop</b> 5",
     "No channel named “<b>shop</b>”. /channels lists yours."),
    ("owner", "/allocate Ünï 🚀 5", "No channel named “Ünï 🚀”. /channels lists yours."),
    ("owner", "/allocate " + "x" * KB10 + " 5",
     f"No channel named “{X64}”. /channels lists yours."),
    # /delete CHANNEL
    ("owner", "/delete", hint("Missing CHANNEL.", "delete")),
    ("owner", "/delete nosuch", "No channel named “nosuch”. /channels lists yours."),
    ("owner", "/delete <script>alert(1)</script>",
     "No channel named “<script>alert(1)</script>”. /channels lists yours."),
    ("owner", "/delete a & b", "No channel named “a & b”. /channels lists yours."),
    ("owner", "/delete " + "x" * KB10, f"No channel named “{X64}”. /channels lists yours."),
    # /autorenew CHANNEL on|off
    ("owner", "/autorenew", hint("Missing CHANNEL and on|off.", "autorenew")),
    ("owner", "/autorenew shop", hint("Missing on|off.", "autorenew")),
    ("owner", "/autorenew shop maybe", hint("“maybe” is neither on nor off.", "autorenew")),
    ("owner", "/autorenew shop <b>on</b>", hint("“<b>on</b>” is neither on nor off.", "autorenew")),
    ("owner", "/autorenew shop " + "y" * KB10,
     hint(f"“{'y' * 63}…” is neither on nor off.", "autorenew")),
    ("owner", "/autorenew nosuch on", "No channel named “nosuch”. /channels lists yours."),
    # /alerts DAYS
    ("owner", "/alerts", hint("Missing DAYS.", "alerts")),
    ("owner", "/alerts -1", hint(f"“-1” {NOT_DAYS}", "alerts")),
    ("owner", "/alerts abc", hint(f"“abc” {NOT_DAYS}", "alerts")),
    ("owner", "/alerts 100001", hint("Days must be between 0 and 100,000.", "alerts")),
    ("owner", "/alerts " + "7" * KB10, hint(f"“{'7' * 19}…” {NOT_DAYS}", "alerts")),
    # /start CODE
    ("unlinked", "/start !!!", "This invite link is not valid. Check it, or ask for a new one."),
    ("unlinked", "/start <b>code</b>",
     "This invite link is not valid. Check it, or ask for a new one."),
    ("unlinked", "/start " + "A" * 65,
     "This invite link is not valid. Check it, or ask for a new one."),
    ("unlinked", "/start " + "A" * KB10,
     "This invite link is not valid. Check it, or ask for a new one."),
    ("unlinked", "/start " + "A" * 32,
     "I don't know this invite link. Check it, or ask for a new one."),
    # anything else
    ("unlinked", "z" * KB10, "I work with commands. /help lists them."),
    ("owner", "/frobnicate " + "z" * KB10,
     "I don't know that command. /help lists what you can do."),
    # support: /newpartner NAME
    ("support", "/newpartner", hint("Missing NAME.", "newpartner")),
    ("support", "/newpartner 12345", hint("Name must not be only digits.", "newpartner")),
    ("support", "/newpartner acme", "A partner named “acme” already exists."),
    ("support", "/newpartner " + "p" * 65,
     hint("Name must be at most 64 characters.", "newpartner")),
    ("support", "/newpartner " + "p" * KB10,
     hint("Name must be at most 64 characters.", "newpartner")),
    ("support", "/newpartner bad\u0000name",
     hint("Name must not contain control characters.", "newpartner")),
    # support: /account PARTNER
    ("support", "/account", hint("Missing PARTNER.", "account")),
    ("support", "/account 0", "No partner “0”. /partners lists them."),
    ("support", "/account -1", "No partner “-1”. /partners lists them."),
    ("support", "/account 999", "No partner “999”. /partners lists them."),
    ("support", "/account 99999999999999999999",
     "No partner “99999999999999999999”. /partners lists them."),
    ("support", "/account Nobody", "No partner “Nobody”. /partners lists them."),
    ("support", "/account <b>Acme</b>", "No partner “<b>Acme</b>”. /partners lists them."),
    ("support", "/account " + "q" * KB10, f"No partner “{'q' * 63}…”. /partners lists them."),
    # support: /credit PARTNER DAYS REASON
    ("support", "/credit", hint("Missing PARTNER, DAYS and REASON.", "credit")),
    ("support", "/credit Acme", hint("PARTNER and DAYS are required.", "credit")),
    ("support", "/credit 5 goodwill", hint("PARTNER and DAYS are required.", "credit")),
    ("support", "/credit Acme 10", hint("REASON is required.", "credit")),
    ("support", "/credit Acme 0 nothing", hint("Days must not be 0.", "credit")),
    ("support", "/credit Acme 100001 a lot", hint("Days must be at most 100,000.", "credit")),
    ("support", "/credit Acme -100001 a lot", hint("Days must be at most 100,000.", "credit")),
    ("support", "/credit Acme 9999999999 huge", hint("PARTNER and DAYS are required.", "credit")),
    ("support", "/credit Acme abc why", hint("PARTNER and DAYS are required.", "credit")),
    ("support", "/credit Acme 1.5 why", hint("PARTNER and DAYS are required.", "credit")),
    ("support", "/credit Acme -13 too many",
     "Acme has 12 days: removing 13 days would overdraw it. Nothing changed."),
    ("support", "/credit Acme 10 " + "r" * 201,
     hint("Reason must be at most 200 characters.", "credit")),
    ("support", "/credit Acme 10 " + "r" * KB10,
     hint("Reason must be at most 200 characters.", "credit")),
    ("support", "/credit Nobody 10 why", "No partner “Nobody”. /partners lists them."),
    ("support", "/credit 999 10 why", "No partner “999”. /partners lists them."),
    # support: /setprice PARTNER AMOUNT
    ("support", "/setprice", hint("Missing PARTNER and AMOUNT.", "setprice")),
    ("support", "/setprice Acme", hint("Missing AMOUNT.", "setprice")),
    ("support", "/setprice Acme 0", hint("Amount must be greater than zero.", "setprice")),
    ("support", "/setprice Acme 0.00", hint("Amount must be greater than zero.", "setprice")),
    ("support", "/setprice Acme -5",
     hint("Amount '-5' is not an amount like 12.50.", "setprice")),
    ("support", "/setprice Acme abc",
     hint("Amount 'abc' is not an amount like 12.50.", "setprice")),
    ("support", "/setprice Acme 1e3",
     hint("Amount '1e3' is not an amount like 12.50.", "setprice")),
    ("support", "/setprice Acme <b>",
     hint("Amount '<b>' is not an amount like 12.50.", "setprice")),
    ("support", "/setprice Acme 1<2",
     hint("Amount '1<2' is not an amount like 12.50.", "setprice")),
    ("support", "/setprice Acme 1<2 & 3", "No partner “Acme 1<2 &”. /partners lists them."),
    ("support", "/setprice Acme 12.505",
     hint("Amount USD has 2 decimal places at most.", "setprice")),
    ("support", "/setprice Acme " + "x" * KB10,
     hint(f"Amount '{'x' * 19}…' is not an amount like 12.50.", "setprice")),
    ("support", "/setprice Acme 1." + "5" * KB10,
     hint("Amount USD has 2 decimal places at most.", "setprice")),
    ("support", "/setprice Acme 1000000000", hint("Amount is too large.", "setprice")),
    ("support", "/setprice Nobody 5", "No partner “Nobody”. /partners lists them."),
]


def case_id(case: tuple[str, ...]) -> str:
    text = case[1]
    shown = text if len(text) <= 40 else f"{text[:30]}...({len(text)} chars)"
    return f"{case[0]}:{shown.encode('ascii', 'backslashreplace').decode()}"


async def _run(world: World, who: str, command: str) -> str:
    h = world.h
    before = await h.snapshot()
    reply = await h.ask(world.user(who), command)
    assert await h.snapshot() == before, "a bad input changed the database"
    assert reply.buttons() == []
    assert "\n" not in reply.text, f"not one line: {reply.text!r}"
    assert len(reply.text) <= 400, f"a hint of {len(reply.text)} characters"
    return reply.text


@pytest.mark.parametrize(("who", "command", "expected"), CASES, ids=[case_id(c) for c in CASES])
async def test_bad_input_gets_a_one_line_hint_and_changes_nothing(
    world: World, who: str, command: str, expected: str
) -> None:
    assert await _run(world, who, command) == expected


async def test_the_bot_still_works_and_the_ledger_holds(world: World) -> None:
    h = world.h
    reply = await h.ask(world.acme.owner, "/allocate shop 12")
    assert reply.text.splitlines()[1] == "Balance: 0 days"
    await h.verify()
