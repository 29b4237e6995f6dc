"""The service's one-line use cases (`allocate_days = writes(channels.allocate_days)`) keep
the core function's signature: mypy --strict refuses a call with a wrong argument."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

pytestmark = pytest.mark.slow

SNIPPET = '''
from datetime import datetime
from core.service import BillingService

async def calls(b: BillingService, when: datetime) -> None:
    await b.allocate_days(1, "shop", 30, "user:1", "k")  # line 6: right
    await b.allocate_days(1, "shop", "30", "user:1", "k")  # line 7: days as text
    await b.allocate_days(1, "shop", 30, "user:1")  # line 8: no key
    await b.delete_channel(1, 2, "user:1", "k", expected_until=3)  # line 9: not a datetime
    await b.grant_days(1, 5, "why", "support:1", "k", bogus=1)  # line 10: no such keyword
    await b.delete_channel(1, 2, "user:1", "k", expected_until=when)  # line 11: right
    reveal_type(await b.renew_channel(3, "scheduler:renew"))  # line 12
'''


def test_mypy_checks_the_arguments_of_every_use_case(tmp_path: Path) -> None:
    path = tmp_path / "snippet.py"
    path.write_text(SNIPPET, encoding="utf-8")
    stdout, _, _ = api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(path)]
    )
    errors = {int(n) for n in re.findall(r"snippet\.py:(\d+): error", stdout)}
    assert errors == {7, 8, 9, 10}, stdout
    assert 'snippet.py:12: note: Revealed type is "core.outcomes.ChannelRenewed"' in stdout
