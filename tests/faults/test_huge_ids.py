"""Ids a client forges beyond what the database can hold (issue 11, point 7).

SQLite integers are 64-bit: binding 2**63 or more raises OverflowError, and a timestamp
past the year 9999 cannot become a datetime. A modified client chooses its buttons'
callback_data, and anyone can type `/account 99999999999999999999`; both must get the
answer any other wrong button or unknown partner gets (no apology, no ERROR, no error
handler run), and nothing changes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot import texts
from tests.integration.bot_harness import APOLOGY, Account, BotHarness, bot_harness

BEYOND = "9" * 19  # 9,999,999,999,999,999,999 > 2**63 - 1
TOO_BIG = str(2**63)
TWENTY = "9" * 20


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[BotHarness]:
    async with bot_harness(tmp_path) as harness:
        yield harness
        harness.tg.assert_no_errors()


@pytest.fixture
async def acme(h: BotHarness) -> Account:
    account = await h.new_partner("Acme", owner_id=101, days=100)
    await h.add_channel(account.id, "shop", days=30)
    return account


def forged(acme: Account, channel_id: int) -> list[str]:
    pid = acme.id
    return [
        f"1:d:{pid}:{channel_id}:{BEYOND}",  # active-until past the year 9999
        f"1:d:{pid}:{BEYOND}:0",
        f"1:d:{BEYOND}:{channel_id}:0",
        f"1:d:{TOO_BIG}:{TOO_BIG}:{TOO_BIG}",
        f"1:k:{pid}:{BEYOND}",
        f"1:p:ch:{BEYOND}:0",
        f"1:p:hi:{pid}:{BEYOND}",  # history: read before this transfer id
        f"1:p:in:{BEYOND}:0",
        f"1:p:pa:0:{BEYOND}",
        f"1:d:{pid}:{channel_id}:²",  # a digit to str.isdigit, not to int()
        f"1:p:ch:{pid}:¹",
    ]


async def press_all(
    h: BotHarness, acme: Account, caplog: pytest.LogCaptureFixture, user_is_support: bool
) -> None:
    user = h.support if user_is_support else acme.owner
    channel_id = (await h.store.execute_raw("SELECT id FROM channels"))[0][0]
    own = await h.ask(user, "/help")
    before = await h.snapshot()
    with caplog.at_level(logging.DEBUG):
        for data in forged(acme, channel_id):
            press = await user.press_data(own, data)
            answer = await press.wait_answer()
            assert answer.text == texts.BUTTON_EXPIRED, (data, answer.text)
    await h.tg.wait_idle(quiet=0.02)
    assert user.pending_replies() == []  # no apology either as a message
    assert h.error_handler_runs == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    refused = [r for r in caplog.records if "button data" in r.getMessage()]
    assert len(refused) == len(forged(acme, channel_id))  # logged once each, quietly
    assert all(r.levelno <= logging.INFO for r in refused)
    assert await h.snapshot() == before
    await h.verify()


async def test_forged_huge_ids_in_buttons_are_refused_quietly_for_support(
    h: BotHarness, acme: Account, caplog: pytest.LogCaptureFixture
) -> None:
    await press_all(h, acme, caplog, user_is_support=True)


async def test_forged_huge_ids_in_buttons_are_refused_quietly_for_a_member(
    h: BotHarness, acme: Account, caplog: pytest.LogCaptureFixture
) -> None:
    await press_all(h, acme, caplog, user_is_support=False)


@pytest.mark.parametrize(
    "text",
    [
        f"/account {BEYOND}",
        f"/account {TOO_BIG}",
        f"/account {TWENTY}",
        "/account ²",
        "/account ¹²",
        f"/setprice {BEYOND} 12.50",
        "/setprice ² 12.50",
        f"/credit {BEYOND} 5 goodwill",
        "/credit ² 5 goodwill",
        f"/credit Acme {BEYOND} goodwill",
        f"/allocate shop {BEYOND}",
        f"/alerts {BEYOND}",
        f"/topup {BEYOND}",
        f"/invoice {BEYOND}",
        f"/history {BEYOND}",
        f"/channels {BEYOND}",
    ],
)
async def test_huge_ids_in_commands_get_a_hint_or_not_found(
    h: BotHarness, acme: Account, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    await h.ask(h.support, f"/account {acme.id}")  # partner commands act on Acme
    before = await h.snapshot()
    with caplog.at_level(logging.DEBUG):
        reply = await h.ask(h.support, text)
    assert not APOLOGY.match(reply.text), reply.text
    assert "wrong" not in reply.text
    assert h.error_handler_runs == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert await h.snapshot() == before
