"""An update handled again after a crash (bot/poller.py replays what was handled but not
yet marked handled) repeats its answer and changes nothing.

Each command that moves days or links people is handled through the whole bot, then the
very same update (same update id) is handled a second time, as a replay after a restart
does: the second answer is the first one again and the database is as the first left it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from telegram import Update

from core.model import Role
from tests.fakes.telegram_api import BotMessage, FakeUser
from tests.integration.bot_harness import QUIET, BotHarness, bot_harness


async def send(h: BotHarness, user: FakeUser, text: str) -> tuple[dict[str, Any], BotMessage]:
    await h.drain(user)
    update = await user.send(text)
    reply = await user.wait_reply()
    await h.tg.wait_idle(quiet=QUIET)
    return update, reply


async def replay(h: BotHarness, user: FakeUser, update: dict[str, Any]) -> list[BotMessage]:
    """Handle `update` once more, as the poller does with an update left unmarked."""
    await h.drain(user)
    await h.app.process_update(Update.de_json(update, h.app.bot))
    await h.tg.wait_idle(quiet=QUIET)
    return user.pending_replies()


async def test_replayed_write_commands_answer_the_same_and_change_nothing(
    tmp_path: Path,
) -> None:
    async with bot_harness(tmp_path) as h:
        acme = await h.new_partner("Acme", owner_id=101, days=50)
        owner = acme.owner
        invite = await h.billing.create_invite(acme.id, "test")
        mia = h.tg.user(102, "Mia")
        cases = [
            (owner, "/newchannel shop"),
            (owner, "/allocate shop 5"),
            (h.support, "/credit Acme 7 replay test"),
            (mia, f"/start {invite.code}"),
        ]
        for user, text in cases:
            update, first = await send(h, user, text)
            after_first = await h.snapshot()

            again = await replay(h, user, update)

            assert [m.text for m in again] == [first.text], text
            assert await h.snapshot() == after_first, text
        member = await h.billing.member(102)
        assert member is not None and member.role is Role.MEMBER
        assert await h.balance(acme.id) == 50 - 5 + 7
        await h.verify()


async def test_a_replayed_delete_confirmation_deletes_once(tmp_path: Path) -> None:
    async with bot_harness(tmp_path) as h:
        acme = await h.new_partner("Acme", owner_id=101, days=50)
        owner = acme.owner
        await h.add_channel(acme.id, "shop", days=10)
        _, prompt = await send(h, owner, "/delete shop")
        press = await owner.press(prompt, "Delete it")
        assert (await press.wait_answer()).text == "Deleted."
        deleted = await owner.wait_reply()
        assert deleted.text.startswith("Channel shop deleted.")
        await h.tg.wait_idle(quiet=QUIET)
        after_first = await h.snapshot()
        balance = await h.balance(acme.id)
        answers = len(owner.callback_answers)

        await h.app.process_update(Update.de_json(press.update, h.app.bot))
        await h.tg.wait_idle(quiet=QUIET)

        assert await h.snapshot() == after_first
        # The message already shows the outcome (the same edit again changes nothing);
        # the query, answered already, cannot be answered twice (Telegram refuses): that
        # is no error and no apology.
        assert owner.pending_replies() == []
        assert h.tg.bot_message(deleted.chat_id, deleted.message_id).text == deleted.text
        assert len(owner.callback_answers) == answers
        assert h.error_handler_runs == []
        assert h.errors_except("query is too old", "message is not modified") == []
        assert await h.balance(acme.id) == balance
        await h.verify()
