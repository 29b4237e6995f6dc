"""Invite codes never reach the log, at any level (issue 11, point 7).

An invite code is as good as a password to a partner's account until it is used or
expires. At DEBUG python-telegram-bot logs every Bot API call with its parameters (the
`https://t.me/<bot>?start=CODE` links the bot sends) and every update it receives (the
`/start CODE` a new member sends). The log set-up of `partnerbot run`
(partnerbot/logs.py) must scrub both like the bot token.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from partnerbot import logs
from tests.integration.bot_harness import INVITE_LINK, bot_harness


def capture(fmt: str, secrets: list[str]) -> io.StringIO:
    logs.setup("DEBUG", fmt, secrets)
    [handler] = logging.getLogger().handlers
    assert isinstance(handler, logging.StreamHandler)
    sink = io.StringIO()
    handler.setStream(sink)
    return sink


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_invite_codes_are_scrubbed_from_debug_logs(
    tmp_path: Path, restore_logging: None, fmt: str
) -> None:
    async with bot_harness(tmp_path) as h:
        sink = capture(fmt, [h.tg.token])
        reply = await h.ask(h.support, "/newpartner Acme")
        found = INVITE_LINK.search(reply.text)
        assert found, reply.text
        owner_code = found.group(1)
        owner = h.tg.user(101, "Olga")
        assert (await h.ask(owner, f"/start {owner_code}")).text.startswith("Welcome!")
        teammate_link = (await h.ask(owner, "/invite")).text
        found = INVITE_LINK.search(teammate_link.splitlines()[-1])
        assert found, teammate_link
        teammate_code = found.group(1)
        mate = h.tg.user(102, "Tom")
        # Addressed to the bot by name, as in a group or a pasted command.
        reply = await h.ask(mate, f"/start@{h.app.bot.username} {teammate_code}")
        assert reply.text.startswith("Welcome!")
        # A code that is wrong (a typo of a real one) is scrubbed as well.
        await h.ask(h.tg.user(103, "Eve"), "/start Zz9_wrongcode-0123456789abcdefXYZ")
        await h.tg.wait_idle(quiet=0.05)
        text = sink.getvalue()

    lines = text.splitlines()
    if fmt == "json":
        assert all(json.loads(line) for line in lines)
    # The log really has the DEBUG lines that carried them: each with the code scrubbed.
    assert any("Calling Bot API endpoint `sendMessage`" in line for line in lines)
    assert any("start=[secret]" in line for line in lines), text[-3000:]
    assert any("/start [secret]" in line for line in lines), text[-3000:]
    for code in (owner_code, teammate_code, "Zz9_wrongcode-0123456789abcdefXYZ"):
        assert code not in text
    assert h.tg.token not in text


def test_every_shape_of_a_code_in_a_record_is_scrubbed(restore_logging: None) -> None:
    code = "AbCdEfGhIjKlMnOpQrStUvWxYz012_-9"
    sink = capture("text", [])
    log = logging.getLogger("tests.invite")
    log.debug("text %r", {"text": f"/start {code}"})
    log.debug("link https://t.me/partner_test_bot?start=%s and more", code)
    log.info("quoted json {\"text\": \"/start   %s\"}", code)
    log.warning("encoded https%%3A%%2F%%2Ft.me%%2Fbot%%3Fstart%%3D%s", code)
    log.error("group ?startgroup=%s or &startapp=%s", code, code)
    try:
        raise ValueError(f"no such invite: /start {code}")
    except ValueError:
        log.exception("while linking")
    out = sink.getvalue()
    assert code not in out, out
    assert out.count("[secret]") == 7, out
    # Text that only looks similar keeps its words.
    sink.truncate(0)
    log.info("/started the start=line restart")
    assert sink.getvalue().rstrip().endswith("/started the start=line restart")
