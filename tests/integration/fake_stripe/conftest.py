"""The fake Stripe server, started per test, and a real stripe-python client aimed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import stripe

from tests.fakes.stripe_api import FakeStripe


@pytest.fixture
async def fake() -> AsyncIterator[FakeStripe]:
    async with FakeStripe() as server:
        yield server
    assert server.internal_errors == []


@pytest.fixture
def client(fake: FakeStripe) -> stripe.StripeClient:
    return fake.make_client(timeout=5.0)
