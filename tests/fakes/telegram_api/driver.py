"""The test-side API of the server: make actors, inject faults, push updates, observe
and wait; and running a python-telegram-bot Application against the fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from ..html_check import detect_entities
from .actors import CallbackPress, FakeChat, FakeGroup, FakeUser
from .constants import _BOT_COMMAND, _NGINX_502
from .delivery import WebhookSender
from .records import (
    BotMessage,
    JSONDict,
    RateLimits,
    _ChatState,
    _Fault,
    _Query,
    find_inline_button,
)
from .validation import _short, _utf16_slice

if TYPE_CHECKING:
    from telegram.ext import Application


class FakeTelegram(WebhookSender):
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
        with the real Telegram; with ``effect=False`` it is carried out after the delay, unless
        the client has gone by then (a bot killed meanwhile)."""
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
