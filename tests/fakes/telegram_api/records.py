"""Records and value objects: what the server saw and answered, the bot's messages,
errors raised by method implementations, and the server-side state of chats and queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

JSONDict = dict[str, Any]


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
