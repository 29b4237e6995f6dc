"""Whole journeys through the real bot: a partner's and a support agent's, end to end.

Every step goes through python-telegram-bot's network code to the fake Bot API server, which
refuses what Telegram refuses (long texts, long callback data, HTML it cannot parse).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from core.model import TransferKind
from tests.integration.bot_harness import (
    INVITE_LINK,
    SUPPORT_ID,
    BotHarness,
    bot_harness,
)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[BotHarness]:
    async with bot_harness(tmp_path) as harness:
        yield harness
        harness.tg.assert_no_errors()


def first_line(text: str) -> str:
    return text.splitlines()[0]


async def test_partner_journey(h: BotHarness) -> None:
    # Support creates the partner; its invite link is a /start deep link to this bot.
    made = await h.ask(h.support, "/newpartner Acme")
    assert first_line(made.text) == "Partner Acme (#1) created at 10.00 USD per channel-month."
    assert "It works once, until 2030-01-17 09:30:" in made.text
    link = INVITE_LINK.search(made.text)
    assert link, f"the invite link does not name the bot: {made.text!r}"
    code = link.group(1)
    assert len(code) >= 22  # >= 128 bits of base64url

    owner = h.tg.user(101, "Olga")
    welcome = await h.ask(owner, f"/start {code}")
    assert first_line(welcome.text) == "Welcome! You are linked to Acme as owner."
    assert "/allocate" in welcome.text and "/newpartner" not in welcome.text

    reply = await h.ask(owner, "/balance")
    assert reply.text.splitlines() == [
        "Balance: 0 days",
        "Channels: 0 (0 running)",
        "Monthly need: 0 days (0 channels × 30)",
        "Runway: no running channels draw on the balance",
        "Open invoices: none",
        "Low-balance alert below 30 days",
    ]

    granted = await h.ask(h.support, "/credit Acme 12 welcome bonus")
    assert granted.text == "Granted 12 days to Acme (welcome bonus).\nBalance: 12 days"

    created = await h.ask(owner, "/newchannel shop-berlin")
    assert created.text == "Channel shop-berlin created. Give it days: /allocate shop-berlin 30"
    assert {"type": "bold", "offset": 8, "length": 11} in created.entities

    before = await h.snapshot()
    short = await h.ask(owner, "/allocate shop-berlin 30")
    assert short.text == "You have 12 days, this needs 30: /topup 18"
    assert await h.snapshot() == before

    await h.ask(h.support, "/credit Acme 88 first month")
    allocated = await h.ask(owner, "/allocate shop-berlin 30")
    assert allocated.text.splitlines() == [
        "Gave 30 days to shop-berlin.",
        "Balance: 70 days",
        "shop-berlin is active until 2030-02-13",
    ]
    assert first_line((await h.ask(owner, "/balance")).text) == "Balance: 70 days"

    listing = await h.ask(owner, "/channels")
    assert listing.text == (
        "Channels of Acme: 1 (1 running)\n\n• shop-berlin: active until 2030-02-13, 30 days left"
    )
    assert listing.buttons() == []  # one page: no pager

    renew_on = await h.ask(owner, "/autorenew shop-berlin on")
    assert first_line(renew_on.text).startswith("Auto-renew is on for shop-berlin:")
    assert "auto-renew" in (await h.ask(owner, "/channels")).text
    renew_off = await h.ask(owner, "/autorenew SHOP-BERLIN off")  # names: case-insensitive
    assert renew_off.text == "Auto-renew is off for shop-berlin."

    alerts = await h.ask(owner, "/alerts 60")
    assert alerts.text == (
        "Done: I will warn every member when the balance of Acme falls below 60 days."
    )

    await h.ask(owner, "/newchannel shop-paris")
    paris = await h.ask(owner, "/allocate shop-paris 10")
    assert "Balance: 60 days" in paris.text and "active until 2030-01-24" in paris.text

    balance = (await h.ask(owner, "/balance")).text.splitlines()
    assert balance[0] == "Balance: 60 days"
    assert balance[1:3] == ["Channels: 2 (2 running)", "Monthly need: 60 days (2 channels × 30)"]
    assert balance[-1] == "Low-balance alert below 60 days"

    # Ten and a half days later: 19 whole days of shop-berlin are unused (a started day is used).
    h.clock.advance(timedelta(days=10, hours=12))
    ask = await h.ask(owner, "/delete shop-berlin")
    assert ask.text == (
        "Delete channel shop-berlin?\n"
        "19 days come back to your balance; the rest counts as used."
    )
    assert [label for label, _ in ask.buttons()[0]] == ["Delete it", "Keep it"]
    press = await owner.press(ask, "Delete it")
    done = await owner.wait_reply()
    assert done.kind == "edited" and done.message_id == ask.message_id
    assert done.text == (
        "Channel shop-berlin deleted. 19 days returned to the balance.\nBalance: 79 days"
    )
    assert done.buttons() == []
    assert (await press.wait_answer()).text == "Deleted."
    assert first_line((await h.ask(owner, "/balance")).text) == "Balance: 79 days"
    assert "shop-berlin" not in (await h.ask(owner, "/channels")).text

    history = await h.ask(owner, "/history")
    assert history.text.splitlines() == [
        "History of Acme (newest first)",
        "",
        "2030-01-24 +19 days returned from shop-berlin",
        "2030-01-14 −10 days given to shop-paris",
        "2030-01-14 −30 days given to shop-berlin",
        "2030-01-14 +88 days granted by support (first month)",
        "2030-01-14 +12 days granted by support (welcome bonus)",
    ]

    # The name may be reused once deleted; history keeps the old one.
    again = await h.ask(owner, "/newchannel shop-berlin")
    assert first_line(again.text).startswith("Channel shop-berlin created.")

    # A teammate joins through the owner's invite link and sees the same account.
    invite = await h.ask(owner, "/invite")
    teammate_code = INVITE_LINK.search(invite.text)
    assert teammate_code, invite.text
    mia = h.tg.user(102, "Mia")
    joined = await h.ask(mia, f"/start {teammate_code.group(1)}")
    assert first_line(joined.text) == "Welcome! You are linked to Acme as member."
    assert first_line((await h.ask(mia, "/balance")).text) == "Balance: 79 days"
    assert (await h.ask(mia, "/invite")).text == (
        "Only the account owner can invite teammates. Ask your owner for an invite link."
    )
    reused = await h.ask(h.tg.user(103, "Eve"), f"/start {teammate_code.group(1)}")
    assert reused.text == "This invite link was already used. Ask for a new one."

    # shop-berlin held 30 days: 19 came back, the 11 started or past ones were consumed.
    consumed = await h.store.execute_raw(
        "SELECT days FROM transfers WHERE kind = ?", (TransferKind.CONSUMPTION.value,)
    )
    assert consumed == [(11,)]
    await h.verify()


async def test_support_journey(h: BotHarness) -> None:
    assert (await h.ask(h.support, "/partners")).text == (
        "No partners yet. Create one: /newpartner NAME"
    )
    acme = await h.new_partner("Acme", owner_id=101, via_bot=True)
    globex = await h.new_partner("Globex", owner_id=201, via_bot=True)

    listing = await h.ask(h.support, "/partners")
    assert listing.text.splitlines() == [
        "Partners: 2",
        "",
        f"#{acme.id} Acme: 0 days, 0 channels, 10.00 USD/channel-month",
        f"#{globex.id} Globex: 0 days, 0 channels, 10.00 USD/channel-month",
    ]

    # Before choosing a partner, partner commands ask support to choose one.
    choose = await h.ask(h.support, "/balance")
    assert choose.text == (
        "Choose a partner first: /account PARTNER (an id or exact name). /partners lists them."
    )

    account = await h.ask(h.support, "/account acme")  # exact name, any case
    lines = account.text.splitlines()
    assert lines[0] == f"Acme (#{acme.id}), 10.00 USD per channel-month, billing day 1"
    assert lines[1] == "Balance: 0 days"
    assert f"• {acme.owner.user_id}: owner" in lines
    assert lines[-1] == "Partner commands now act on Acme."

    granted = await h.ask(h.support, "/credit Acme 50 goodwill for the outage")
    assert granted.text == "Granted 50 days to Acme (goodwill for the outage).\nBalance: 50 days"
    removed = await h.ask(h.support, "/credit Acme -20 mistaken grant")
    assert removed.text == "Removed 20 days from Acme (mistaken grant).\nBalance: 30 days"
    by_id = await h.ask(h.support, f"/credit {globex.id} 5 trial")
    assert by_id.text == "Granted 5 days to Globex (trial).\nBalance: 5 days"
    # A partner named like a sentence: everything before DAYS is the partner.
    await h.ask(h.support, "/newpartner Acme Corp Europe")
    spaced = await h.ask(h.support, "/credit Acme Corp Europe 7 launch")
    assert spaced.text == "Granted 7 days to Acme Corp Europe (launch).\nBalance: 7 days"

    price = await h.ask(h.support, "/setprice Acme 12.50")
    assert price.text == "Acme now pays 12.50 USD per channel-month (was 10.00 USD)."

    # Partner commands act on the chosen partner, with a reminder whose account it is.
    acting = await h.ask(h.support, "/balance")
    assert first_line(acting.text) == "Balance: 30 days"
    assert acting.text.endswith("Support, acting on Acme")
    await h.ask(h.support, "/newchannel support-made")
    given = await h.ask(h.support, "/allocate support-made 30")
    assert "Balance: 0 days" in given.text and "active until 2030-02-13" in given.text
    assert first_line((await h.ask(acme.owner, "/balance")).text) == "Balance: 0 days"
    assert "support-made" in (await h.ask(acme.owner, "/channels")).text

    await h.ask(h.support, f"/account {globex.id}")
    assert first_line((await h.ask(h.support, "/balance")).text) == "Balance: 5 days"

    after = await h.ask(h.support, "/partners")
    assert f"#{acme.id} Acme: 0 days, 1 channels, 12.50 USD/channel-month" in after.text
    assert f"#{globex.id} Globex: 5 days, 0 channels, 10.00 USD/channel-month" in after.text

    # Every change records who made it.
    actors = await h.store.execute_raw("SELECT DISTINCT actor FROM transfers")
    assert actors == [(f"support:{SUPPORT_ID}",)]
    price_events = await h.store.execute_raw(
        "SELECT actor, detail FROM events WHERE action = 'partner.price_set'"
    )
    assert price_events == [(f"support:{SUPPORT_ID}", "from=1000 to=1250")]
    await h.verify()


async def test_help_and_start_without_code_fit_the_user(h: BotHarness) -> None:
    stranger = h.tg.user(301, "Sid")
    hello = await h.ask(stranger, "/start")
    assert first_line(hello.text) == "Hello! I run your partner billing: days, channels, payments."
    assert "/start:" in hello.text and "/help:" in hello.text
    assert "/balance" not in hello.text and "/partners" not in hello.text

    acme = await h.new_partner("Acme", owner_id=101)
    owner_help = (await h.ask(acme.owner, "/help")).text
    assert "/allocate:" in owner_help and "/invite:" in owner_help
    assert "/partners" not in owner_help and "/credit" not in owner_help

    support_help = (await h.ask(h.support, "/help")).text
    assert first_line(support_help).startswith("You are support staff.")
    for name in ("partners", "account", "newpartner", "credit", "setprice", "allocate"):
        assert f"/{name}:" in support_help

    assert (await h.ask(stranger, "hello there")).text == (
        "I work with commands. /help lists them."
    )
    assert (await h.ask(stranger, "/frobnicate")).text == (
        "I don't know that command. /help lists what you can do."
    )


async def test_names_with_html_and_unicode_are_shown_as_typed(h: BotHarness) -> None:
    acme = await h.new_partner("<b>Ünïcødé & Co</b>", owner_id=101, via_bot=True, days=100)
    owner = acme.owner
    names = ["<i>shop</i>", "Tom & Jerry's", "café 🚀 東京", "a<b", "x" * 64]
    for name in names:
        created = await h.ask(owner, f"/newchannel {name}")
        assert created.text == f"Channel {name} created. Give it days: /allocate {name} 30"
        allocated = await h.ask(owner, f"/allocate {name} 10")
        assert f"Gave 10 days to {name}." in allocated.text
    listing = await h.ask(owner, "/channels")
    assert first_line(listing.text).startswith("Channels of <b>Ünïcødé & Co</b>: 5")
    for name in names:
        assert f"• {name}: active until 2030-01-24, 10 days left" in listing.text
    history = await h.ask(owner, "/history")
    assert "−10 days given to <i>shop</i>" in history.text
    partners = await h.ask(h.support, "/partners")
    assert "#1 <b>Ünïcødé & Co</b>: 50 days, 5 channels" in partners.text
    account = await h.ask(h.support, "/account <b>Ünïcødé & Co</b>")
    assert first_line(account.text).startswith("<b>Ünïcødé & Co</b> (#1)")
    await h.verify()
