"""One update as the handlers see it: who asks, for which partner, with what text.

Access rules live here: partner commands need a linked member (or support acting on a
chosen partner); support commands need a support id and otherwise read as unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

from telegram import InlineKeyboardMarkup, Message, Update

from bot.deps import BotDeps, Context, deps_of
from core.model import Member, Role

SELECTED = "partner_id"  # user_data key: the partner a support agent acts on


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
        return cls(update, context, deps, user.id, member, user.id in deps.support_ids)

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
        _, _, rest = text.partition(" ")
        return rest.strip() if text.startswith("/") else text.strip()

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
        # Parse mode, quoting and link previews come from the application's Defaults.
        return await message.reply_text(text, reply_markup=markup)
