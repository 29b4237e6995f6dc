"""The Bot API methods the fake implements, with Telegram's validation and error texts."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from ..html_check import utf16_len
from .constants import _COMMAND_SHAPE, ALL_UPDATE_TYPES, CHAT_ACTIONS, DEFAULT_UPDATE_TYPES
from .records import CallbackAnswer, JSONDict, TelegramApiError, _Conflict, bad_request
from .server import TelegramServer
from .validation import (
    _as_int,
    _copy,
    _maybe_int,
    _parse_reply_markup,
    _reply_target,
    _set_inline_markup,
)


class BotApiMethods(TelegramServer):
    """One ``_api_<method>`` coroutine per Bot API method the fake implements."""

    async def _api_getMe(self, params: JSONDict) -> JSONDict:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _refuse_while_webhook(self) -> None:
        if self.webhook.get("url"):
            raise TelegramApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )

    async def _api_getUpdates(self, params: JSONDict) -> list[JSONDict]:
        self._refuse_while_webhook()
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
            self._refuse_while_webhook()
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
        # Checked as Telegram checks them (Bot API "setWebhook"; python-telegram-bot's
        # Bot.set_webhook sends url, certificate, max_connections, allowed_updates,
        # ip_address, drop_pending_updates, secret_token).
        url = str(params.get("url") or "")
        if url:
            parts = re.match(r"(?i)https://[^/:]+(?::(\d+))?(?:/|$)", url)
            if parts is None:
                raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
            if parts.group(1) and parts.group(1) not in {"80", "88", "443", "8443"}:
                raise bad_request(
                    "bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
                )
        secret = params.get("secret_token")
        if secret not in (None, ""):
            if not isinstance(secret, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", secret):
                raise bad_request("secret token contains unallowed characters")
            if len(secret) > 256:
                raise bad_request("secret token is too long")
        max_connections = _as_int(params.get("max_connections"), "max_connections", default=40)
        if not 1 <= max_connections <= 100:
            raise bad_request("bad webhook: max_connections must be between 1 and 100")
        allowed = params.get("allowed_updates")
        if allowed is not None and not isinstance(allowed, list):
            raise bad_request("can't parse allowed updates JSON object")
        if isinstance(allowed, list):
            self._allowed_updates = (
                frozenset(str(a) for a in allowed) & ALL_UPDATE_TYPES or DEFAULT_UPDATE_TYPES
            )
        if params.get("drop_pending_updates"):
            self._updates.clear()
        if not url:
            self.webhook = {"url": ""}
            self._notify()
            return True
        self.webhook = {k: v for k, v in params.items() if k != "certificate"}
        self.webhook["url"] = url
        self.webhook["max_connections"] = max_connections
        self._notify()  # a long poll in progress ends with 409, as on Telegram
        return True

    async def _api_deleteWebhook(self, params: JSONDict) -> bool:
        if params.get("drop_pending_updates"):
            self._updates.clear()
        self.webhook = {"url": ""}
        self._notify()
        return True

    async def _api_getWebhookInfo(self, params: JSONDict) -> JSONDict:
        info: JSONDict = {
            "url": self.webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if info["url"]:
            info["max_connections"] = self.webhook.get("max_connections", 40)
            if isinstance(self.webhook.get("allowed_updates"), list):
                info["allowed_updates"] = sorted(self._allowed_updates)
            if self.webhook.get("ip_address"):
                info["ip_address"] = self.webhook["ip_address"]
        if self.webhook_last_error is not None:
            info["last_error_date"], info["last_error_message"] = self.webhook_last_error
        return info

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
