"""Stripe signature timestamps outside the 300 s tolerance, both ways (issue 11, point 7).

stripe-python's `WebhookSignature.verify_header` refuses only timestamps older than the
tolerance; one an hour in the future (a replay prepared by someone who once held the
secret, or a sender with a wrong clock) must be refused the same way as a stale one:
400 "invalid signature", nothing changes, and the genuine delivery still credits.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.model import OrderStatus
from payments.webhook import Refused
from tests.integration.payments_harness import (
    HTTPX_DEPRECATION,
    PaymentsHarness,
    payments_harness,
)

pytestmark = pytest.mark.filterwarnings(HTTPX_DEPRECATION)

TOLERANCE = 300


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[PaymentsHarness]:
    async with payments_harness(tmp_path) as harness:
        yield harness


@pytest.mark.parametrize(
    "offset",
    [3600, TOLERANCE + 30, 10 * 365 * 86400, -3600, -(TOLERANCE + 30)],
    ids=["hour ahead", "just past tolerance ahead", "ten years ahead", "hour old", "stale"],
)
async def test_a_timestamp_beyond_the_tolerance_either_way_is_refused(
    h: PaymentsHarness, offset: int
) -> None:
    acme = await h.new_partner("Acme")
    order = await h.payments.start_topup(acme.id, 30, "user:1")
    assert order.provider_ref is not None
    event = h.fake.complete_session(order.provider_ref)
    before = await h.snapshot()

    status, body = await h.post(event, timestamp=int(time.time()) + offset)

    assert (status, body) == (400, {"status": "invalid signature"})
    assert h.webhook_results == [Refused.BAD_SIGNATURE]
    assert await h.snapshot() == before
    assert await h.stripe_events() == {}
    # The same event, signed now, is still the one that credits.
    assert await h.deliver(event) == "credited"
    assert (await h.order(order.id)).status is OrderStatus.PAID


@pytest.mark.parametrize("offset", [60, -60], ids=["a minute ahead", "a minute old"])
async def test_clock_skew_within_the_tolerance_is_accepted(
    h: PaymentsHarness, offset: int
) -> None:
    acme = await h.new_partner("Acme")
    order = await h.payments.start_topup(acme.id, 30, "user:1")
    assert order.provider_ref is not None
    event = h.fake.complete_session(order.provider_ref)
    status, body = await h.post(event, timestamp=int(time.time()) + offset)
    assert status == 200 and body["result"] == "credited", body


async def test_a_repeated_timestamp_cannot_hide_a_future_one(h: PaymentsHarness) -> None:
    """stripe's parser keeps the last `t=`; a current one put in front must not hide it."""
    acme = await h.new_partner("Acme")
    order = await h.payments.start_topup(acme.id, 30, "user:1")
    assert order.provider_ref is not None
    event = h.fake.complete_session(order.provider_ref)
    body, headers = h.fake.signed_webhook(event, h.secret, int(time.time()) + 3600)
    headers["Stripe-Signature"] = f"t={int(time.time())}," + headers["Stripe-Signature"]
    before = await h.snapshot()
    async with h.http.post(h.webhook_url, data=body, headers=headers) as resp:
        assert resp.status == 400
    assert await h.snapshot() == before
