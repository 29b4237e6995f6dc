"""The contract of core.ports.Store, run against the in-memory fake and a real SQLite file
alike (the parametrized `store` fixture of tests/conftest.py), so the fake behind the fast
tests stays honest.

Each scenario goes through BillingService where a use case exists and through
`store.write(lambda lg: ...)` where the store itself must hold the line. After every
scenario the whole ledger must verify.

The scenarios are split by behaviour, one file each: partners, members and invites;
channels and allocation; transfers and transactions; outcomes; orders and refunds;
the notice outbox and scheduler queries; what the schema refuses, and lookups.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.invariants import verify
from core.ports import Store


@pytest.fixture(autouse=True)
async def _ledger_verifies_after_each_scenario(store: Store) -> AsyncIterator[None]:
    yield
    report = await store.verify(verify)
    assert report.ok, [str(v) for v in report.violations]
