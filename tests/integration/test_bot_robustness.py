"""The bot under failure and odd deliveries: one error handler, per-user order, an update
delivered twice, edited commands, command menus per user, and groups (money stays private).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot import callbacks, texts
from bot.app import build_application
from bot.callbacks import ConfirmDelete, ListKind, Page
from bot.commands import COMMANDS, Audience
from core.model import TransferKind
from core.service import BillingService
from tests.fakes.html_check import detect_entities
from tests.integration.bot_harness import (
    APOLOGY,
    OTHER_SUPPORT_ID,
    SUPPORT_ID,
    Account,
    BotHarness,
    bot_harness,
    started_application,
)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[BotHarness]:
    async with bot_harness(tmp_path) as harness:
        yield harness


@pytest.fixture
async def acme(h: BotHarness) -> Account:
    account = await h.new_partner("Acme", owner_id=101, days=100)
    await h.add_channel(account.id, "shop")
    return account


def boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("database exploded")


# ------------------------------------------------------------------------------ error handler


async def test_unexpected_error_gets_an_apology_with_a_reference_and_the_bot_goes_on(
    h: BotHarness, acme: Account, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="bot.errors")
    monkeypatch.setattr(BillingService, "summary", boom)
    sorry = await h.ask(acme.owner, "/balance")
    found = APOLOGY.match(sorry.text)
    assert found, sorry.text
    assert "exploded" not in sorry.text and "Traceback" not in sorry.text

    # Logged once, with the same reference, the update and the user; never the token.
    (record,) = [r for r in caplog.records if r.name == "bot.errors"]
    assert record.ref == found.group(1)  # type: ignore[attr-defined]
    assert record.user_id == acme.owner.user_id  # type: ignore[attr-defined]
    assert isinstance(record.exc_info and record.exc_info[1], RuntimeError)
    assert h.tg.token not in record.getMessage()

    # The next updates, from this user and others, are served as usual.
    assert (await h.ask(acme.owner, "/channels")).text.startswith("Channels of Acme: 1")
    monkeypatch.undo()
    assert (await h.ask(acme.owner, "/balance")).text.startswith("Balance: 100 days")
    again = await h.ask(acme.owner, "/allocate shop 10")
    assert "Balance: 90 days" in again.text
    await h.verify()


async def test_each_failure_gets_its_own_reference(
    h: BotHarness, acme: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(BillingService, "allocate_days", boom)
    before = await h.snapshot()
    refs = set()
    for _ in range(3):
        reply = await h.ask(acme.owner, "/allocate shop 10")
        found = APOLOGY.match(reply.text)
        assert found, reply.text
        refs.add(found.group(1))
    assert len(refs) == 3
    assert await h.snapshot() == before


async def test_unexpected_error_on_a_button_answers_the_press(
    h: BotHarness, acme: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = acme.owner
    ask = await h.ask(owner, "/delete shop")
    before = await h.snapshot()
    monkeypatch.setattr(BillingService, "delete_channel", boom)
    press = await owner.press(ask, "Delete it")
    answer = await press.wait_answer()
    assert answer.text is not None
    assert answer.text.startswith("Sorry, something went wrong (ref ") and len(answer.text) < 200
    await h.tg.wait_idle(quiet=0.02)
    assert await h.snapshot() == before
    assert owner.message(ask.message_id).buttons() == ask.buttons()  # can be pressed again
    monkeypatch.undo()
    press = await owner.press(ask, "Delete it")
    assert (await press.wait_answer()).text == "Deleted."
    await h.verify()


# python-telegram-bot's own rate limiter reads RetryAfter.retry_after, which warns in 22.x.
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_a_reply_refused_by_telegram_is_retried_after_retry_after(
    h: BotHarness, acme: Account
) -> None:
    h.tg.fail_retry_after("sendMessage", retry_after=1, chat_id=acme.owner.user_id, times=1)
    started = time.monotonic()
    reply = await h.ask(acme.owner, "/balance")
    assert reply.text.startswith("Balance: 100 days")
    assert time.monotonic() - started >= 1.0  # waited as told, then sent once
    assert len([c for c in h.tg.calls_to("sendMessage") if c["chat_id"] == 101]) == 3  # +welcome


# ------------------------------------------------------------------------------ order, twice


async def test_updates_of_one_user_are_handled_in_order(h: BotHarness, acme: Account) -> None:
    owner = acme.owner
    await h.drain(owner)
    # Sent without waiting: the bot receives them in one batch.
    sent = []
    for i in range(15):
        sent.append(f"/newchannel c{i}")
        sent.append(f"/allocate c{i} 2")
        sent.append("/balance")
    for text in sent:
        await owner.send(text)
    replies = await owner.wait_replies(len(sent), timeout=10)
    balance = 100
    for i in range(15):
        created, allocated, shown = replies[3 * i : 3 * i + 3]
        balance -= 2
        assert created.text.startswith(f"Channel c{i} created."), created.text
        assert allocated.text.splitlines()[:2] == [
            f"Gave 2 days to c{i}.",
            f"Balance: {balance} days",
        ]
        assert shown.text.startswith(f"Balance: {balance} days\nChannels: {i + 2} ")
    await h.verify()


async def test_two_users_of_one_partner_each_in_order(h: BotHarness, acme: Account) -> None:
    mia = await h.link(102, acme.id)
    owner = acme.owner
    for i in range(10):
        await owner.send(f"/newchannel o{i}")
        await mia.send(f"/newchannel m{i}")
    mine = await owner.wait_replies(10)
    hers = await mia.wait_replies(10)
    assert [r.text.split(" created.")[0] for r in mine] == [f"Channel o{i}" for i in range(10)]
    assert [r.text.split(" created.")[0] for r in hers] == [f"Channel m{i}" for i in range(10)]


async def test_an_update_delivered_twice_does_its_work_once(h: BotHarness, acme: Account) -> None:
    owner = acme.owner
    await h.drain(owner)
    for text in ("/allocate shop 30", "/newchannel twice", "/alerts 45"):
        update = h.tg.user_message(owner, text)
        # Telegram delivers the same update (same update_id) again, e.g. after a lost confirm.
        h.tg.push_update({"update_id": update["update_id"], "message": update["message"]})
    replies = await owner.wait_replies(6)
    await h.tg.wait_idle(quiet=0.02)
    # Both deliveries are answered alike, from the first outcome.
    assert replies[0].text == replies[1].text
    assert "Balance: 70 days" in replies[0].text
    assert replies[2].text == replies[3].text
    assert replies[2].text.startswith("Channel twice created.")
    assert await h.balance(acme.id) == 70
    assert await h.transfers_of(acme.id, TransferKind.ALLOCATION) == 1
    names = [v.channel.name for v in await h.billing.channel_views(acme.id)]
    assert names == ["shop", "twice"]
    await h.verify()


async def test_an_update_redelivered_to_a_restarted_bot_does_its_work_once(
    h: BotHarness, acme: Account
) -> None:
    """The bot handled an update, then stopped before Telegram learnt so; the next run of
    the bot (a new Application on the same database) gets the same update again."""
    owner = acme.owner
    await h.drain(owner)
    update = h.tg.user_message(owner, "/allocate shop 30")
    first = await owner.wait_reply()
    assert "Balance: 70 days" in first.text
    await h.tg.wait_idle(quiet=0.02)
    assert h.app.updater is not None
    await h.app.updater.stop()
    await h.app.stop()

    again = build_application(
        token=h.tg.token,
        api_base_url=h.tg.base_url,
        billing=h.billing,
        support_ids=frozenset({SUPPORT_ID}),
        tz=h.tz,
    )
    h.tg.push_update({"update_id": update["update_id"], "message": update["message"]})
    async with started_application(again):
        second = await owner.wait_reply()
        assert second.text == first.text
        reply = await h.ask(owner, "/balance")
        assert reply.text.startswith("Balance: 70 days")
    assert await h.transfers_of(acme.id, TransferKind.ALLOCATION) == 1
    await h.verify()


async def test_an_edited_command_does_nothing(h: BotHarness, acme: Account) -> None:
    owner = acme.owner
    sent = await owner.send("/allocate shop 1")
    await owner.wait_reply()
    await h.tg.wait_idle(quiet=0.02)
    before = await h.snapshot()
    for text in ("/allocate shop 30", "/newchannel edited", "/balance", "/frobnicate", "hi"):
        edited = dict(sent["message"], text=text, edit_date=int(time.time()))
        edited["entities"] = detect_entities(text)
        h.tg.push_update({"edited_message": edited})
    # A later message from the same user: its updates run in order, so a reply to any
    # edit would have arrived before this one's.
    await owner.send("/balance")
    first = await owner.wait_reply()
    assert first.text.startswith("Balance: 99 days"), first.text  # no edit allocated
    assert owner.pending_replies() == []
    assert await h.snapshot() == before


# ------------------------------------------------------------------------------------- menus


def names(commands: list[dict[str, str]] | None) -> list[str] | None:
    return None if commands is None else [c["command"] for c in commands]


def menu_of(*audiences: Audience) -> list[str]:
    return [c.name for c in COMMANDS if c.audience in audiences]


def chat_menu(h: BotHarness, user_id: int) -> list[str] | None:
    return names(h.tg.commands_for({"type": "chat", "chat_id": user_id}))


async def test_command_menus_per_user(h: BotHarness) -> None:
    # Before anyone writes: everyone sees /start and /help; nobody has a menu of their own.
    assert names(h.tg.commands_for({"type": "default"})) == ["start", "help"]
    assert h.tg.commands == {("default", None, None, ""): h.tg.commands_for()}

    stranger = h.tg.user(301, "Sid")
    await h.ask(stranger, "/help")
    await h.ask(stranger, "/balance")
    assert chat_menu(h, 301) is None  # the default fits

    acme = await h.new_partner("Acme", owner_id=101, via_bot=True)
    everyone, partner = menu_of(Audience.EVERYONE), menu_of(Audience.PARTNER)
    owner_menu = menu_of(Audience.EVERYONE, Audience.PARTNER, Audience.OWNER)
    assert chat_menu(h, 101) == owner_menu
    assert "invite" in owner_menu and "partners" not in owner_menu

    await h.link(102, acme.id)
    assert chat_menu(h, 102) == everyone + partner
    assert "invite" not in (chat_menu(h, 102) or [])

    # Support gets the full menu once they have written (new_partner above made them write);
    # support who never wrote get none, and no failing call was made for them.
    assert chat_menu(h, SUPPORT_ID) == [c.name for c in COMMANDS]
    assert chat_menu(h, OTHER_SUPPORT_ID) is None
    other = h.tg.user(OTHER_SUPPORT_ID, "Otto")
    await h.ask(other, "/partners")
    assert chat_menu(h, OTHER_SUPPORT_ID) == [c.name for c in COMMANDS]

    # Set once per user, not on every message.
    for _ in range(3):
        await h.ask(h.support, "/help")
    support_calls = [
        c for c in h.tg.calls_to("setMyCommands") if c["scope"].get("chat_id") == SUPPORT_ID
    ]
    assert len(support_calls) == 1
    assert h.tg.errors == []


# ------------------------------------------------------------------------------------ groups


async def test_money_only_in_private_chats(h: BotHarness, acme: Account) -> None:
    group = h.tg.group(-1001234567890, "Acme team")
    owner = acme.owner
    await h.ask(owner, "/allocate shop 30")  # balance 70, shop running
    invite = await h.billing.create_invite(acme.id, "support:900")
    before = await h.snapshot()
    menus_before = dict(h.tg.commands)
    for user, text in [
        (owner, "/balance"),
        (owner, "/balance@partner_test_bot"),
        (owner, "/channels"),
        (owner, "/history"),
        (owner, "/allocate shop 5"),
        (owner, "/delete shop"),
        (owner, "/newchannel group-made"),
        (owner, "/alerts 5"),
        (owner, "/invite"),
        (owner, "/help"),
        (h.tg.user(301, "Sid"), f"/start {invite.code}"),  # the code stays unused
        (h.support, "/partners"),
        (h.support, "/account Acme"),
        (h.support, "/credit Acme 10 in a group"),
        (h.support, "/setprice Acme 1.00"),
    ]:
        reply = await h.ask(user, text, chat=group)
        assert reply.chat_id == group.id
        assert reply.text == texts.PRIVATE_ONLY, (text, reply.text)
        assert reply.buttons() == []
    assert await h.snapshot() == before
    assert h.tg.commands == menus_before  # no menus set from a group

    # Support commands by others read as unknown, in groups too; unknown commands and
    # chatter get no answer at all there.
    assert (await h.ask(owner, "/partners", chat=group)).text == texts.UNKNOWN
    await h.silent(owner, "/frobnicate", chat=group)
    await h.silent(owner, "/balance@some_other_bot", chat=group)
    # In the private chat, the same user sees the money.
    assert (await h.ask(owner, "/balance")).text.startswith("Balance: 70 days")


async def test_forged_buttons_in_a_group_show_no_money(h: BotHarness, acme: Account) -> None:
    """callback_data comes from the client: a member can attach any data to any bot message in
    a group. Lists and deletions answer only in private chats, like the commands."""
    group = h.tg.group(-1001234567890, "Acme team")
    owner = acme.owner
    await h.ask(owner, "/allocate shop 30")
    views = await h.billing.channel_views(acme.id)
    until = callbacks.stamp(views[0].channel.active_until)
    notice = await h.ask(owner, "/balance", chat=group)  # the bot's message in the group
    before = await h.snapshot()
    for cb in (
        Page(ListKind.CHANNELS, acme.id, 0),
        Page(ListKind.HISTORY, acme.id, 0),
        ConfirmDelete(acme.id, views[0].channel.id, until),
    ):
        press = await owner.press_data(notice, callbacks.encode(cb), chat=group)
        assert (await press.wait_answer()).text == texts.BUTTON_EXPIRED, cb
    await h.tg.wait_idle(quiet=0.02)
    assert group.message(notice.message_id).text == texts.PRIVATE_ONLY  # never edited
    assert await h.snapshot() == before
