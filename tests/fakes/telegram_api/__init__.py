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

Layout (each server layer a class the next one extends; ``FakeTelegram`` is the last):
``constants`` (limits, update types, parameter kinds); ``records`` (value objects, errors,
chat state); ``validation`` (request decoding, reply markup checks); ``server``
(``TelegramServer``: lifecycle, dispatch, faults, shared checks); ``methods``
(``BotApiMethods``: one ``_api_*`` per Bot API method); ``delivery`` (``WebhookSender``:
posting queued updates to a webhook, redelivered until answered 2xx); ``driver``
(``FakeTelegram``: the test-side API, and :func:`running_application`); ``actors``
(``FakeChat``, ``FakeUser``, ``FakeGroup``, ``CallbackPress``: what tests hold and drive).
"""

from __future__ import annotations

from .actors import CallbackPress, FakeChat, FakeGroup, FakeUser
from .constants import (
    ALL_UPDATE_TYPES,
    CHAT_ACTIONS,
    DEFAULT_TOKEN,
    DEFAULT_UPDATE_TYPES,
    INLINE_BUTTON_ACTIONS,
    LIMITED_METHODS,
    MAX_CALLBACK_DATA_BYTES,
    MAX_MESSAGE_LENGTH,
)
from .delivery import DeliveryAttempt
from .driver import FakeTelegram, running_application
from .records import (
    ApiCall,
    ApiError,
    BotMessage,
    CallbackAnswer,
    JSONDict,
    RateLimits,
    TelegramApiError,
    bad_request,
    find_inline_button,
)
from .server import Handler

__all__ = [
    "ALL_UPDATE_TYPES",
    "CHAT_ACTIONS",
    "DEFAULT_TOKEN",
    "DEFAULT_UPDATE_TYPES",
    "INLINE_BUTTON_ACTIONS",
    "LIMITED_METHODS",
    "MAX_CALLBACK_DATA_BYTES",
    "MAX_MESSAGE_LENGTH",
    "ApiCall",
    "ApiError",
    "BotMessage",
    "CallbackAnswer",
    "CallbackPress",
    "DeliveryAttempt",
    "FakeChat",
    "FakeGroup",
    "FakeTelegram",
    "FakeUser",
    "Handler",
    "JSONDict",
    "RateLimits",
    "TelegramApiError",
    "bad_request",
    "find_inline_button",
    "running_application",
]
