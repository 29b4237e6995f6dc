"""The fake Bot API server behaves like Telegram for python-telegram-bot's real network code.

Every test drives a real ``telegram.ext.Application`` (long polling) or ``telegram.Bot`` over
HTTP on loopback against :class:`tests.fakes.telegram_api.FakeTelegram`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeChat,
    BotCommandScopeDefault,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    MenuButtonCommands,
    Message,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.ext import (
    AIORateLimiter,
    Application,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
)

from tests.fakes.html_check import format_text
from tests.fakes.telegram_api import FakeTelegram, RateLimits, running_application

HTML = ParseMode.HTML
AnyApp = Application[Any, Any, Any, Any, Any, Any]

RENEW_KEYBOARD = InlineKeyboardMarkup(
    [
        [InlineKeyboardButton("Renew 30 days", callback_data="renew:30")],
        [InlineKeyboardButton("Help", url="https://example.com/help")],
    ]
)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


class BillingBot:
    """A small bot with the shapes of the real one: commands, callbacks, errors collected."""

    def __init__(self, tg: FakeTelegram, *, rate_limiter: AIORateLimiter | None = None) -> None:
        builder: Any = tg.application_builder()  # Any: the builder's type changes per option
        if rate_limiter is not None:
            builder = builder.rate_limiter(rate_limiter)
        self.app: AnyApp = builder.build()
        self.errors: list[BaseException] = []
        self.member_updates: list[Update] = []
        self.app.add_handler(CommandHandler("balance", self.balance))
        self.app.add_handler(CommandHandler("long", self.long))
        self.app.add_handler(CommandHandler("broken", self.broken_html))
        self.app.add_handler(CallbackQueryHandler(self.renew, pattern=r"^renew:"))
        self.app.add_handler(ChatMemberHandler(self.member, ChatMemberHandler.MY_CHAT_MEMBER))
        self.app.add_error_handler(self.on_error)

    async def balance(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(
            "Balance: <b>30</b> days", parse_mode=HTML, reply_markup=RENEW_KEYBOARD
        )

    async def long(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text("x" * 4097)

    async def broken_html(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text("Price < 5 <b>EUR</b>", parse_mode=HTML)

    async def renew(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("Renewed")
        await query.edit_message_text(f"Renewed via <code>{query.data}</code>", parse_mode=HTML)

    async def member(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self.member_updates.append(update)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert context.error is not None
        self.errors.append(context.error)


# --------------------------------------------------------------------------------------------
# Through a running Application (long polling)


async def test_command_round_trip(tg: FakeTelegram) -> None:
    bot = BillingBot(tg)
    ann = tg.user(42, first_name="Ann", username="ann")
    async with running_application(bot.app):
        update = await ann.send("/balance")
        reply = await ann.wait_reply()

    command = update["message"]
    assert command["entities"] == [{"type": "bot_command", "offset": 0, "length": 8}]
    assert command["from"]["id"] == 42 and command["chat"] == {
        "id": 42,
        "type": "private",
        "first_name": "Ann",
        "username": "ann",
    }
    assert reply.kind == "sent"
    assert reply.text == "Balance: 30 days"
    assert reply.entities == [{"type": "bold", "offset": 9, "length": 2}]
    assert reply.source_text == "Balance: <b>30</b> days" and reply.parse_mode == "HTML"
    assert reply.message_id == command["message_id"] + 1
    assert reply.buttons() == [
        [("Renew 30 days", "renew:30")],
        [("Help", "https://example.com/help")],
    ]
    methods = [call.method for call in tg.calls]
    assert methods[:2] == ["getMe", "deleteWebhook"] and methods[-1] == "sendMessage"
    assert tg.calls_to("sendMessage")[0]["chat_id"] == 42
    assert tg.pending_updates == []  # the stop confirmed everything by offset
    assert bot.errors == []
    tg.assert_no_errors()


async def test_callback_press_is_answered_and_edits_the_message(tg: FakeTelegram) -> None:
    bot = BillingBot(tg)
    ann = tg.user(42)
    async with running_application(bot.app):
        await ann.send("/balance")
        menu = await ann.wait_reply()
        press = await ann.press(menu, "Renew 30 days")
        answer = await press.wait_answer()
        edited = await ann.wait_reply()
        with pytest.raises(LookupError):  # the edit without reply_markup removed the keyboard
            await ann.press(menu, "Renew 30 days")
        await tg.wait_idle()

    assert press.data == "renew:30"
    assert answer.text == "Renewed" and not answer.show_alert
    assert ann.callback_answers == [answer]
    assert edited.kind == "edited" and edited.message_id == menu.message_id
    assert edited.text == "Renewed via renew:30"
    assert edited.entities == [{"type": "code", "offset": 12, "length": 8}]
    assert edited.reply_markup is None and "edit_date" in edited.data
    assert ann.message(menu.message_id).text == "Renewed via renew:30"
    assert ann.message(menu.message_id).buttons() == []
    assert bot.errors == []


async def test_too_long_text_surfaces_as_bad_request_in_the_handler(tg: FakeTelegram) -> None:
    bot = BillingBot(tg)
    ann = tg.user(42)
    async with running_application(bot.app):
        await ann.send("/long")
        await tg.wait_until(lambda: bool(bot.errors), what="the handler's error")

    (error,) = bot.errors
    assert isinstance(error, BadRequest)
    assert error.message == "Message is too long"
    assert ann.replies == []


async def test_invalid_html_from_a_handler_is_rejected(tg: FakeTelegram) -> None:
    bot = BillingBot(tg)
    ann = tg.user(42)
    async with running_application(bot.app):
        await ann.send("/broken")
        await tg.wait_until(lambda: bool(bot.errors), what="the handler's error")

    (error,) = bot.errors
    assert isinstance(error, BadRequest)
    assert error.message == 'Can\'t parse entities: unsupported start tag "" at byte offset 6'
    assert tg.errors[-1].description == (
        'Bad Request: can\'t parse entities: Unsupported start tag "" at byte offset 6'
    )


async def test_retry_after_is_honoured_by_aio_rate_limiter(tg: FakeTelegram) -> None:
    bot = BillingBot(tg, rate_limiter=AIORateLimiter(max_retries=2))
    ann = tg.user(42)
    tg.fail_retry_after("sendMessage", 1)
    async with running_application(bot.app):
        await ann.send("/balance")
        started = time.monotonic()
        reply = await ann.wait_reply(timeout=5)
        waited = time.monotonic() - started

    assert reply.text == "Balance: 30 days"
    assert waited >= 1.0
    assert tg.status_counts[429] == 1
    assert len(tg.calls_to("sendMessage")) == 2
    assert bot.errors == []


async def test_group_commands_respect_bot_username_and_privacy_mode(tg: FakeTelegram) -> None:
    bot = BillingBot(tg)
    ann = tg.user(42)
    group = tg.group(-1001234567890, "Partners")
    async with running_application(bot.app):
        chatter = await ann.send("hello everyone", chat=group)
        other = await ann.send("/balance@other_bot", chat=group)
        mine = await ann.send("/balance@partner_test_bot", chat=group)
        reply = await group.wait_reply()
        await tg.wait_idle()

    assert mine["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 25}]
    assert mine["message"]["chat"]["type"] == "supergroup"
    assert [u["update_id"] for u in tg.undelivered] == [chatter["update_id"], other["update_id"]]
    assert reply.chat_id == group.id and reply.text == "Balance: 30 days"
    assert ann.replies == [] and len(group.replies) == 1


async def test_blocking_the_bot_delivers_my_chat_member_and_sends_get_403(
    tg: FakeTelegram,
) -> None:
    bot = BillingBot(tg)
    ann = tg.user(42)
    async with running_application(bot.app):
        await ann.send("/balance")
        await ann.wait_reply()
        await ann.block_bot()
        await tg.wait_until(lambda: bool(bot.member_updates), what="my_chat_member")
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await bot.app.bot.send_message(ann.id, "Your subscription ends tomorrow")

    member = bot.member_updates[0].my_chat_member
    assert member is not None
    assert member.old_chat_member.status == "member"
    assert member.new_chat_member.status == "kicked"
    assert len(ann.replies) == 1


# --------------------------------------------------------------------------------------------
# Through a plain telegram.Bot


async def test_callback_data_longer_than_64_bytes_is_rejected(tg: FakeTelegram) -> None:
    ann = tg.user(42, started=True)
    async with tg.bot() as bot:
        fits = InlineKeyboardMarkup([[InlineKeyboardButton("ok", callback_data="é" * 32)]])
        await bot.send_message(ann.id, "64 bytes", reply_markup=fits)
        too_long = InlineKeyboardMarkup(
            [[InlineKeyboardButton("no", callback_data="é" * 32 + "x")]]
        )
        with pytest.raises(BadRequest, match="Button_data_invalid"):
            await bot.send_message(ann.id, "65 bytes", reply_markup=too_long)
    assert tg.errors[-1].description == "Bad Request: BUTTON_DATA_INVALID"
    assert [r.text for r in ann.replies] == ["64 bytes"]


@pytest.mark.parametrize(
    ("text", "parse_mode", "description"),
    [
        ("a < b", HTML, 'can\'t parse entities: Unsupported start tag "" at byte offset 2'),
        ("<br>", HTML, 'can\'t parse entities: Unsupported start tag "br" at byte offset 0'),
        (
            "<b>x</i>",
            HTML,
            "can't parse entities: Unmatched end tag at byte offset 4, "
            'expected "</b>", found "</i>"',
        ),
        (
            "<b>bold",
            HTML,
            "can't parse entities: Can't find end tag corresponding to start tag \"b\"",
        ),
        (
            "<span>x</span>",
            HTML,
            'can\'t parse entities: Tag "span" must have class "tg-spoiler" at byte offset 0',
        ),
        (
            "Version 1.0",
            ParseMode.MARKDOWN_V2,
            "can't parse entities: Character '.' is reserved and must be escaped with the "
            "preceding '\\'",
        ),
        ("<b></b>  ", HTML, "message text is empty"),
        ("x" * 4097, None, "message is too long"),
        ("😀" * 2049, None, "message is too long"),
    ],
)
async def test_send_message_validation_matches_telegram(
    tg: FakeTelegram, text: str, parse_mode: str | None, description: str
) -> None:
    ann = tg.user(42, started=True)
    async with tg.bot() as bot:
        with pytest.raises(BadRequest):
            await bot.send_message(ann.id, text, parse_mode=parse_mode)
    assert tg.errors[-1].description == f"Bad Request: {description}"


async def test_valid_markup_and_length_limits_are_accepted(tg: FakeTelegram) -> None:
    ann = tg.user(42, started=True)
    async with tg.bot() as bot:
        await bot.send_message(ann.id, "<b>" + "x" * 4096 + "</b>", parse_mode=HTML)
        await bot.send_message(ann.id, "😀" * 2048)  # 4096 UTF-16 code units
        await bot.send_message(
            ann.id,
            'Tom & Jerry &lt;3 <a href="https://example.com">site</a> '
            '<span class="tg-spoiler">s</span> <blockquote expandable>q</blockquote>',
            parse_mode=HTML,
        )
        await bot.send_message(ann.id, r"Version 1\.0 *bold*", parse_mode=ParseMode.MARKDOWN_V2)
    replies = ann.replies
    assert len(replies[0].text) == 4096
    assert replies[2].text == "Tom & Jerry <3 site s q"
    assert [e["type"] for e in replies[2].entities] == [
        "text_link",
        "spoiler",
        "expandable_blockquote",
    ]
    assert replies[3].text == "Version 1.0 bold"
    tg.assert_no_errors()


async def test_edit_and_answer_errors(tg: FakeTelegram) -> None:
    ann = tg.user(42, started=True)
    async with tg.bot() as bot:
        sent = await bot.send_message(ann.id, "Hello", reply_markup=RENEW_KEYBOARD)
        with pytest.raises(BadRequest, match="Message to edit not found"):
            await bot.edit_message_text("Hi", chat_id=ann.id, message_id=999)
        with pytest.raises(BadRequest, match="Message is not modified"):
            await bot.edit_message_text(
                "Hello", chat_id=ann.id, message_id=sent.message_id, reply_markup=RENEW_KEYBOARD
            )
        with pytest.raises(BadRequest, match="Message is not modified"):
            await bot.edit_message_reply_markup(
                chat_id=ann.id, message_id=sent.message_id, reply_markup=RENEW_KEYBOARD
            )
        edited = await bot.edit_message_reply_markup(chat_id=ann.id, message_id=sent.message_id)
        assert isinstance(edited, Message)
        assert (edited.chat_id, edited.message_id) == (ann.id, sent.message_id)
        assert edited.text == "Hello"
        assert edited.reply_markup is None and edited.edit_date is not None
        assert ann.message(sent.message_id).buttons() == []
        with pytest.raises(BadRequest, match="Query is too old"):
            await bot.answer_callback_query("123456789")
        assert await bot.delete_message(ann.id, sent.message_id)
        with pytest.raises(BadRequest, match="Message to delete not found"):
            await bot.delete_message(ann.id, sent.message_id)
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.send_message(777, "who are you?")
    assert ann.deleted == [sent.message_id]


async def test_a_callback_query_can_be_answered_once(tg: FakeTelegram) -> None:
    ann = tg.user(42, started=True)
    async with tg.bot() as bot:
        sent = await bot.send_message(ann.id, "Menu", reply_markup=RENEW_KEYBOARD)
        press = await ann.press(ann.message(sent.message_id), "renew:30")
        updates = await bot.get_updates(timeout=0)
        query = updates[-1].callback_query
        assert query is not None and query.data == "renew:30"
        assert query.message is not None and query.message.message_id == sent.message_id
        assert await bot.answer_callback_query(query.id, text="Done", show_alert=True)
        with pytest.raises(BadRequest, match="Query is too old"):
            await bot.answer_callback_query(query.id)
    assert press.answer is not None and press.answer.show_alert
    with pytest.raises(ValueError, match="not a callback button"):
        await ann.press(ann.message(sent.message_id), "Help")


async def test_chat_scope_commands_need_a_chat_the_bot_knows(tg: FakeTelegram) -> None:
    commands = [BotCommand("balance", "Days left"), BotCommand("renew", "Buy days")]
    ann = tg.user(777)
    async with tg.bot() as bot:
        with pytest.raises(BadRequest) as caught:
            await bot.set_my_commands(commands, scope=BotCommandScopeChat(777))
        assert caught.value.message == "Chat not found"
        await ann.send("/start")
        assert await bot.set_my_commands(commands, scope=BotCommandScopeChat(777))
        assert await bot.set_my_commands(commands[:1], scope=BotCommandScopeDefault())
        got = await bot.get_my_commands(scope=BotCommandScopeChat(777))
        assert [c.command for c in got] == ["balance", "renew"]
        assert [c.command for c in await bot.get_my_commands()] == ["balance"]
        assert await bot.delete_my_commands(scope=BotCommandScopeChat(777))
        assert await bot.get_my_commands(scope=BotCommandScopeChat(777)) == ()
        with pytest.raises(BadRequest, match="Bot_command_invalid"):
            await bot.set_my_commands([BotCommand("Balance!", "bad")])
    assert tg.commands_for({"type": "default"}) == [
        {"command": "balance", "description": "Days left"}
    ]


async def test_forbidden_injected_and_persistent(tg: FakeTelegram) -> None:
    ann = tg.user(42, started=True)
    bob = tg.user(43, started=True)
    tg.fail_forbidden("sendMessage", chat_id=ann.id)
    async with tg.bot() as bot:
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await bot.send_message(ann.id, "once")
        await bot.send_message(ann.id, "fault used up")
        bob.deactivate()
        with pytest.raises(Forbidden, match="user is deactivated"):
            await bot.send_message(bob.id, "hi")
        with pytest.raises(Forbidden):
            await bot.send_chat_action(bob.id, "typing")
    assert tg.status_counts[403] == 3


async def test_retry_after_without_rate_limiter_raises(tg: FakeTelegram) -> None:
    ann = tg.user(42, started=True)
    tg.fail_retry_after("sendMessage", 7, chat_id=ann.id)
    async with tg.bot() as bot:
        with pytest.raises(RetryAfter) as caught:
            await bot.send_message(ann.id, "hi")
    with warnings.catch_warnings():  # int vs timedelta depends on PTB_TIMEDELTA
        warnings.simplefilter("ignore")
        assert caught.value.retry_after in (7, dt.timedelta(seconds=7))
    assert tg.errors[-1].description == "Too Many Requests: retry after 7"


async def test_rate_enforcement_answers_429_beyond_the_limits(tg: FakeTelegram) -> None:
    ann = tg.user(42, started=True)
    bob = tg.user(43, started=True)
    tg.enforce_rate_limits(RateLimits(global_per_second=2, private_chat_per_second=1))
    async with tg.bot() as bot:
        await bot.send_message(ann.id, "1")
        with pytest.raises(RetryAfter):
            await bot.send_message(ann.id, "2")  # one message per second in a private chat
        await bot.send_message(bob.id, "3")
        with pytest.raises(RetryAfter):
            await bot.send_message(bob.id, "4")
        await bot.send_chat_action(ann.id, "typing")  # not a message: not limited
    assert tg.rate_limit_hits == 2 and tg.status_counts[429] == 2
    assert [r.text for r in ann.replies + bob.replies] == ["1", "3"]


async def test_server_errors_and_dropped_connections_are_network_errors(
    tg: FakeTelegram,
) -> None:
    ann = tg.user(42, started=True)
    async with tg.bot() as bot:
        tg.fail_server_error("sendMessage", status=502)
        with pytest.raises(NetworkError, match="Bad Gateway"):
            await bot.send_message(ann.id, "a")
        tg.fail_server_error("sendMessage", status=500)
        with pytest.raises(NetworkError, match="Internal Server Error"):
            await bot.send_message(ann.id, "b")
        tg.drop_connection("sendMessage")
        with pytest.raises(NetworkError):
            await bot.send_message(ann.id, "c")
        await bot.send_message(ann.id, "d")
    assert [r.text for r in ann.replies] == ["d"]


async def test_a_slow_answer_times_out_but_the_message_was_sent(tg: FakeTelegram) -> None:
    ann = tg.user(42, started=True)
    tg.delay("sendMessage", 2.0)
    async with tg.bot() as bot:
        with pytest.raises(TimedOut):
            await bot.send_message(ann.id, "sent anyway", read_timeout=0.2)
    reply = await ann.wait_reply(timeout=1)
    assert reply.text == "sent anyway"


async def test_token_and_method_errors(tg: FakeTelegram) -> None:
    # a well-formed token the server does not know: 401, which PTB raises as InvalidToken
    with pytest.raises(InvalidToken):
        await Bot("987654:WRONG", base_url=tg.base_url).get_me()
    async with aiohttp.ClientSession() as http:
        base = f"{tg.base_url}{tg.token}"
        async with http.post(f"{base}/sendSticker", data={"chat_id": "1"}) as response:
            assert response.status == 404
            assert await response.json() == {
                "ok": False,
                "error_code": 404,
                "description": "Not Found",
            }
        async with http.get(f"{base}/getme") as response:  # GET, case-insensitive name
            body = await response.json()
            assert body["ok"] is True and body["result"]["username"] == "partner_test_bot"
        tg.user(5, started=True)
        async with http.post(f"{base}/sendMessage", json={"chat_id": 5, "text": "json"}) as r:
            assert (await r.json())["result"]["text"] == "json"


async def test_get_updates_long_polls_and_confirms_by_offset(tg: FakeTelegram) -> None:
    ann = tg.user(42)
    async with aiohttp.ClientSession() as http:
        url = f"{tg.base_url}{tg.token}/getUpdates"

        async def poll(**params: Any) -> dict[str, Any]:
            async with http.post(url, data={k: str(v) for k, v in params.items()}) as response:
                body: dict[str, Any] = await response.json()
                return body

        # An hour-long poll can only come back now if the update woke it.
        waiting = asyncio.create_task(poll(timeout=3600))
        await tg.wait_until(lambda: len(tg.get_updates_calls) == 1, what="the long poll")
        assert not waiting.done()  # held open while there is nothing to deliver
        update = await ann.send("/start")
        body = await asyncio.wait_for(waiting, 30)  # a guard against a hang, not a timing
        assert [u["update_id"] for u in body["result"]] == [update["update_id"]]
        again = await poll(timeout=0)  # not confirmed yet: delivered again
        assert [u["update_id"] for u in again["result"]] == [update["update_id"]]
        confirmed = await poll(offset=update["update_id"] + 1, timeout=0)
        assert confirmed["result"] == []

        polls = len(tg.get_updates_calls)
        first = asyncio.create_task(poll(timeout=5))
        await tg.wait_until(lambda: len(tg.get_updates_calls) == polls + 1, what="first poll")
        second = asyncio.create_task(poll(timeout=0))
        assert (await first)["error_code"] == 409
        assert (await second)["ok"] is True


async def test_get_chat_menu_button_chat_action_and_idle(tg: FakeTelegram) -> None:
    bot = BillingBot(tg)
    ann = tg.user(42, first_name="Ann", username="ann")
    async with running_application(bot.app):
        await ann.send("/balance")
        await tg.wait_idle()
        assert len(ann.replies) == 1  # idle means the handler has answered
        assert (await ann.wait_reply(timeout=0)).text == "Balance: 30 days"
        await ann.expect_no_reply(within=0.1)
        chat = await bot.app.bot.get_chat(ann.id)
        assert (chat.id, chat.type, chat.first_name, chat.username) == (42, "private", "Ann", "ann")
        assert await bot.app.bot.send_chat_action(ann.id, "typing")
        with pytest.raises(BadRequest, match="Wrong parameter action"):
            await bot.app.bot.send_chat_action(ann.id, "dancing")
        assert await bot.app.bot.set_chat_menu_button(ann.id, MenuButtonCommands())
        assert isinstance(await bot.app.bot.get_chat_menu_button(ann.id), MenuButtonCommands)
    assert ann.actions == ["typing"]
    assert tg.menu_button(ann.id) == {"type": "commands"}


async def test_webhook_blocks_polling_and_allowed_updates_filter(tg: FakeTelegram) -> None:
    ann = tg.user(42, started=True)
    async with tg.bot() as bot:
        with pytest.raises(BadRequest, match="an https url must be provided"):
            await bot.set_webhook("http://example.com/hook")
        assert await bot.set_webhook("https://example.com/hook")
        assert (await bot.get_webhook_info()).url == "https://example.com/hook"
        with pytest.raises(Conflict, match="webhook is active"):
            await bot.get_updates(timeout=0)
        assert await bot.delete_webhook()
        assert await bot.get_updates(timeout=0, allowed_updates=["callback_query"]) == ()
        await ann.send("not wanted")
        assert await bot.get_updates(timeout=0) == ()
        assert len(tg.undelivered) == 1


@pytest.mark.parametrize(
    ("html", "text", "entities"),
    [
        ("<b>a</b>😀<i>b</i>", "a😀b", [("bold", 0, 1), ("italic", 3, 1)]),
        ("&lt;&#36;&quot;&amp", '<$"&', []),
        ("<a href='https://x.io/p?a=1&amp;b=2'>l</a>", "l", [("text_link", 0, 1)]),
        ("  <b> padded </b>  ", "padded", [("bold", 0, 6)]),
        ('<pre><code class="language-py">x=1</code></pre>', "x=1", [("pre", 0, 3)]),
        (
            "pay at https://pay.example.com/x now",
            "pay at https://pay.example.com/x now",
            [("url", 7, 25)],
        ),
    ],
)
def test_html_parsing_counts_utf16_like_telegram(
    html: str, text: str, entities: list[tuple[str, int, int]]
) -> None:
    formatted = format_text(html, "HTML")
    assert formatted.text == text
    assert [(e["type"], e["offset"], e["length"]) for e in formatted.entities] == entities
