"""A fake Telegram Bot API server on loopback, and the driver tests use to play the users.

The bot under test runs its real python-telegram-bot network code against this server::

    async with FakeTelegram() as tg:
        app = tg.application_builder().build()          # token, base_url, base_file_url set
        app.add_handler(CommandHandler("balance", on_balance))
        ann = tg.user(42, first_name="Ann")
        async with running_application(app):          # initialize, start, start_polling
            await ann.send("/balance")
            reply = await ann.wait_reply()
            assert reply.text == "You have 30 days"
            press = await ann.press(reply, "Renew")
            assert (await press.wait_answer()).text == "Done"

What it does like Telegram: URL layout ``/bot<token>/<method>`` (method names
case-insensitive); form, multipart, JSON and GET parameters; the Bot API envelope
(``ok``/``result`` or ``error_code``/``description``/``parameters``); long polling with
confirm-by-offset and 409 for a competing poller; Telegram's validation and error descriptions
for the methods it implements; parse modes (via :mod:`.html_check`); fault injection (429 with
``retry_after``, 403, 5xx, delays, dropped connections) and an optional flood-limit mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import re
import socket
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from aiohttp import web

from .html_check import (
    EntityParseError,
    FormattedText,
    UnsupportedParseMode,
    detect_entities,
    format_text,
    utf16_len,
)

if TYPE_CHECKING:
    from telegram import Bot
    from telegram.ext import Application
    from telegram.ext._applicationbuilder import InitApplicationBuilder

JSONDict = dict[str, Any]

__all__ = [
    "ApiCall",
    "ApiError",
    "BotMessage",
    "CallbackAnswer",
    "CallbackPress",
    "FakeChat",
    "FakeGroup",
    "FakeTelegram",
    "FakeUser",
    "RateLimits",
    "running_application",
]

MAX_MESSAGE_LENGTH = 4096
MAX_CALLBACK_DATA_BYTES = 64
DEFAULT_TOKEN = "123456789:AAFakeTokenForTestsOnly_0123456789ab"

ALL_UPDATE_TYPES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "message_reaction",
        "message_reaction_count",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
    }
)
# What Telegram sends when allowed_updates was never given (or given as an empty list).
DEFAULT_UPDATE_TYPES = ALL_UPDATE_TYPES - {
    "chat_member",
    "message_reaction",
    "message_reaction_count",
}

# Methods that count against Telegram's flood limits in rate-enforcement mode.
LIMITED_METHODS = frozenset(
    {"sendMessage", "editMessageText", "editMessageReplyMarkup", "editMessageCaption"}
)

CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

INLINE_BUTTON_ACTIONS = (
    "callback_data",
    "url",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "callback_game",
    "pay",
    "web_app",
    "copy_text",
)

_JSON_PARAMS = frozenset(
    {
        "reply_markup",
        "scope",
        "commands",
        "entities",
        "caption_entities",
        "allowed_updates",
        "link_preview_options",
        "reply_parameters",
        "menu_button",
        "media",
        "results",
        "prices",
        "rights",
        "permissions",
        "reaction",
    }
)
_INT_PARAMS = frozenset(
    {
        "chat_id",
        "message_id",
        "offset",
        "limit",
        "timeout",
        "user_id",
        "message_thread_id",
        "cache_time",
        "reply_to_message_id",
        "max_connections",
        "from_chat_id",
    }
)
_BOOL_PARAMS = frozenset(
    {
        "show_alert",
        "disable_notification",
        "protect_content",
        "drop_pending_updates",
        "allow_sending_without_reply",
        "disable_web_page_preview",
        "allow_paid_broadcast",
    }
)

_TOKEN_SHAPE = re.compile(r"\d+:[A-Za-z0-9_-]+")
_COMMAND_SHAPE = re.compile(r"[a-z0-9_]{1,32}")
_BOT_COMMAND = re.compile(r"/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]{3,32}))?")

_NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n"
    "</body>\r\n</html>\r\n"
)


# ------------------------------------------------------------------------------------------------
# Records and value objects


class ApiCall(NamedTuple):
    """One Bot API request as the server decoded it (JSON-valued parameters parsed)."""

    method: str
    params: JSONDict


@dataclass(frozen=True)
class ApiError:
    """A non-2xx answer the server gave."""

    method: str
    params: JSONDict
    status: int
    description: str


@dataclass(frozen=True)
class CallbackAnswer:
    """What the bot passed to ``answerCallbackQuery``."""

    query_id: str
    text: str | None
    show_alert: bool
    url: str | None
    cache_time: int


@dataclass
class BotMessage:
    """A message the bot sent or edited, as one event in a chat (a snapshot).

    ``text``/``entities`` are what Telegram stores and returns (markup parsed, trimmed);
    ``source_text`` and ``parse_mode`` are what the bot sent. ``reply_markup`` is the markup the
    bot attached, of any kind (inline keyboards also appear in ``data``, the Message JSON).
    """

    chat_id: int
    message_id: int
    kind: str  # "sent" or "edited"
    method: str
    text: str
    entities: list[JSONDict]
    reply_markup: JSONDict | None
    source_text: str
    parse_mode: str | None
    params: JSONDict
    data: JSONDict

    def buttons(self) -> list[list[tuple[str, str | None]]]:
        """Inline keyboard rows as (text, callback_data or url or None)."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [
            [(b.get("text", ""), b.get("callback_data", b.get("url"))) for b in row] for row in rows
        ]

    def button_texts(self) -> list[str]:
        """All button labels, inline or reply keyboard, row by row."""
        markup = self.reply_markup or {}
        rows = markup.get("inline_keyboard") or markup.get("keyboard") or []
        return [b if isinstance(b, str) else str(b.get("text", "")) for row in rows for b in row]

    def button(self, text_or_data: str) -> JSONDict:
        """The inline button whose text, or else whose callback_data, is ``text_or_data``."""
        return find_inline_button(self.reply_markup, text_or_data, where=self._where())

    def _where(self) -> str:
        return f"message {self.message_id} in chat {self.chat_id}"


def find_inline_button(markup: JSONDict | None, text_or_data: str, *, where: str) -> JSONDict:
    rows = (markup or {}).get("inline_keyboard") or []
    buttons = [b for row in rows for b in row if isinstance(b, dict)]
    for key in ("text", "callback_data"):
        for button in buttons:
            if button.get(key) == text_or_data:
                return button
    labels = [(b.get("text"), b.get("callback_data", b.get("url"))) for b in buttons]
    raise LookupError(f"no inline button {text_or_data!r} on {where}; buttons: {labels}")


