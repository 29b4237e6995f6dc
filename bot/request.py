"""One update as the handlers see it: who asks, for which partner, with what text.

Access rules live here: partner commands need a linked member (or support acting on a
chosen partner); support commands need a support id and otherwise read as unknown.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from telegram import InlineKeyboardMarkup, Message, MessageEntity, Update
from telegram.error import BadRequest, NetworkError

from bot.deps import BotDeps, Context, deps_of
from bot.limits import Sender
from core.model import Member, Role

SELECTED = "partner_id"  # user_data key: the partner a support agent acts on
# Pauses between attempts at an answer while Telegram fails (5xx, a dropped connection,
# a timeout). The work is done by then: without the answer the error handler would ask
# the user to try again, and a retried /allocate allocates twice. After a timeout
# Telegram may have delivered the answer already; the same answer twice is the lesser harm.
REPLY_RETRY_PAUSES = (0.5, 1.0, 2.0)


@dataclass
class Request:
    update: Update
    context: Context
    deps: BotDeps
    user_id: int
    member: Member | None
    support: bool

    @classmethod
    async def of(cls, update: Update, context: Context) -> Request:
        deps = deps_of(context)
        user = update.effective_user
        assert user is not None  # handlers are registered for user updates only
        member = await deps.billing.member(user.id)
        chat = update.effective_chat
        if member is not None and member.unreachable and chat is not None and chat.id == user.id:
            # Writing to the bot in private means they unblocked it: notices reach them again.
            await deps.billing.set_member_reachable(user.id, True, f"user:{user.id}")
            member = replace(member, unreachable=False)
        support = user.id in deps.support_ids
        if deps.flood is not None and not support:
            # The read is done: the flood gate need not do it again for this user.
            deps.flood.learn(user.id, Sender.STRANGER if member is None else Sender.MEMBER)
        return cls(update, context, deps, user.id, member, support)

    @property
    def key(self) -> str:
        """Idempotency key: the same update processed twice does its work once."""
        return f"tg:{self.update.update_id}"

    @property
    def actor(self) -> str:
        return f"support:{self.user_id}" if self.support else f"user:{self.user_id}"

    @property
    def owner(self) -> bool:
        return self.member is not None and self.member.role is Role.OWNER

    @property
    def private(self) -> bool:
        chat = self.update.effective_chat
        return chat is not None and chat.type == "private"

    def args_text(self) -> str:
        """Everything after the command word (names may contain spaces)."""
        message = self.update.effective_message
        text = (message.text or "") if message else ""
        if message is None or not text.startswith("/"):
            return text.strip()
        # The command is what Telegram marked as one (ASCII, so UTF-16 offsets are string
        # offsets): "/newchannel\nshop berlin" or "/newchannel:x y" must not lose or keep
        # a word depending on where the first plain space happens to be.
        command = next(
            (e for e in message.entities
             if e.type == MessageEntity.BOT_COMMAND and e.offset == 0),
            None,
        )
        if command is None:
            _, _, rest = text.partition(" ")
        else:
            rest = text[command.length:]
        return rest.strip()

    def partner_id(self) -> int | None:
        """The partner this request acts on: support's choice, else the member's own."""
        if self.support:
            chosen = (self.context.user_data or {}).get(SELECTED)
            if isinstance(chosen, int):
                return chosen
        return self.member.partner_id if self.member else None

    def may_access(self, partner_id: int) -> bool:
        return self.support or (self.member is not None and self.member.partner_id == partner_id)

    def choose(self, partner_id: int) -> None:
        if self.context.user_data is not None:
            self.context.user_data[SELECTED] = partner_id

    async def reply(self, text: str, markup: InlineKeyboardMarkup | None = None) -> Message:
        message = self.update.effective_message
        assert message is not None
        for pause in REPLY_RETRY_PAUSES:
            try:
                # Parse mode, quoting and link previews come from the application's Defaults.
                return await message.reply_text(text, reply_markup=markup)
            except BadRequest:
                raise  # the answer itself is wrong: sending it again changes nothing
            except NetworkError:
                await asyncio.sleep(pause)
        return await message.reply_text(text, reply_markup=markup)
