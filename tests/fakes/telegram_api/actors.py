"""The test-side actors: chats, users and groups as the test sees and drives them,
and the callback presses they make.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .records import BotMessage, CallbackAnswer, JSONDict, _ChatState

if TYPE_CHECKING:
    from .driver import FakeTelegram


class FakeChat:
    """A chat as the test sees it: the bot's messages to it, in order."""

    def __init__(self, server: FakeTelegram, state: _ChatState) -> None:
        self._server = server
        self._state = state
        self._cursor = 0

    @property
    def id(self) -> int:
        return self._state.id

    @property
    def chat(self) -> JSONDict:
        """The Chat JSON Telegram puts in updates."""
        return dict(self._state.json)

    @property
    def replies(self) -> list[BotMessage]:
        """Every message the bot sent or edited here (edits are separate events)."""
        return list(self._state.events)

    @property
    def actions(self) -> list[str]:
        """Chat actions (``typing``...) the bot sent here."""
        return list(self._state.actions)

    @property
    def deleted(self) -> list[int]:
        """Message ids deleted by the bot here."""
        return list(self._state.deleted)

    @property
    def last_reply(self) -> BotMessage | None:
        return self._state.events[-1] if self._state.events else None

    def message(self, message_id: int) -> BotMessage:
        """The current state of a bot message (after edits); LookupError if gone."""
        return self._server.bot_message(self.id, message_id)

    def pending_replies(self) -> list[BotMessage]:
        """Events not yet returned by :meth:`wait_reply`, without consuming them."""
        return list(self._state.events[self._cursor :])

    async def wait_reply(self, timeout: float = 5.0) -> BotMessage:  # noqa: ASYNC109
        """The next bot message (sent or edited) here that wait_reply has not returned yet."""
        (reply,) = await self.wait_replies(1, timeout=timeout)
        return reply

    async def wait_replies(self, count: int, timeout: float = 5.0) -> list[BotMessage]:  # noqa: ASYNC109
        """The next ``count`` bot messages here, waiting for them to arrive."""
        await self._server.wait_until(
            lambda: len(self._state.events) - self._cursor >= count,
            timeout=timeout,
            what=f"{count} bot message(s) to chat {self.id}",
        )
        replies = self._state.events[self._cursor : self._cursor + count]
        self._cursor += count
        return replies

    async def expect_no_reply(self, within: float = 0.3) -> None:
        """Assert there is no bot message here that :meth:`wait_reply` has not returned yet,
        and that none arrives within ``within`` seconds."""
        try:
            reply = await self.wait_reply(timeout=within)
        except AssertionError:
            return
        raise AssertionError(f"unexpected bot message to chat {self.id}: {reply.text!r}")


class FakeUser(FakeChat):
    """A Telegram user; as a chat it is the user's private chat with the bot (same id)."""

    def __init__(self, server: FakeTelegram, state: _ChatState, user: JSONDict) -> None:
        super().__init__(server, state)
        self.user = user
        self.sent: list[JSONDict] = []  # updates this user caused (messages, presses, ...)
        self.callback_answers: list[CallbackAnswer] = []
        self._answers_seen = 0

    @property
    def user_id(self) -> int:
        return int(self.user["id"])

    @property
    def first_name(self) -> str:
        return str(self.user["first_name"])

    @property
    def username(self) -> str | None:
        value = self.user.get("username")
        return None if value is None else str(value)

    @property
    def blocked_bot(self) -> bool:
        return self._state.forbidden is not None

    async def send(
        self,
        text: str,
        *,
        chat: FakeChat | None = None,
        entities: list[JSONDict] | None = None,
        reply_to: BotMessage | int | None = None,
    ) -> JSONDict:
        """Write ``text`` to the bot (in ``chat``, default the private chat); returns the
        update. Entities (bot_command, mention, url...) are detected like Telegram does unless
        given. In groups with privacy mode the update may not be delivered (see
        :attr:`FakeTelegram.undelivered`)."""
        return self._server.user_message(
            self, text, chat=chat, entities=entities, reply_to=reply_to
        )

    async def press(
        self, message: BotMessage | int, button: str, *, chat: FakeChat | None = None
    ) -> CallbackPress:
        """Press the inline button labelled (or with callback_data) ``button`` on the current
        state of ``message``; returns the press, whose answer can be awaited."""
        return self._server.press(self, message, button, chat=chat)

    async def press_data(
        self, message: BotMessage | int, data: str, *, chat: FakeChat | None = None
    ) -> CallbackPress:
        """Send a callback query with arbitrary ``data`` for ``message`` (a forged or stale
        button, as a modified client could)."""
        return self._server.press(self, message, data, chat=chat, raw=True)

    async def wait_callback_answer(self, timeout: float = 5.0) -> CallbackAnswer:  # noqa: ASYNC109
        """The first answer to this user's presses not yet returned by this method."""
        seen = self._answers_seen
        await self._server.wait_until(
            lambda: len(self.callback_answers) > seen,
            timeout=timeout,
            what=f"an answerCallbackQuery for user {self.user_id}",
        )
        self._answers_seen = seen + 1
        return self.callback_answers[seen]

    async def block_bot(self) -> JSONDict:
        """Block the bot: from now on sends to this user get 403; returns the my_chat_member
        update Telegram delivers."""
        return self._server.set_blocked(self, blocked=True)

    async def unblock_bot(self) -> JSONDict:
        """Unblock (restart) the bot; returns the my_chat_member update."""
        return self._server.set_blocked(self, blocked=False)

    def deactivate(self) -> None:
        """The account is deleted: sends get 403 ``Forbidden: user is deactivated``."""
        self._state.forbidden = "Forbidden: user is deactivated"


class FakeGroup(FakeChat):
    """A group or supergroup the bot is a member of."""

    @property
    def title(self) -> str:
        return str(self._state.json.get("title", ""))

    def remove_bot(self) -> None:
        """The bot is kicked: sends here get 403 like Telegram."""
        kind = "supergroup chat" if self._state.type == "supergroup" else "group chat"
        self._state.forbidden = f"Forbidden: bot was kicked from the {kind}"


@dataclass
class CallbackPress:
    """A callback query a user sent; the bot's answer arrives later."""

    query_id: str
    data: str
    chat_id: int
    message_id: int
    update: JSONDict
    _server: FakeTelegram = field(repr=False)

    @property
    def answer(self) -> CallbackAnswer | None:
        query = self._server._queries.get(self.query_id)
        return query.answer if query else None

    async def wait_answer(self, timeout: float = 5.0) -> CallbackAnswer:  # noqa: ASYNC109
        await self._server.wait_until(
            lambda: self.answer is not None,
            timeout=timeout,
            what=f"answerCallbackQuery for query {self.query_id} (data {self.data!r})",
        )
        answer = self.answer
        assert answer is not None
        return answer
