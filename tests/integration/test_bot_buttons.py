"""Inline buttons: the delete confirmation pressed twice or late, and long lists in pages.

The fake Bot API refuses a text over 4096 characters (after HTML parsing, in UTF-16 units as
Telegram counts) and callback_data over 64 bytes, so every page the bot manages to send or
edit is within Telegram's limits; the tests also check both explicitly.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot import callbacks, texts
from bot.callbacks import ConfirmDelete
from core.model import MAX_ID, TransferKind
from tests.fakes.html_check import utf16_len
from tests.fakes.telegram_api import BotMessage, FakeUser
from tests.integration.bot_harness import Account, BotHarness, bot_harness

NOT_MODIFIED = "message is not modified"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[BotHarness]:
    async with bot_harness(tmp_path) as harness:
        yield harness
        assert harness.errors_except(NOT_MODIFIED) == []


@pytest.fixture
async def acme(h: BotHarness) -> Account:
    account = await h.new_partner("Acme", owner_id=101, days=100)
    await h.add_channel(account.id, "shop", days=30)  # until 2030-02-13 09:30
    return account


async def ask_delete(h: BotHarness, user: FakeUser, name: str) -> BotMessage:
    ask = await h.ask(user, f"/delete {name}")
    assert ask.text.startswith(f"Delete channel {name}?"), ask.text
    return ask


async def test_double_press_on_confirm_deletes_once(h: BotHarness, acme: Account) -> None:
    owner = acme.owner
    h.clock.advance(timedelta(days=5, hours=12))  # 24.5 days left: 24 come back
    ask = await ask_delete(h, owner, "shop")
    assert "24 days come back to your balance" in ask.text
    before = await h.balance(acme.id)

    # Two taps before the bot has seen either: both reach it with the button still there.
    first = await owner.press(ask, "Delete it")
    second = await owner.press(ask, "Delete it")
    assert first.data == second.data

    assert (await first.wait_answer()).text == "Deleted."
    assert (await second.wait_answer()).text == "Already deleted; nothing more to do."
    done = await owner.wait_reply()
    assert done.text == (
        f"Channel shop deleted. 24 days returned to the balance.\nBalance: {before + 24} days"
    )
    await h.tg.wait_idle(quiet=0.02)
    assert owner.pending_replies() == []  # the second tap edited nothing
    assert await h.balance(acme.id) == before + 24
    assert await h.transfers_of(acme.id, TransferKind.RETURN) == 1
    await h.verify()


async def test_double_press_on_keep_changes_nothing(h: BotHarness, acme: Account) -> None:
    owner = acme.owner
    ask = await ask_delete(h, owner, "shop")
    before = await h.snapshot()
    first = await owner.press(ask, "Keep it")
    second = await owner.press(ask, "Keep it")
    await first.wait_answer()
    await second.wait_answer()
    kept = await owner.wait_reply()
    assert kept.text == "Kept the channel: nothing was deleted." and kept.buttons() == []
    assert await h.snapshot() == before


async def test_stale_confirm_after_the_channel_changed_deletes_nothing(
    h: BotHarness, acme: Account
) -> None:
    owner = acme.owner
    ask = await ask_delete(h, owner, "shop")
    assert "30 days come back" in ask.text  # the clock stands still: exactly 30 days left
    # More days arrive after the question: what the button promised is no longer true.
    await h.ask(owner, "/allocate shop 10")
    before = await h.snapshot()

    press = await owner.press(ask, "Delete it")
    assert (await press.wait_answer()).text == "The channel changed; nothing was deleted."
    changed = await owner.wait_reply()
    assert changed.text == "Channel “shop” changed since I asked. Run /delete again."
    assert changed.buttons() == []
    assert await h.snapshot() == before

    # Asking again shows the new figure, and that confirmation works.
    again = await ask_delete(h, owner, "shop")
    assert "40 days come back" in again.text
    press = await owner.press(again, "Delete it")
    assert (await press.wait_answer()).text == "Deleted."
    assert "40 days returned" in (await owner.wait_reply()).text
    await h.verify()


async def test_stale_confirm_of_an_already_deleted_channel(h: BotHarness, acme: Account) -> None:
    owner = acme.owner
    mia = await h.link(102, acme.id)
    old = await ask_delete(h, owner, "shop")
    other = await ask_delete(h, mia, "shop")  # a teammate asks too...
    press = await mia.press(other, "Delete it")  # ...and deletes first
    assert (await press.wait_answer()).text == "Deleted."
    await mia.wait_reply()
    # The name is reused for a new channel at once.
    await h.ask(owner, "/newchannel shop")
    await h.ask(owner, "/allocate shop 5")
    before = await h.snapshot()

    late = await owner.press(old, "Delete it")
    assert (await late.wait_answer()).text == "Already deleted; nothing more to do."
    await h.tg.wait_idle(quiet=0.02)
    assert await h.snapshot() == before  # the new "shop" is untouched
    listing = await h.ask(owner, "/channels")
    assert "• shop: active until 2030-01-19, 5 days left" in listing.text
    await h.verify()


async def test_confirm_of_a_never_active_channel_and_far_future_one(
    h: BotHarness, acme: Account
) -> None:
    owner = acme.owner
    await h.ask(owner, "/newchannel idle")
    ask = await ask_delete(h, owner, "idle")
    assert ask.text == (
        "Delete channel idle?\nNo days come back: it has no whole unused day left."
    )
    assert (await (await owner.press(ask, "Delete it")).wait_answer()).text == "Deleted."
    assert "0 days returned" in (await owner.wait_reply()).text

    # Active for ~800 years: the confirmation still fits 64 bytes of callback_data.
    await h.ask(owner, "/newchannel far")
    for _ in range(3):
        await h.grant(acme.id, 100_000)
        await h.ask(owner, "/allocate far 100000")
    ask = await ask_delete(h, owner, "far")
    assert "300,000 days come back" in ask.text
    for _, data in ask.buttons()[0]:
        assert data is not None and len(data.encode()) <= 64
    assert (await (await owner.press(ask, "Delete it")).wait_answer()).text == "Deleted."
    await owner.wait_reply()
    await h.verify()


async def test_buttons_this_bot_did_not_make_are_expired(h: BotHarness, acme: Account) -> None:
    owner = acme.owner
    ask = await ask_delete(h, owner, "shop")
    (_, yes), _ = ask.buttons()[0]
    assert yes is not None
    before = await h.snapshot()
    for data in ("", "x", "0" + yes[1:], yes + ":1", yes.replace(":d:", ":q:"), "1:d:-1:2:3"):
        press = await owner.press_data(ask, data)
        assert (await press.wait_answer()).text == texts.BUTTON_EXPIRED, data
    await h.tg.wait_idle(quiet=0.02)
    assert owner.message(ask.message_id).buttons() == ask.buttons()  # still asking
    assert await h.snapshot() == before


# ----------------------------------------------------------------------------------- pages

PAGE_HEAD = re.compile(r"^Channels of (.+): (\d+) \((\d+) running\), page (\d+) of (\d+)$")


def check_limits(message: BotMessage) -> None:
    assert utf16_len(message.text) <= 4096, f"{utf16_len(message.text)} UTF-16 units"
    for row in message.buttons():
        for _, data in row:
            assert data is not None and len(data.encode()) <= 64, data


def channel_names(message: BotMessage) -> list[str]:
    body = message.text.split("\n\n", 1)[1]
    return [line[2:].split(": active until")[0] for line in body.splitlines()]


def name_for(i: int) -> str:
    """500 names of every awkward kind, most 64 characters (the maximum) long."""
    kinds = [
        f"{i:03d} " + "🚀" * 60,  # 124 UTF-16 units: astral characters count twice
        f"{i:03d} " + "<b>&amp;</b>" * 5,  # markup typed as text: must be escaped
        f"{i:03d} " + "Ünïcødé " * 7 + "東京",
        f"{i:03d} " + "x" * 60,
        f"ch{i}",
    ]
    return kinds[i % len(kinds)][:64]


def widest_name(i: int) -> str:
    """64 characters, 125 UTF-16 units: the widest name a channel can have."""
    return f"{i:03d}" + "🚀" * 61


@pytest.mark.parametrize(
    ("partner_name", "name_of", "every"),
    [
        pytest.param("🚀" * 20 + " & <Partners> " + "Ü" * 30, name_for, 3, id="mixed"),
        pytest.param("🚀" * 64, widest_name, 1, id="widest"),
    ],
)
async def test_500_channels_page_within_telegrams_limits(
    h: BotHarness, partner_name: str, name_of: Callable[[int], str], every: int
) -> None:
    acme = await h.new_partner(partner_name, owner_id=101)
    names = [name_of(i) for i in range(500)]
    await h.add_channels(acme.id, names, days=30)
    # Some (or all) with the longest status line there is: auto-renew, own subscription.
    for name in names[::every]:
        await h.billing.set_auto_renew(acme.id, name, True, "support:900")
    await h.store.execute_raw(
        "UPDATE channels SET billing = 'subscription' WHERE partner_id = ? AND id % ? = 0",
        (acme.id, every),
    )
    owner = acme.owner

    first = await h.ask(owner, "/channels")
    check_limits(first)
    head = PAGE_HEAD.match(first.text.splitlines()[0])
    assert head, first.text.splitlines()[0]
    assert head.groups()[0] == partner_name and head.groups()[1:4] == ("500", "500", "1")
    pages = int(head.group(5))
    assert pages >= 25
    assert [label for label, _ in first.buttons()[0]] == [f"1/{pages}", "Next ›"]

    seen = channel_names(first)
    current = first
    for number in range(2, pages + 1):
        press = await owner.press(current, "Next ›")
        current = await owner.wait_reply()
        await press.wait_answer()
        assert current.kind == "edited" and current.message_id == first.message_id
        check_limits(current)
        assert current.text.splitlines()[0].endswith(f"page {number} of {pages}")
        seen += channel_names(current)
    assert [label for label, _ in current.buttons()[0]] == ["‹ Prev", f"{pages}/{pages}"]
    assert sorted(seen) == sorted(names)  # every channel once, none twice
    assert len(seen) == len(set(seen)) == 500

    # And back again: the pages are stable.
    press = await owner.press(current, "‹ Prev")
    back = await owner.wait_reply()
    await press.wait_answer()
    assert back.text.splitlines()[0].endswith(f"page {pages - 1} of {pages}")
    # The page label answers and changes nothing.
    label = await owner.press(back, f"{pages - 1}/{pages}")
    await label.wait_answer()
    await h.tg.wait_idle(quiet=0.02)
    assert owner.pending_replies() == []


async def test_stale_page_button_after_the_list_shrank(h: BotHarness) -> None:
    acme = await h.new_partner("Acme", owner_id=101)
    names = [f"c{i:02d}" for i in range(25)]
    await h.add_channels(acme.id, names)
    owner = acme.owner
    first = await h.ask(owner, "/channels")
    assert first.text.splitlines()[0] == "Channels of Acme: 25 (0 running), page 1 of 2"
    for name in names[:10]:
        ask = await ask_delete(h, owner, name)
        await (await owner.press(ask, "Delete it")).wait_answer()
        await owner.wait_reply()
    press = await owner.press(first, "Next ›")  # page 2 no longer exists
    await press.wait_answer()
    shown = await owner.wait_reply()
    assert shown.text.splitlines()[0] == "Channels of Acme: 15 (0 running)"
    assert shown.buttons() == []


async def test_history_pages(h: BotHarness) -> None:
    acme = await h.new_partner("Acme", owner_id=101)
    for i in range(1, 41):
        await h.grant(acme.id, i, f"grant <{i}>")
    owner = acme.owner
    page = await h.ask(owner, "/history")
    seen: list[str] = []
    while True:
        check_limits(page)
        seen += page.text.split("\n\n", 1)[1].splitlines()
        labels = [label for label, _ in page.buttons()[0]] if page.buttons() else []
        if "Older ›" not in labels:
            break
        press = await owner.press(page, "Older ›")
        page = await owner.wait_reply()
        await press.wait_answer()
    assert seen == [
        f"2030-01-14 +{i} days granted by support (grant <{i}>)" if i > 1
        else "2030-01-14 +1 day granted by support (grant <1>)"
        for i in range(40, 0, -1)
    ]
    assert page.text.startswith("History of Acme (older)")
    press = await owner.press(page, "« Newest")
    newest = await owner.wait_reply()
    await press.wait_answer()
    assert newest.text.startswith("History of Acme (newest first)")


async def test_partners_pages_for_support(h: BotHarness) -> None:
    for i in range(45):  # markup typed as text, and the widest names there are
        name = f"P{i:02d} " + ("<&>" * 10 if i % 2 else "🚀" * 60)
        await h.billing.create_partner(name, "support:900")
    page = await h.ask(h.support, "/partners")
    seen = 0
    while True:
        check_limits(page)
        seen += len(page.text.split("\n\n", 1)[1].splitlines())
        labels = [label for label, _ in page.buttons()[0]]
        if "Next ›" not in labels:
            break
        press = await h.support.press(page, "Next ›")
        page = await h.support.wait_reply()
        await press.wait_answer()
    assert seen == 45
    # A partner's member cannot turn those pages, even with the button in hand.
    member = (await h.new_partner("Member Co", owner_id=101)).owner
    own = await h.ask(member, "/help")
    (data,) = [data for label, data in page.buttons()[0] if label == "‹ Prev"]
    assert data is not None
    press = await member.press_data(own, data)
    assert (await press.wait_answer()).text == texts.BUTTON_EXPIRED


def test_callback_data_of_the_largest_ids_fits_64_bytes() -> None:
    big = MAX_ID  # SQLite's largest integer: 19 digits, the most a field takes
    until = callbacks.stamp(datetime.max.replace(tzinfo=UTC))
    data = callbacks.encode(ConfirmDelete(big, big, until))
    assert len(data.encode()) <= 64
    assert callbacks.parse(data) == ConfirmDelete(big, big, until)
    assert len(callbacks.encode(ConfirmDelete(big, big, big)).encode()) <= 64


async def test_history_with_the_longest_reasons_stays_within_limits(h: BotHarness) -> None:
    acme = await h.new_partner("Acme", owner_id=101)
    for i in range(1, 21):  # reasons of 200 emoji: the longest a reason can be, 400 UTF-16 units
        await h.grant(acme.id, i, f"{i:03d}" + "🚀" * 197)
    owner = acme.owner
    page = await h.ask(owner, "/history")
    shown = 0
    while True:
        check_limits(page)
        shown += len(page.text.split("\n\n", 1)[1].splitlines())
        if not page.buttons() or "Older ›" not in [label for label, _ in page.buttons()[0]]:
            break
        press = await owner.press(page, "Older ›")
        page = await owner.wait_reply()
        await press.wait_answer()
    assert shown == 20


async def test_account_of_the_widest_partner_stays_within_limits(h: BotHarness) -> None:
    """/account puts a partner's channels, members, ledger and orders in one message."""
    acme = await h.new_partner("🚀" * 64, owner_id=101)
    names = [widest_name(i) for i in range(12)]
    await h.add_channels(acme.id, names, days=30)
    for name in names:
        await h.billing.set_auto_renew(acme.id, name, True, "support:900")
    await h.store.execute_raw("UPDATE channels SET billing = 'subscription'")
    for i in range(10):
        await h.grant(acme.id, 1, f"{i:03d}" + "🚀" * 197)
    for user_id in range(1_000_000_000, 1_000_000_030):  # 30 teammates
        invite = await h.billing.create_invite(acme.id, "support:900")
        await h.billing.redeem_invite(invite.code, user_id)
    account = await h.ask(h.support, f"/account {acme.id}")
    check_limits(account)
    lines = account.text.splitlines()
    assert lines[0].startswith("🚀" * 64 + f" (#{acme.id})")
    assert lines[1] == "Balance: 10 days"
    assert "Members (31):" in lines and "• 101: owner" in lines
    assert any(line.startswith("… and ") and line.endswith(" more: /channels") for line in lines)
    assert lines[-1] == "Partner commands now act on " + "🚀" * 64 + "."
