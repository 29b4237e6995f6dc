"""The access matrix: only linked members see or change their partner's data; support commands
exist only for support.

Every command that takes a channel or a partner is run by a member of another partner, by an
unlinked user and (support commands) by non-support users. Each run changes nothing (a
snapshot of the whole database before and after) and reveals nothing: a foreign channel is
answered exactly like one that exists nowhere (the two reply texts are compared), a support
command exactly like an unknown command.

One bot and database serve the whole module; each case uses channel names of its own.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from bot import callbacks, texts
from bot.callbacks import CancelDelete, ConfirmDelete, ListKind, Page
from tests.fakes.telegram_api import FakeUser
from tests.integration.bot_harness import Account, BotHarness, bot_harness

pytestmark = pytest.mark.asyncio(loop_scope="module")

VICTIM = "Victim Holdings"
VICTIM_DAYS = 7_777


@dataclass
class World:
    h: BotHarness
    victim: Account
    attacker: Account  # a partner of its own: its owner is "a member of another partner"
    unlinked: FakeUser
    names: itertools.count[int]

    def actor(self, kind: str) -> FakeUser:
        return self.attacker.owner if kind == "other-partner" else self.unlinked

    def fresh_name(self) -> str:
        return f"vch-{next(self.names)}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with bot_harness(tmp_path_factory.mktemp("access")) as h:
        victim = await h.new_partner(VICTIM, owner_id=101, days=VICTIM_DAYS)
        await h.link(102, victim.id, "Vic")
        attacker = await h.new_partner("Attacker Ltd", owner_id=201, days=100)
        await h.add_channel(attacker.id, "mine", days=30)
        unlinked = h.tg.user(301, "Una")
        yield World(h, victim, attacker, unlinked, itertools.count(1))


def assert_nothing_of_the_victim(text: str) -> None:
    assert VICTIM not in text and "Victim" not in text and "vic" not in text.lower()


def assert_reveals_nothing(text: str) -> None:
    """Not the victim's name, and no balance, channel or day count of anyone."""
    assert_nothing_of_the_victim(text.replace("vch-", ""))
    assert "Balance" not in text and "days left" not in text and "active until" not in text


CHANNEL_COMMANDS = [
    "/allocate {ch} 10",
    "/allocate {ch} 100000",
    "/delete {ch}",
    "/autorenew {ch} on",
    "/autorenew {ch} off",
    "/subscribe {ch} monthly",
]


@pytest.mark.parametrize("actor", ["other-partner", "unlinked"])
@pytest.mark.parametrize("template", CHANNEL_COMMANDS)
async def test_foreign_channel_reads_like_a_nonexistent_one(
    world: World, actor: str, template: str
) -> None:
    h, user = world.h, world.actor(actor)
    name = world.fresh_name()
    command = template.format(ch=name)

    nowhere = await h.ask(user, command)  # no partner has a channel of that name yet
    await h.add_channel(world.victim.id, name, days=40)
    before = await h.snapshot()

    foreign = await h.ask(user, command)

    assert foreign.text == nowhere.text
    assert foreign.buttons() == nowhere.buttons() == []
    assert "\n" not in foreign.text or foreign.text == texts.NOT_LINKED
    assert_reveals_nothing(foreign.text)
    assert await h.snapshot() == before
    # The victim's own members still see it untouched.
    listing = await h.ask(world.victim.owner, "/channels")
    assert f"• {name}: active until 2030-02-23, 40 days left" in listing.text


SUPPORT_TEMPLATES = [
    "/account {p}",
    "/credit {p} 10 free days",
    "/credit {p} -10 take them",
    "/setprice {p} 1.00",
    "/invoice {p}",
    "/invoice {p} 75",
]
# The victim partner is named, or given by id (it is #1: created first).
SUPPORT_COMMANDS = [
    "/partners",
    "/newpartner Evil Twin",
    *(t.format(p=VICTIM) for t in SUPPORT_TEMPLATES),
    *(t.format(p=1) for t in SUPPORT_TEMPLATES),
]


@pytest.mark.parametrize("actor", ["other-partner", "unlinked", "victim-member"])
@pytest.mark.parametrize("command", SUPPORT_COMMANDS)
async def test_support_commands_read_like_unknown_commands(
    world: World, actor: str, command: str
) -> None:
    h = world.h
    assert world.victim.id == 1
    user = world.victim.owner if actor == "victim-member" else world.actor(actor)
    _, _, args = command.partition(" ")
    unknown = await h.ask(user, f"/frobnicate {args}".strip())
    before = await h.snapshot()

    reply = await h.ask(user, command)

    assert reply.text == unknown.text == texts.UNKNOWN
    assert reply.buttons() == []
    assert await h.snapshot() == before


