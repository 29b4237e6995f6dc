"""Account codes (`partner:7`, `channel:12`, `ext:...`) are built and read by core.model's
helpers only, so their format lives in one place."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.model import (
    EXTERNAL_ACCOUNTS,
    channel_account,
    channel_of,
    partner_account,
    partner_of,
)

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "storage", "bot", "payments", "partnerbot")
# A code built or taken apart by hand in Python: f"partner:{id}", "channel:" prefixes,
# "ext:..." literals.
BY_HAND = re.compile(r"""f?["'](partner|channel):(\{|["'])|["']ext:[a-z]""")
# SQL joining a partner to its balance by code: the storage's schema names the codes in its
# own language (the migrations create them too); indexed by code, so it stays.
SQL_JOIN = "JOIN accounts a ON a.code = 'partner:' || p.id"


@pytest.mark.parametrize(
    ("account", "partner", "channel"),
    [
        ("partner:7", 7, None),
        ("partner:1234567", 1234567, None),
        ("channel:12", None, 12),
        ("ext:purchases", None, None),
        ("ext:grants", None, None),
        ("partner:", None, None),
        ("partner:x", None, None),
        ("partners:7", None, None),
        ("xpartner:7", None, None),
        ("channel:-1", None, None),
    ],
)
def test_codes_read_back_to_their_partner_or_channel(
    account: str, partner: int | None, channel: int | None
) -> None:
    assert partner_of(account) == partner
    assert channel_of(account) == channel


@pytest.mark.parametrize("ref", [1, 7, 10**9])
def test_a_built_code_reads_back_as_itself(ref: int) -> None:
    assert partner_account(ref) == f"partner:{ref}"
    assert channel_account(ref) == f"channel:{ref}"
    assert partner_of(partner_account(ref)) == ref and channel_of(partner_account(ref)) is None
    assert channel_of(channel_account(ref)) == ref and partner_of(channel_account(ref)) is None


def test_outside_accounts_are_neither_a_partner_nor_a_channel() -> None:
    for account in EXTERNAL_ACCOUNTS:
        assert account.startswith("ext:")
        assert partner_of(account) is None and channel_of(account) is None


def test_the_pattern_finds_codes_built_by_hand() -> None:
    for line in ('f"partner:{pid}"', "x.startswith('channel:')", '"ext:grants"'):
        assert BY_HAND.search(line), line
    for line in ("partner_account(pid)", '"renew:{channel.id}"', "f'period:{ref}'"):
        assert not BY_HAND.search(line), line


def test_no_module_but_core_model_builds_or_parses_an_account_code() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != ROOT / "core" / "model.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if BY_HAND.search(line) and SQL_JOIN not in line
    ]
    assert found == []
