"""Routing and server: the aiohttp app on loopback, the ``/bot<token>/<method>`` dispatch,
injected faults, the Bot API envelope, and the checks the method implementations share.
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
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Self

from aiohttp import web

from ..html_check import (
    EntityParseError,
    FormattedText,
    UnsupportedParseMode,
    format_text,
    utf16_len,
)
from .actors import FakeGroup, FakeUser
from .constants import (
    _TOKEN_SHAPE,
    DEFAULT_TOKEN,
    DEFAULT_UPDATE_TYPES,
    LIMITED_METHODS,
    MAX_MESSAGE_LENGTH,
)
from .records import (
    ApiCall,
    ApiError,
    BotMessage,
    JSONDict,
    RateLimits,
    TelegramApiError,
    _chat_not_found,
    _ChatState,
    _Conflict,
    _Fault,
    _Query,
    _too_many_requests,
    bad_request,
)
from .validation import _copy, _error_response, _read_params

if TYPE_CHECKING:
    from telegram import Bot
    from telegram.ext._applicationbuilder import InitApplicationBuilder


Handler = Callable[[JSONDict], Awaitable[Any]]


class TelegramServer:
    """The HTTP side: state, lifecycle, dispatch to ``_api_*`` methods, faults and checks
    shared by the methods. The methods live in :class:`~.methods.BotApiMethods`."""

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
        # (unix time, message) of the last delivery that failed (getWebhookInfo shows it)
        self.webhook_last_error: tuple[int, str] | None = None
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

    async def __aenter__(self) -> Self:
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

    # ------------------------------------------------------------------- change notification

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
                if request.transport is None or request.transport.is_closing():
                    # The client is gone (a killed bot): held back, it is never carried out.
                    return web.Response(status=204)
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