async def test_support_command_by_a_non_support_user_sets_no_support_menu(world: World) -> None:
    h = world.h
    await h.ask(world.unlinked, "/credit 1 5 please")
    await h.ask(world.attacker.owner, "/partners")
    unlinked_menu = h.tg.commands_for({"type": "chat", "chat_id": world.unlinked.user_id})
    attacker_menu = h.tg.commands_for({"type": "chat", "chat_id": world.attacker.owner.user_id})
    assert unlinked_menu is None
    assert attacker_menu is not None
    assert "partners" not in {c["command"] for c in attacker_menu}


async def test_partner_lists_show_only_the_members_own_partner(world: World) -> None:
    h, owner = world.h, world.attacker.owner
    for command in ("/balance", "/channels", "/history"):
        reply = await h.ask(owner, command)
        assert_nothing_of_the_victim(reply.text)
        assert "vch-" not in reply.text
    listing = await h.ask(owner, "/channels")
    assert listing.text.startswith("Channels of Attacker Ltd: 1")


@pytest.mark.parametrize("actor", ["other-partner", "unlinked"])
async def test_partner_commands_without_a_channel_argument(world: World, actor: str) -> None:
    """Unlinked users learn how to get linked; nothing about any partner."""
    h, user = world.h, world.actor(actor)
    before = await h.snapshot()
    for command in ("/balance", "/channels", "/history", "/alerts 5", "/invite", "/topup 30"):
        reply = await h.ask(user, command)
        assert_nothing_of_the_victim(reply.text)
        if actor == "unlinked":
            assert reply.text == texts.NOT_LINKED
    if actor == "unlinked":
        assert await h.snapshot() == before


async def test_another_partners_invite_does_not_move_a_linked_member(world: World) -> None:
    h = world.h
    invite = await h.billing.create_invite(world.victim.id, "support:900")
    before = await h.snapshot()
    reply = await h.ask(world.attacker.owner, f"/start {invite.code}")
    assert reply.text == (
        "You are already linked to a partner account. /help shows what you can do."
    )
    assert await h.snapshot() == before
    # The invite is still good for the person it was meant for.
    newcomer = await h.ask(h.tg.user(103, "Val"), f"/start {invite.code}")
    assert newcomer.text.startswith(f"Welcome! You are linked to {VICTIM} as member.")


# ------------------------------------------------------------------------------ forged buttons


async def _victim_channel(world: World) -> tuple[int, int]:
    h = world.h
    name = world.fresh_name()
    channel_id = await h.add_channel(world.victim.id, name, days=20)
    views = await h.billing.channel_views(world.victim.id)
    (view,) = [v for v in views if v.channel.id == channel_id]
    return channel_id, callbacks.stamp(view.channel.active_until)


@pytest.mark.parametrize("actor", ["other-partner", "unlinked"])
async def test_forged_buttons_for_another_partner_do_nothing(world: World, actor: str) -> None:
    h, user = world.h, world.actor(actor)
    channel_id, until = await _victim_channel(world)
    victim_id = world.victim.id
    own = await h.ask(user, "/help")  # any message of the bot in the user's chat to press on
    forged = [
        ConfirmDelete(victim_id, channel_id, until),
        CancelDelete(victim_id, channel_id),
        Page(ListKind.CHANNELS, victim_id, 0),
        Page(ListKind.HISTORY, victim_id, 0),
        Page(ListKind.PARTNERS, 0, 0),
    ]
    garbage = await user.press_data(own, "not:our:data")
    expired = (await garbage.wait_answer()).text
    assert expired == texts.BUTTON_EXPIRED
    before = await h.snapshot()
    for cb in forged:
        if isinstance(cb, CancelDelete):
            continue  # "keep it" changes nothing for anyone; checked below not to reveal
        press = await user.press_data(own, callbacks.encode(cb))
        assert (await press.wait_answer()).text == expired, cb
    await h.tg.wait_idle(quiet=0.02)
    assert user.message(own.message_id).text == own.text  # never edited
    assert await h.snapshot() == before
    await h.verify()


async def test_foreign_channel_id_in_own_confirm_reads_like_a_missing_one(world: World) -> None:
    """A member forges a confirm button with their own partner id and the victim's channel id:
    answered exactly as for a channel id that exists nowhere."""
    h, user = world.h, world.attacker.owner
    channel_id, until = await _victim_channel(world)
    answers = []
    texts_after = []
    for target in (channel_id, 9_999_999):
        own = await h.ask(user, "/help")
        before = await h.snapshot()
        press = await user.press_data(
            own, callbacks.encode(ConfirmDelete(world.attacker.id, target, until))
        )
        answers.append((await press.wait_answer()).text)
        edited = await user.wait_reply()
        texts_after.append(edited.text)
        await h.tg.wait_idle(quiet=0.02)
        assert await h.snapshot() == before
    assert answers[0] == answers[1] == "That channel is already gone."
    assert texts_after[0] == texts_after[1]
    assert_reveals_nothing(texts_after[0])
    await h.verify()