@dataclass
class RateLimits:
    """Flood limits enforced on :data:`LIMITED_METHODS` when enabled.

    Telegram's published guidance: about 30 messages per second overall, one message per
    second in a private chat, 20 messages per minute in a group. Beyond a limit the server
    answers 429 ``Too Many Requests: retry after N`` with ``parameters.retry_after``.
    """

    global_per_second: int = 30
    private_chat_per_second: int = 1
    group_per_minute: int = 20


@dataclass
class _Fault:
    method: str  # lower-case method name, or "*" for every method
    chat_id: int | str | None
    status: int | None
    description: str
    retry_after: int | None
    delay: float
    effect: bool
    body: str | None
    disconnect: bool
    remaining: int | None

    def matches(self, method: str, params: JSONDict) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.method not in ("*", method.lower()):
            return False
        return self.chat_id is None or str(params.get("chat_id")) == str(self.chat_id)


class TelegramApiError(Exception):
    """Raised inside a method implementation to answer with a Bot API error."""

    def __init__(self, status: int, description: str, parameters: JSONDict | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def bad_request(description: str) -> TelegramApiError:
    return TelegramApiError(400, f"Bad Request: {description}")


def _chat_not_found() -> TelegramApiError:
    return bad_request("chat not found")


def _too_many_requests(retry_after: int) -> TelegramApiError:
    return TelegramApiError(
        429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
    )


class _Conflict(Exception):
    pass


# ------------------------------------------------------------------------------------------------
# Server-side state


@dataclass
class _ChatState:
    id: int
    type: str  # private, group, supergroup
    json: JSONDict
    known: bool = False  # the bot may write here (user wrote to it / bot is a member)
    forbidden: str | None = None  # 403 description for anything the bot sends here
    messages: dict[int, JSONDict] = field(default_factory=dict)  # current Message JSON
    next_message_id: int = 1
    bot_markup: dict[int, JSONDict | None] = field(default_factory=dict)
    source: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    deleted: list[int] = field(default_factory=list)
    events: list[BotMessage] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    menu_button: JSONDict | None = None
    username: str | None = None

    def new_message_id(self) -> int:
        message_id = self.next_message_id
        self.next_message_id += 1
        return message_id


@dataclass
class _Query:
    id: str
    user_id: int
    chat_id: int
    message_id: int
    data: str
    created: float
    answer: CallbackAnswer | None = None


# ------------------------------------------------------------------------------------------------
# Driver side: chats, users, groups


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


# ------------------------------------------------------------------------------------------------
# The server


Handler = Callable[[JSONDict], Awaitable[Any]]


class FakeTelegram:
    """Fake Bot API server: ``async with FakeTelegram() as tg: ...``.

    Parameters:
        token: the one valid bot token; any other well-formed token gets 401.
        bot_username / bot_first_name: what ``getMe`` returns (id is the token's prefix).
        privacy_mode: group privacy like a default bot: only commands, mentions and replies to
            the bot are delivered from groups.
        strict_html_ampersand: refuse a bare ``&`` in HTML (Telegram accepts it; off by default).
        callback_query_ttl: seconds after which an unanswered callback query is "too old";
            None (default) never expires them.
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        bot_username: str = "partner_test_bot",
        bot_first_name: str = "Partner Test Bot",
        privacy_mode: bool = True,
        strict_html_ampersand: bool = False,
        callback_query_ttl: float | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        if not _TOKEN_SHAPE.fullmatch(token):
            raise ValueError(f"token {token!r} is not shaped like a bot token")
        self.token = token
        self.host = host
        self.port = 0
        self.privacy_mode = privacy_mode
        self.strict_html_ampersand = strict_html_ampersand
        self.callback_query_ttl = callback_query_ttl
        self.bot_user: JSONDict = {
            "id": int(token.split(":", 1)[0]),
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }

        # observable records
        self.calls: list[ApiCall] = []  # every request except getUpdates
        self.get_updates_calls: list[JSONDict] = []
        self.errors: list[ApiError] = []
        self.status_counts: Counter[int] = Counter()
        self.rate_limit_hits = 0  # 429s produced by rate enforcement (not by injected faults)
        self.undelivered: list[JSONDict] = []  # updates dropped (privacy / allowed_updates)
        self.webhook: JSONDict = {"url": ""}
        self.commands: dict[tuple[str, int | None, int | None, str], list[JSONDict]] = {}
        self.default_menu_button: JSONDict | None = None

        # state
        self._chats: dict[int, _ChatState] = {}
        self._users: dict[int, FakeUser] = {}
        self._groups: dict[int, FakeGroup] = {}
        self._updates: list[JSONDict] = []  # not yet confirmed
        self._update_ids = itertools.count(1)
        self._max_delivered = 0
        self._allowed_updates: frozenset[str] = DEFAULT_UPDATE_TYPES
        self._poll_generation = 0
        self._queries: dict[str, _Query] = {}
        self._query_ids = itertools.count(4_410_000_000_000_000_001)
        self._faults: list[_Fault] = []
        self._rate_limits: RateLimits | None = None
        self._sent_global: deque[float] = deque()
        self._sent_per_chat: dict[int, deque[float]] = {}
        self._in_flight = 0
        self._last_activity = 0.0
        self._changed = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._methods: dict[str, tuple[str, Handler]] = {}
        for name in (
            "getMe",
            "getUpdates",
            "setWebhook",
            "deleteWebhook",
            "getWebhookInfo",
            "close",
            "logOut",
            "setMyCommands",
            "getMyCommands",
            "deleteMyCommands",
            "setChatMenuButton",
            "getChatMenuButton",
            "sendMessage",
            "editMessageText",
            "editMessageReplyMarkup",
            "deleteMessage",
            "answerCallbackQuery",
            "sendChatAction",
            "getChat",
        ):
            self._methods[name.lower()] = (name, getattr(self, f"_api_{name}"))

    # -------------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = int(sock.getsockname()[1])
        site = web.SockSite(self._runner, sock)
        await site.start()

    async def stop(self) -> None:
        self._closing = True
        self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """For ``ApplicationBuilder().base_url(...)`` / ``Bot(base_url=...)``."""
        return f"http://{self.host}:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://{self.host}:{self.port}/file/bot"

    def application_builder(self) -> InitApplicationBuilder:
        """An ApplicationBuilder with token, base_url and base_file_url pointing here."""
        from telegram.ext import ApplicationBuilder

        return (
            ApplicationBuilder()
            .token(self.token)
            .base_url(self.base_url)
            .base_file_url(self.base_file_url)
        )

    def bot(self, **kwargs: Any) -> Bot:
        """A plain ``telegram.Bot`` pointed here (call ``initialize``/use ``async with``)."""
        from telegram import Bot

        return Bot(self.token, base_url=self.base_url, base_file_url=self.base_file_url, **kwargs)

    # ------------------------------------------------------------------------- driver: actors

    def user(
        self,
        user_id: int,
        first_name: str = "Ann",
        username: str | None = None,
        *,
        last_name: str | None = None,
        language_code: str | None = "en",
        started: bool = False,
    ) -> FakeUser:
        """The user with this id (created on first call). ``started``: the user already wrote
        to the bot before the test (the bot may message them without an update first)."""
        existing = self._users.get(user_id)
        if existing is not None:
            if started:
                existing._state.known = True
            return existing
        if user_id <= 0:
            raise ValueError("user ids are positive")
        user: JSONDict = {"id": user_id, "is_bot": False, "first_name": first_name}
        chat: JSONDict = {"id": user_id, "type": "private", "first_name": first_name}
        if last_name:
            user["last_name"] = chat["last_name"] = last_name
        if username:
            user["username"] = chat["username"] = username
        if language_code:
            user["language_code"] = language_code
        state = _ChatState(id=user_id, type="private", json=chat, known=started)
        self._chats[user_id] = state
        fake = FakeUser(self, state, user)
        self._users[user_id] = fake
        return fake

    def group(
        self, chat_id: int, title: str = "Test group", *, username: str | None = None
    ) -> FakeGroup:
        """A group (or a supergroup when ``chat_id`` is ``-100...``) the bot is a member of."""
        existing = self._groups.get(chat_id)
        if existing is not None:
            return existing
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        kind = "supergroup" if str(chat_id).startswith("-100") else "group"
        chat: JSONDict = {"id": chat_id, "type": kind, "title": title}
        if username:
            chat["username"] = username
        state = _ChatState(id=chat_id, type=kind, json=chat, known=True, username=username)
        self._chats[chat_id] = state
        fake = FakeGroup(self, state)
        self._groups[chat_id] = fake
        return fake

    # ------------------------------------------------------------------------- driver: faults

    def fail(
        self,
        method: str,
        *,
        status: int,
        description: str,
        chat_id: int | str | None = None,
        retry_after: int | None = None,
        times: int | None = 1,
        delay: float = 0.0,
        body: str | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (``"*"``: any; None times: until
        :meth:`clear_faults`) matching ``chat_id`` with this error instead of doing them."""
        self._faults.append(
            _Fault(
                method.lower(),
                chat_id,
                status,
                description,
                retry_after,
                delay,
                False,
                body,
                False,
                times,
            )
        )

    def fail_retry_after(
        self,
        method: str,
        retry_after: int = 1,
        *,
        chat_id: int | str | None = None,
        times: int | None = 1,
    ) -> None:
        """429 ``Too Many Requests: retry after N`` with ``parameters.retry_after``."""
        self.fail(
            method,
            status=429,
            description=f"Too Many Requests: retry after {retry_after}",
            chat_id=chat_id,
            retry_after=retry_after,
            times=times,
        )

    def fail_forbidden(
        self,
        method: str,
        *,
        chat_id: int | str | None = None,
        times: int | None = 1,
        description: str = "Forbidden: bot was blocked by the user",
    ) -> None:
        """403 for the next calls (for a persistent block use :meth:`FakeUser.block_bot`)."""
        self.fail(method, status=403, description=description, chat_id=chat_id, times=times)

    def fail_server_error(
        self,
        method: str,
        *,
        status: int = 500,
        chat_id: int | str | None = None,
        times: int | None = 1,
    ) -> None:
        """5xx. 502 answers nginx's HTML page like Telegram's front does; others answer JSON."""
        phrase = {
            500: "Internal Server Error",
            502: "Bad Gateway",
            503: "Service Unavailable",
            504: "Gateway Timeout",
        }.get(status, "Internal Server Error")
        self.fail(
            method,
            status=status,
            description=phrase,
            chat_id=chat_id,
            times=times,
            body=_NGINX_502 if status == 502 else None,
        )

    def delay(
        self,
        method: str,
        seconds: float,
        *,
        chat_id: int | str | None = None,
        times: int | None = 1,
        effect: bool = True,
    ) -> None:
        """Answer late. With ``effect`` (default) the request is carried out first and only the
        answer is late, so a client that times out has still sent the message, as happens
        with the real Telegram; with ``effect=False`` it is carried out after the delay."""
        self._faults.append(
            _Fault(method.lower(), chat_id, None, "", None, seconds, effect, None, False, times)
        )

    def drop_connection(
        self, method: str, *, chat_id: int | str | None = None, times: int | None = 1
    ) -> None:
        """Close the connection without an answer (the request is not carried out)."""
        self._faults.append(
            _Fault(method.lower(), chat_id, None, "", None, 0.0, False, None, True, times)
        )

    def clear_faults(self) -> None:
        self._faults.clear()

    def enforce_rate_limits(self, limits: RateLimits | None = None) -> None:
        """Turn on flood-limit enforcement (pass None to :meth:`disable_rate_limits`)."""
        self._rate_limits = limits or RateLimits()

    def disable_rate_limits(self) -> None:
        self._rate_limits = None

    def expire_callback_queries(self) -> None:
        """Make every callback query so far too old to answer."""
        for query in self._queries.values():
            query.created = -math.inf

    # ----------------------------------------------------------------------- driver: updates

    def push_update(self, payload: JSONDict) -> JSONDict:
        """Enqueue a raw update (``update_id`` is assigned); returns it."""
        update = {"update_id": next(self._update_ids), **payload}
        kind = next((key for key in payload if key != "update_id"), "")
        if kind in self._allowed_updates:
            self._updates.append(update)
        else:
            self.undelivered.append(update)
        self._notify()
        return update

    def user_message(
        self,
        user: FakeUser,
        text: str,
        *,
        chat: FakeChat | None = None,
        entities: list[JSONDict] | None = None,
        reply_to: BotMessage | int | None = None,
    ) -> JSONDict:
        state = chat._state if chat is not None else user._state
        if state.type == "private" and state.id != user.user_id:
            raise ValueError("a user can only write in their own private chat")
        if state.type == "private":
            state.known = True
            if state.forbidden == "Forbidden: bot was blocked by the user":
                self.set_blocked(user, blocked=False)  # writing to a blocked bot restarts it
        message_id = state.new_message_id()
        message: JSONDict = {
            "message_id": message_id,
            "from": dict(user.user),
            "chat": dict(state.json),
            "date": int(time.time()),
            "text": text,
        }
        found = detect_entities(text) if entities is None else entities
        if found:
            message["entities"] = found
        if reply_to is not None:
            reply_id = reply_to.message_id if isinstance(reply_to, BotMessage) else reply_to
            original = state.messages.get(reply_id)
            if original is None:
                raise LookupError(f"no message {reply_id} in chat {state.id} to reply to")
            message["reply_to_message"] = dict(original)
        state.messages[message_id] = message
        update = {"update_id": next(self._update_ids), "message": message}
        user.sent.append(update)
        privacy_drops = state.type != "private" and not self._group_delivers(message)
        if privacy_drops or "message" not in self._allowed_updates:
            self.undelivered.append(update)
        else:
            self._updates.append(update)
        self._notify()
        return update

    def _group_delivers(self, message: JSONDict) -> bool:
        if not self.privacy_mode:
            return True
        me = str(self.bot_user["username"]).lower()
        reply = message.get("reply_to_message")
        if reply and reply.get("from", {}).get("id") == self.bot_user["id"]:
            return True
        text = str(message.get("text", ""))
        for entity in message.get("entities", []):
            chunk = _utf16_slice(text, entity["offset"], entity["length"])
            if entity["type"] == "mention" and chunk[1:].lower() == me:
                return True
            if entity["type"] == "bot_command":
                match = _BOT_COMMAND.fullmatch(chunk)
                if match and (match.group(2) is None or match.group(2).lower() == me):
                    return True
        return False

    def press(
        self,
        user: FakeUser,
        message: BotMessage | int,
        button: str,
        *,
        chat: FakeChat | None = None,
        raw: bool = False,
    ) -> CallbackPress:
        if isinstance(message, BotMessage):
            chat_id, message_id = message.chat_id, message.message_id
        else:
            chat_id, message_id = (chat.id if chat else user.user_id), message
        state = self._chats[chat_id]
        current = state.messages.get(message_id)
        if current is None:
            raise LookupError(f"message {message_id} in chat {chat_id} does not exist (deleted?)")
        if raw:
            data = button
        else:
            found = find_inline_button(
                current.get("reply_markup"), button, where=f"message {message_id} in chat {chat_id}"
            )
            if "callback_data" not in found:
                raise ValueError(f"button {button!r} is not a callback button: {found}")
            data = str(found["callback_data"])
        query_id = str(next(self._query_ids))
        query_json: JSONDict = {
            "id": query_id,
            "from": dict(user.user),
            "message": dict(current),
            "chat_instance": str(abs(chat_id) * 7919 + 1_000_003),
            "data": data,
        }
        self._queries[query_id] = _Query(
            query_id, user.user_id, chat_id, message_id, data, time.monotonic()
        )
        if state.type == "private":
            state.known = True
        update = self.push_update({"callback_query": query_json})
        user.sent.append(update)
        return CallbackPress(query_id, data, chat_id, message_id, update, self)

    def set_blocked(self, user: FakeUser, *, blocked: bool) -> JSONDict:
        state = user._state
        old, new = ("member", "kicked") if blocked else ("kicked", "member")
        state.forbidden = "Forbidden: bot was blocked by the user" if blocked else None
        if not blocked:
            state.known = True
        member_old: JSONDict = {"user": dict(self.bot_user), "status": old}
        member_new: JSONDict = {"user": dict(self.bot_user), "status": new}
        if blocked:
            member_new["until_date"] = 0
        else:
            member_old["until_date"] = 0
        update = self.push_update(
            {
                "my_chat_member": {
                    "chat": dict(state.json),
                    "from": dict(user.user),
                    "date": int(time.time()),
                    "old_chat_member": member_old,
                    "new_chat_member": member_new,
                }
            }
        )
        user.sent.append(update)
        return update

    # ------------------------------------------------------------------- driver: observation

    def calls_to(self, method: str) -> list[JSONDict]:
        """Parameters of every call to ``method`` (case-insensitive), in order."""
        return [c.params for c in self.calls if c.method.lower() == method.lower()]

    def bot_message(self, chat_id: int, message_id: int) -> BotMessage:
        """Current state of a bot message (after edits)."""
        state = self._chats.get(chat_id)
        current = state.messages.get(message_id) if state else None
        if state is None or current is None:
            raise LookupError(f"no message {message_id} in chat {chat_id}")
        source, parse_mode = state.source.get(message_id, (str(current.get("text", "")), None))
        return BotMessage(
            chat_id=chat_id,
            message_id=message_id,
            kind="current",
            method="",
            text=str(current.get("text", "")),
            entities=list(current.get("entities", [])),
            reply_markup=state.bot_markup.get(message_id, current.get("reply_markup")),
            source_text=source,
            parse_mode=parse_mode,
            params={},
            data=dict(current),
        )

    def commands_for(
        self, scope: JSONDict | None = None, language_code: str = ""
    ) -> list[JSONDict] | None:
        """Commands set for exactly this scope and language (None: never set)."""
        return self.commands.get(
            self._scope_key(scope or {"type": "default"}, language_code, check=False)
        )

    def menu_button(self, chat_id: int | None = None) -> JSONDict | None:
        if chat_id is None:
            return self.default_menu_button
        return self._chats[chat_id].menu_button

    @property
    def pending_updates(self) -> list[JSONDict]:
        """Updates not yet confirmed by the bot."""
        return list(self._updates)

    def assert_no_errors(self) -> None:
        """Fail if the server answered any error (4xx/5xx) so far."""
        if self.errors:
            lines = "\n".join(f"  {e.method} -> {e.status} {e.description}" for e in self.errors)
            raise AssertionError(f"the fake Bot API answered errors:\n{lines}")

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - a deadline for the predicate, not for I/O
        what: str = "condition",
    ) -> None:
        """Wait until ``predicate()`` holds; AssertionError (with diagnostics) on timeout.

        Re-checked on every change of the server's state and every 10 ms, so predicates on
        the test's own state (an error handler's list...) work too."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}{self._diagnostics()}"
                )
            await self._wait_change(min(remaining, 0.01))

    async def wait_for_call(
        self,
        method: str,
        *,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109
        predicate: Callable[[JSONDict], bool] | None = None,
    ) -> JSONDict:
        """Wait until ``method`` was called ``count`` times (matching ``predicate``); return
        the parameters of the ``count``-th such call."""

        def matching() -> list[JSONDict]:
            return [p for p in self.calls_to(method) if predicate is None or predicate(p)]

        await self.wait_until(
            lambda: len(matching()) >= count, timeout=timeout, what=f"{count} call(s) to {method}"
        )
        return matching()[count - 1]

    async def wait_idle(self, timeout: float = 5.0, quiet: float = 0.05) -> None:  # noqa: ASYNC109
        """Wait until every update was fetched and confirmed by the bot, no request is in
        flight and no request arrived for ``quiet`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if not self._updates and self._in_flight == 0:
                idle_for = loop.time() - self._last_activity
                if idle_for >= quiet:
                    return
                await asyncio.sleep(quiet - idle_for)
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"bot not idle after {timeout}s: {len(self._updates)} unconfirmed "
                    f"update(s), {self._in_flight} request(s) in flight{self._diagnostics()}"
                )
            await self._wait_change(min(remaining, quiet))

    def _diagnostics(self) -> str:
        recent = [f"{c.method}({_short(c.params)})" for c in self.calls[-5:]]
        errors = [f"{e.method}: {e.status} {e.description}" for e in self.errors[-5:]]
        return (
            f"\n  last calls: {recent or 'none'}\n  last errors: {errors or 'none'}"
            f"\n  unconfirmed updates: {len(self._updates)}; getUpdates calls: "
            f"{len(self.get_updates_calls)}"
        )

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def _wait_change(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), seconds)

    # ---------------------------------------------------------------------------- HTTP layer

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        match = re.fullmatch(r"/bot([^/]*)/([^/]*)", request.path)
        if match is None:
            return _error_response(404, "Not Found")
        token, method_name = match.groups()
        if token != self.token:
            if _TOKEN_SHAPE.fullmatch(token):
                return _error_response(401, "Unauthorized")
            return _error_response(404, "Not Found")
        try:
            params = await _read_params(request)
        except TelegramApiError as exc:
            return self._answer_error(method_name, {}, exc)
        entry = self._methods.get(method_name.lower())
        if entry is None:
            self.calls.append(ApiCall(method_name, params))
            return self._answer_error(method_name, params, TelegramApiError(404, "Not Found"))
        method, implementation = entry
        if method == "getUpdates":
            self.get_updates_calls.append(params)
        else:
            self.calls.append(ApiCall(method, params))
            self._in_flight += 1
        try:
            return await self._serve(request, method, implementation, params)
        finally:
            if method != "getUpdates":
                self._in_flight -= 1
                self._last_activity = asyncio.get_running_loop().time()
                self._notify()

    async def _serve(
        self, request: web.Request, method: str, implementation: Handler, params: JSONDict
    ) -> web.StreamResponse:
        fault = next((f for f in self._faults if f.matches(method, params)), None)
        if fault is not None and fault.remaining is not None:
            fault.remaining -= 1
        try:
            if fault is not None and fault.disconnect:
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=204)  # never reaches the client
            if fault is not None and fault.status is not None:
                await self._sleep(fault.delay)
                if fault.body is not None:
                    self._record_error(method, params, fault.status, fault.description)
                    return web.Response(
                        status=fault.status, text=fault.body, content_type="text/html"
                    )
                extra = {"retry_after": fault.retry_after} if fault.retry_after else None
                raise TelegramApiError(fault.status, fault.description, extra)
            if fault is not None and not fault.effect:
                await self._sleep(fault.delay)
            result = await implementation(params)
            if fault is not None and fault.effect:
                await self._sleep(fault.delay)
        except TelegramApiError as exc:
            return self._answer_error(method, params, exc)
        except _Conflict:
            conflict = TelegramApiError(
                409,
                "Conflict: terminated by other getUpdates request; make sure that only "
                "one bot instance is running",
            )
            if request.transport is None or request.transport.is_closing():
                # The poller already gave up (PTB cancels its long poll on stop): nobody
                # sees this answer, so it is not recorded as an error.
                return _error_response(conflict.status, conflict.description)
            return self._answer_error(method, params, conflict)
        self.status_counts[200] += 1
        return web.json_response({"ok": True, "result": result})

    def _answer_error(self, method: str, params: JSONDict, exc: TelegramApiError) -> web.Response:
        self._record_error(method, params, exc.status, exc.description)
        if exc.status == 429 and exc.parameters is None:
            exc.parameters = {"retry_after": 1}
        return _error_response(exc.status, exc.description, exc.parameters)

    def _record_error(self, method: str, params: JSONDict, status: int, description: str) -> None:
        self.status_counts[status] += 1
        self.errors.append(ApiError(method, params, status, description))

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self._closing and loop.time() < deadline:
            await self._wait_change(deadline - loop.time())

    # ---------------------------------------------------------------------- helpers for methods

    def _chat(self, params: JSONDict, *, key: str = "chat_id") -> _ChatState:
        """The chat named by ``params[key]`` that the bot can see (400 chat not found)."""
        value = params.get(key)
        if value is None or value == "":
            raise bad_request(f"{key} is empty")
        state: _ChatState | None = None
        if isinstance(value, int):
            state = self._chats.get(value)
        elif isinstance(value, str) and value.startswith("@"):
            state = next(
                (
                    s
                    for s in self._chats.values()
                    if s.username and s.username.lower() == value[1:].lower()
                ),
                None,
            )
        if state is None or not state.known:
            raise _chat_not_found()
        return state

    @staticmethod
    def _check_forbidden(state: _ChatState) -> None:
        if state.forbidden is not None:
            raise TelegramApiError(403, state.forbidden)

    def _check_rate(self, method: str, state: _ChatState) -> None:
        limits = self._rate_limits
        if limits is None or method not in LIMITED_METHODS:
            return
        now = time.monotonic()
        glob = self._sent_global
        while glob and glob[0] <= now - 1.0:
            glob.popleft()
        window, limit = (1.0, limits.private_chat_per_second)
        if state.type != "private":
            window, limit = (60.0, limits.group_per_minute)
        per_chat = self._sent_per_chat.setdefault(state.id, deque())
        while per_chat and per_chat[0] <= now - window:
            per_chat.popleft()
        waits = []
        if len(glob) >= limits.global_per_second:
            waits.append(glob[0] + 1.0 - now)
        if len(per_chat) >= limit:
            waits.append(per_chat[0] + window - now)
        if waits:
            self.rate_limit_hits += 1
            raise _too_many_requests(max(1, math.ceil(max(waits))))
        glob.append(now)
        per_chat.append(now)

    def _format(self, params: JSONDict, *, key: str = "text") -> FormattedText:
        text = params.get(key)
        if text is None:
            text = ""
        if not isinstance(text, str):
            text = json.dumps(text)
        entities = params.get("entities")
        if entities is not None and not isinstance(entities, list):
            raise bad_request("can't parse entities JSON object")
        parse_mode = params.get("parse_mode") or None
        try:
            formatted = format_text(
                text,
                None if entities else parse_mode,
                entities,
                strict_ampersand=self.strict_html_ampersand,
            )
        except EntityParseError as exc:
            raise bad_request(f"can't parse entities: {exc}") from None
        except UnsupportedParseMode:
            raise bad_request(f"unsupported parse_mode {parse_mode!r}") from None
        if not formatted.text:
            raise bad_request("message text is empty")
        return formatted

    @staticmethod
    def _check_length(formatted: FormattedText) -> None:
        if utf16_len(formatted.text) > MAX_MESSAGE_LENGTH:
            raise bad_request("message is too long")

    def _message_json(
        self,
        state: _ChatState,
        message_id: int,
        formatted: FormattedText,
        inline_markup: JSONDict | None,
    ) -> JSONDict:
        message: JSONDict = {
            "message_id": message_id,
            "from": dict(self.bot_user),
            "chat": dict(state.json),
            "date": int(time.time()),
            "text": formatted.text,
        }
        if formatted.entities:
            message["entities"] = formatted.entities
        if inline_markup is not None:
            message["reply_markup"] = inline_markup
        return message

    def _record_event(
        self,
        state: _ChatState,
        kind: str,
        method: str,
        params: JSONDict,
        message: JSONDict,
        markup: JSONDict | None,
    ) -> None:
        message_id = int(message["message_id"])
        text = params.get("text")
        source = text if isinstance(text, str) else str(message.get("text", ""))
        parse_mode = params.get("parse_mode") or None
        if method == "editMessageReplyMarkup":
            source, parse_mode = state.source.get(message_id, (source, parse_mode))
        state.source[message_id] = (source, parse_mode)
        state.bot_markup[message_id] = markup
        state.events.append(
            BotMessage(
                chat_id=state.id,
                message_id=message_id,
                kind=kind,
                method=method,
                text=str(message.get("text", "")),
                entities=list(message.get("entities", [])),
                reply_markup=markup,
                source_text=source,
                parse_mode=parse_mode,
                params=dict(params),
                data=_copy(message),
            )
        )
        self._notify()

    def _bot_message_for_edit(self, params: JSONDict) -> tuple[_ChatState, JSONDict]:
        if params.get("inline_message_id"):
            raise bad_request("MESSAGE_ID_INVALID")
        state = self._chat(params)
        message_id = params.get("message_id")
        message = state.messages.get(message_id) if isinstance(message_id, int) else None
        if message is None:
            raise bad_request("message to edit not found")
        if message.get("from", {}).get("id") != self.bot_user["id"]:
            raise bad_request("message can't be edited")
        return state, message

    # ------------------------------------------------------------------------ Bot API methods

    async def _api_getMe(self, params: JSONDict) -> JSONDict:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _api_getUpdates(self, params: JSONDict) -> list[JSONDict]:
        if self.webhook.get("url"):
            raise TelegramApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        offset = _as_int(params.get("offset"), "offset", default=0)
        limit = _as_int(params.get("limit"), "limit", default=100)
        limit = min(max(limit, 1), 100)
        timeout = max(_as_int(params.get("timeout"), "timeout", default=0), 0)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = (
                frozenset(str(a) for a in allowed) & ALL_UPDATE_TYPES or DEFAULT_UPDATE_TYPES
            )
        if offset < 0:
            self._updates = self._updates[offset:]
        elif offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()  # wakes a competing long poll, which then answers 409
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if generation != self._poll_generation:
                raise _Conflict
            batch = self._updates[:limit]
            if batch or self._closing:
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await self._wait_change(remaining)
        if batch:
            self._max_delivered = max(self._max_delivered, int(batch[-1]["update_id"]))
        return [_copy(update) for update in batch]

    async def _api_setWebhook(self, params: JSONDict) -> bool:
        url = str(params.get("url") or "")
        if url:
            parts = re.match(r"(?i)https://[^/:]+(?::(\d+))?(?:/|$)", url)
            if parts is None:
                raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
            if parts.group(1) and parts.group(1) not in {"80", "88", "443", "8443"}:
                raise bad_request(
                    "bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
                )
        if params.get("drop_pending_updates"):
            self._updates.clear()
        self.webhook = {k: v for k, v in params.items() if k != "certificate"}
        self.webhook["url"] = url
        return True

    async def _api_deleteWebhook(self, params: JSONDict) -> bool:
        if params.get("drop_pending_updates"):
            self._updates.clear()
            self._notify()
        self.webhook = {"url": ""}
        return True

    async def _api_getWebhookInfo(self, params: JSONDict) -> JSONDict:
        return {
            "url": self.webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    async def _api_close(self, params: JSONDict) -> bool:
        return True

    async def _api_logOut(self, params: JSONDict) -> bool:
        return True

    def _scope_key(
        self, scope: Any, language_code: Any, *, check: bool = True
    ) -> tuple[str, int | None, int | None, str]:
        if scope is None or scope == "":
            scope = {"type": "default"}
        if not isinstance(scope, dict):
            raise bad_request("can't parse BotCommandScope JSON object")
        kind = scope.get("type")
        simple = {"default", "all_private_chats", "all_group_chats", "all_chat_administrators"}
        if kind in simple:
            key: tuple[str, int | None, int | None] = (str(kind), None, None)
        elif kind in {"chat", "chat_administrators", "chat_member"}:
            chat_id: int | None = None
            if check:
                state = self._chat({"chat_id": _maybe_int(scope.get("chat_id"))})
                chat_id = state.id
                if kind != "chat" and state.type == "private":
                    raise bad_request("can't change commands in private chats")
            else:
                raw_chat_id = _maybe_int(scope.get("chat_id"))
                chat_id = raw_chat_id if isinstance(raw_chat_id, int) else None
            user_id = _maybe_int(scope.get("user_id")) if kind == "chat_member" else None
            if (
                kind == "chat_member"
                and check
                and (not isinstance(user_id, int) or user_id not in self._users)
            ):
                raise bad_request("user not found")
            key = (str(kind), chat_id, user_id if isinstance(user_id, int) else None)
        else:
            raise bad_request("unsupported bot command scope type")
        language = str(language_code or "")
        if check and language and not re.fullmatch(r"[a-z]{2}", language):
            raise bad_request("invalid language code specified")
        return (*key, language)

    async def _api_setMyCommands(self, params: JSONDict) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise bad_request("can't parse commands JSON object")
        if len(commands) > 100:
            raise bad_request("BOT_COMMANDS_TOO_MUCH")
        cleaned = []
        for command in commands:
            if not isinstance(command, dict):
                raise bad_request("can't parse BotCommand JSON object")
            name = str(command.get("command", "")).removeprefix("/")
            description = str(command.get("description", "")).strip()
            if not _COMMAND_SHAPE.fullmatch(name):
                raise bad_request("BOT_COMMAND_INVALID")
            if not description or len(description) > 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": name, "description": description})
        key = self._scope_key(params.get("scope"), params.get("language_code"))
        if cleaned:
            self.commands[key] = cleaned
        else:
            self.commands.pop(key, None)
        return True

    async def _api_getMyCommands(self, params: JSONDict) -> list[JSONDict]:
        key = self._scope_key(params.get("scope"), params.get("language_code"))
        return list(self.commands.get(key, []))

    async def _api_deleteMyCommands(self, params: JSONDict) -> bool:
        key = self._scope_key(params.get("scope"), params.get("language_code"))
        self.commands.pop(key, None)
        return True

    async def _api_setChatMenuButton(self, params: JSONDict) -> bool:
        button = params.get("menu_button") or {"type": "default"}
        if not isinstance(button, dict) or button.get("type") not in {
            "commands",
            "web_app",
            "default",
        }:
            raise bad_request("can't parse MenuButton JSON object")
        if button["type"] == "web_app" and not (
            button.get("text") and isinstance(button.get("web_app"), dict)
        ):
            raise bad_request("can't parse MenuButton JSON object")
        if params.get("chat_id") in (None, ""):
            self.default_menu_button = button
        else:
            state = self._chat(params)
            if state.type != "private":
                raise bad_request("chat_id must be a private chat")
            state.menu_button = button
        return True

    async def _api_getChatMenuButton(self, params: JSONDict) -> JSONDict:
        if params.get("chat_id") in (None, ""):
            return self.default_menu_button or {"type": "commands"}
        state = self._chat(params)
        return state.menu_button or self.default_menu_button or {"type": "commands"}

    async def _api_sendMessage(self, params: JSONDict) -> JSONDict:
        formatted = self._format(params)
        markup, inline = _parse_reply_markup(params.get("reply_markup"), inline_only=False)
        state = self._chat(params)
        self._check_length(formatted)
        reply_to = _reply_target(params)
        original = state.messages.get(reply_to[0]) if reply_to else None
        if reply_to and original is None and not reply_to[1]:
            raise bad_request("message to be replied not found")
        self._check_forbidden(state)
        self._check_rate("sendMessage", state)
        message = self._message_json(state, state.new_message_id(), formatted, inline)
        if original is not None:
            message["reply_to_message"] = dict(original)
        if isinstance(params.get("link_preview_options"), dict):
            message["link_preview_options"] = params["link_preview_options"]
        state.messages[int(message["message_id"])] = message
        self._record_event(state, "sent", "sendMessage", params, message, markup)
        return message

    async def _api_editMessageText(self, params: JSONDict) -> JSONDict:
        formatted = self._format(params)
        markup, inline = _parse_reply_markup(params.get("reply_markup"), inline_only=True)
        state, message = self._bot_message_for_edit(params)
        self._check_length(formatted)
        if (
            message.get("text") == formatted.text
            and message.get("entities", []) == formatted.entities
            and message.get("reply_markup") == inline
        ):
            raise bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        self._check_forbidden(state)
        self._check_rate("editMessageText", state)
        message["text"] = formatted.text
        if formatted.entities:
            message["entities"] = formatted.entities
        else:
            message.pop("entities", None)
        _set_inline_markup(message, inline)
        message["edit_date"] = int(time.time())
        self._record_event(state, "edited", "editMessageText", params, message, markup)
        return dict(message)

    async def _api_editMessageReplyMarkup(self, params: JSONDict) -> JSONDict:
        markup, inline = _parse_reply_markup(params.get("reply_markup"), inline_only=True)
        state, message = self._bot_message_for_edit(params)
        if message.get("reply_markup") == inline:
            raise bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        self._check_forbidden(state)
        self._check_rate("editMessageReplyMarkup", state)
        _set_inline_markup(message, inline)
        message["edit_date"] = int(time.time())
        self._record_event(state, "edited", "editMessageReplyMarkup", params, message, markup)
        return dict(message)

    async def _api_deleteMessage(self, params: JSONDict) -> bool:
        state = self._chat(params)
        message_id = params.get("message_id")
        message = state.messages.get(message_id) if isinstance(message_id, int) else None
        if message is None or not isinstance(message_id, int):
            raise bad_request("message to delete not found")
        is_own = message.get("from", {}).get("id") == self.bot_user["id"]
        if not is_own and state.type != "private":
            raise bad_request("message can't be deleted")
        del state.messages[message_id]
        state.deleted.append(message_id)
        self._notify()
        return True

    async def _api_answerCallbackQuery(self, params: JSONDict) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        query = self._queries.get(query_id)
        too_old = (
            query is None
            or query.answer is not None
            or (
                self.callback_query_ttl is not None
                and time.monotonic() - query.created > self.callback_query_ttl
            )
        )
        if query is None or too_old:
            raise bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        text = params.get("text")
        if text is not None and utf16_len(str(text)) > 200:
            raise bad_request("MESSAGE_TOO_LONG")
        answer = CallbackAnswer(
            query_id=query_id,
            text=None if text is None else str(text),
            show_alert=bool(params.get("show_alert", False)),
            url=None if params.get("url") is None else str(params["url"]),
            cache_time=_as_int(params.get("cache_time"), "cache_time", default=0),
        )
        query.answer = answer
        user = self._users.get(query.user_id)
        if user is not None:
            user.callback_answers.append(answer)
        self._notify()
        return True

    async def _api_sendChatAction(self, params: JSONDict) -> bool:
        state = self._chat(params)
        action = str(params.get("action") or "")
        if action not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        self._check_forbidden(state)
        state.actions.append(action)
        self._notify()
        return True

    async def _api_getChat(self, params: JSONDict) -> JSONDict:
        state = self._chat(params)
        if state.type != "private" and state.forbidden is not None:
            raise TelegramApiError(403, state.forbidden)
        private = state.type == "private"
        return {
            **state.json,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": private,
                "limited_gifts": private,
                "unique_gifts": private,
                "premium_subscription": private,
                "gifts_from_channels": private,
            },
        }


# ------------------------------------------------------------------------------------------------
# Request decoding and reply markup validation


async def _read_params(request: web.Request) -> JSONDict:
    raw: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        content_type = request.content_type
        if content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise bad_request("can't parse JSON object") from None
            if not isinstance(body, dict):
                raise bad_request("can't parse JSON object")
            raw.update(body)
        elif content_type in {"application/x-www-form-urlencoded", "multipart/form-data"}:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    raw[key] = {"file_name": value.filename, "size": len(value.file.read())}
                else:
                    raw[key] = value
    return {key: _decode_value(key, value) for key, value in raw.items()}


def _decode_value(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if key in _JSON_PARAMS:
        try:
            return json.loads(value)
        except ValueError:
            return value
    if key in _INT_PARAMS:
        return _maybe_int(value)
    if key in _BOOL_PARAMS:
        return value.strip().lower() in {"true", "1", "yes"}
    return value


def _maybe_int(value: Any) -> Any:
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return value


def _as_int(value: Any, name: str, *, default: int) -> int:
    if value is None or value == "":
        return default
    value = _maybe_int(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f'field "{name}" must be of type Integer')
    return int(value)


def _reply_target(params: JSONDict) -> tuple[int, bool] | None:
    parameters = params.get("reply_parameters")
    if isinstance(parameters, dict) and "message_id" in parameters:
        return int(parameters["message_id"]), bool(
            parameters.get("allow_sending_without_reply", False)
        )
    legacy = params.get("reply_to_message_id")
    if isinstance(legacy, int):
        return legacy, bool(params.get("allow_sending_without_reply", False))
    return None


def _set_inline_markup(message: JSONDict, inline: JSONDict | None) -> None:
    if inline is None:
        message.pop("reply_markup", None)
    else:
        message["reply_markup"] = inline


def _parse_reply_markup(
    value: Any, *, inline_only: bool
) -> tuple[JSONDict | None, JSONDict | None]:
    """Validate ``reply_markup`` like Telegram: (markup as sent, inline keyboard or None)."""
    if value is None or value == "":
        return None, None
    if isinstance(value, str):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if not isinstance(value, dict):
        raise bad_request("object expected as reply markup")
    if "inline_keyboard" in value:
        return value, _validate_inline_keyboard(value)
    if inline_only:
        raise bad_request("inline keyboard expected")
    if "keyboard" in value:
        rows = value["keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise bad_request(
                'field "keyboard" of the ReplyKeyboardMarkup should be an Array of Arrays'
            )
        for button in (b for row in rows for b in row):
            if isinstance(button, dict):
                if not isinstance(button.get("text"), str):
                    raise bad_request(
                        'can\'t parse keyboard button: Field "text" must be of type String'
                    )
            elif not isinstance(button, str):
                raise bad_request(
                    "can't parse keyboard button: KeyboardButton should be a String or an Object"
                )
        return value, None
    if value.get("remove_keyboard") is True or value.get("force_reply") is True:
        return value, None
    raise bad_request("can't parse reply keyboard markup JSON object")


def _validate_inline_keyboard(markup: JSONDict) -> JSONDict:
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise bad_request(
            'field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays'
        )
    for button in (b for row in rows for b in row):
        prefix = "can't parse inline keyboard button: "
        if not isinstance(button, dict):
            raise bad_request(prefix + "InlineKeyboardButton should be an Object")
        if "text" not in button:
            raise bad_request(prefix + 'Can\'t find field "text"')
        if not isinstance(button["text"], str):
            raise bad_request(prefix + 'Field "text" must be of type String')
        actions = [a for a in INLINE_BUTTON_ACTIONS if button.get(a) not in (None, "")]
        if not actions:
            raise bad_request(prefix + "Text buttons are unallowed in the inline keyboard")
        data = button.get("callback_data")
        if data is not None and (
            not isinstance(data, str) or len(data.encode("utf-8")) > MAX_CALLBACK_DATA_BYTES
        ):
            raise bad_request("BUTTON_DATA_INVALID")
        url = button.get("url")
        if url is not None and (
            not isinstance(url, str)
            or re.fullmatch(r"(?i)(?:(?:https?|tg)://)?[^\s/?#]+[^\s]*", url) is None
        ):
            raise bad_request("BUTTON_URL_INVALID")
    return {"inline_keyboard": rows}


def _error_response(
    status: int, description: str, parameters: JSONDict | None = None
) -> web.Response:
    body: JSONDict = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)


def _utf16_slice(text: str, offset: int, length: int) -> str:
    encoded = text.encode("utf-16-le")
    return encoded[offset * 2 : (offset + length) * 2].decode("utf-16-le", "replace")


def _copy(value: JSONDict) -> JSONDict:
    copied: JSONDict = json.loads(json.dumps(value))
    return copied


def _short(params: JSONDict) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return text if len(text) <= 120 else text[:117] + "..."


# ------------------------------------------------------------------------------------------------
# Running a python-telegram-bot Application against the fake


@contextlib.asynccontextmanager
async def running_application(
    app: Application[Any, Any, Any, Any, Any, Any],
    *,
    poll_timeout: int = 1,
    drop_pending_updates: bool = False,
) -> AsyncIterator[Application[Any, Any, Any, Any, Any, Any]]:
    """initialize + start + start_polling(poll_interval=0), and a clean, fast stop (also when
    the body or the start fails)."""
    assert app.updater is not None, "build the Application with an Updater"
    await app.initialize()
    try:
        await app.start()
        try:
            await app.updater.start_polling(
                poll_interval=0, timeout=poll_timeout, drop_pending_updates=drop_pending_updates
            )
            try:
                yield app
            finally:
                if app.updater.running:
                    await app.updater.stop()
        finally:
            if app.running:
                await app.stop()
    finally:
        await app.shutdown()
