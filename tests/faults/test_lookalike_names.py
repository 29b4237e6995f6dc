"""Names that display alike are the same name (issue 11, point 7).

Four different channel names all displayed as "shopberlin": joiners, tag characters, a
combining grapheme joiner and a variation selector show nothing between two letters.
Through the bot: a look-alike of an existing channel or partner is refused as taken (or
as invisible), and typing either form finds the stored one. A database written before
keeps its names as they display, has its keys brought up to date when opened, and keeps
(and reports at WARNING) look-alikes that already exist: nothing is deleted.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.names import name_key
from storage.sqlite import SqliteStore
from tests.integration.bot_harness import Account, BotHarness, bot_harness

LOOK_ALIKES = [
    "shop\u200dberlin",  # zero-width joiner
    "shop\u200cberlin",  # zero-width non-joiner
    "shop\U000e0020berlin",  # a tag character outside a flag
    "shop\u034fberlin",  # combining grapheme joiner
    "shop\ufe0fberlin",  # variation selector 16
    "shop\u3164berlin",  # Hangul filler
    "shop\u2060berlin",  # word joiner
    "ｓｈｏｐberlin",  # full width
    "ShopBerlin",  # case
]


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[BotHarness]:
    async with bot_harness(tmp_path) as harness:
        yield harness


@pytest.fixture
async def acme(h: BotHarness) -> Account:
    account = await h.new_partner("Acme", owner_id=101, days=100)
    await h.add_channel(account.id, "shopberlin")
    return account


async def test_a_look_alike_channel_name_is_not_a_second_channel(
    h: BotHarness, acme: Account
) -> None:
    before = await h.snapshot()
    for name in LOOK_ALIKES:
        reply = await h.ask(acme.owner, f"/newchannel {name}")
        refused = reply.text.startswith("Name must not contain")
        assert "already" in reply.text or refused, (name, reply.text)
    assert await h.snapshot() == before
    names = await h.store.execute_raw("SELECT name FROM channels")
    assert names == [("shopberlin",)]


async def test_any_look_alike_finds_the_stored_channel(h: BotHarness, acme: Account) -> None:
    reply = await h.ask(acme.owner, "/allocate shop\u200dberlin 5")
    assert "shopberlin" in reply.text and "Balance: 95 days" in reply.text, reply.text
    reply = await h.ask(acme.owner, "/allocate SHOP\u200cBERLIN 5")
    assert "Balance: 90 days" in reply.text, reply.text
    await h.verify()


async def test_flags_of_different_subdivisions_stay_different_names(
    h: BotHarness, acme: Account
) -> None:
    scotland = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
    wales = "\U0001f3f4\U000e0067\U000e0062\U000e0077\U000e006c\U000e0073\U000e007f"
    for flag in (scotland, wales):
        reply = await h.ask(acme.owner, f"/newchannel {flag} shop")
        assert "created" in reply.text.lower(), reply.text
    assert name_key(f"{scotland} shop") != name_key(f"{wales} shop")


async def test_a_look_alike_partner_name_is_taken_and_finds_the_partner(
    h: BotHarness, acme: Account
) -> None:
    reply = await h.ask(h.support, "/newpartner Ac\u200dme")
    assert "already" in reply.text, reply.text
    reply = await h.ask(h.support, "/account A\u200ccme")
    assert reply.text.startswith(f"Acme (#{acme.id})"), reply.text
    before = await h.snapshot()
    for invisible in ("\u200d\u3164", "\u200d", "\u2800"):
        reply = await h.ask(h.support, f"/newpartner {invisible}")
        assert reply.text.startswith("Name must"), reply.text
    assert await h.snapshot() == before


async def test_an_existing_database_keeps_its_names_and_reports_look_alikes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "old.db"
    store = await SqliteStore.open(db)
    await store.close()
    # Rows as the earlier rule keyed them (case folded, invisible characters counted).
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(
        "INSERT INTO partners (id, name, name_key, currency, monthly_price, low_balance_days,"
        " billing_day, created_at) VALUES (1, 'Acme', 'acme', 'usd', 1000, 30, 1, 0),"
        " (2, 'Glo\u200dbex', 'glo\u200dbex', 'usd', 1000, 30, 1, 0)"
    )
    for cid, name in [(1, "shopberlin"), (2, "shop\u200dberlin"), (3, "café\u200d")]:
        conn.execute(
            "INSERT INTO channels (id, partner_id, name, name_key, created_at)"
            " VALUES (?, 1, ?, ?, 0)",
            (cid, name, name.casefold()),
        )
    conn.close()

    with caplog.at_level(logging.WARNING):
        store = await SqliteStore.open(db)
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, warnings
        assert "channels.id=2 of partner 1" in warnings[0]
        assert "channels.id=1" in warnings[0]
        # Nothing deleted, nothing renamed: names display as they did.
        rows = await store.execute_raw("SELECT id, name FROM channels ORDER BY id")
        assert rows == [(1, "shopberlin"), (2, "shop\u200dberlin"), (3, "café\u200d")]
        # Re-keyed where no other name stands in the way: typing "café" finds it.
        found = await store.read(lambda lg: lg.find_live_channel(1, "café"))
        assert found is not None and found.id == 3
        partner = await store.read(lambda lg: lg.find_partner_by_name("Globex"))
        assert partner is not None and partner.id == 2
    finally:
        await store.close()
