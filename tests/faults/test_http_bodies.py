"""Bodies are bounded on every route of the public listener, chunked ones included
(issue 11, point 1): the real webhook behind partnerbot.http's server, in process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from payments.webhook import MAX_BODY, Refused
from tests.integration.payments_harness import payments_harness

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """A body sent with Transfer-Encoding: chunked (no Content-Length to refuse early)."""
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


async def test_a_chunked_webhook_body_over_the_limit_is_refused(tmp_path: Path) -> None:
    async with payments_harness(tmp_path) as h:
        async with h.http.post(
            h.base_url + "/stripe/webhook", data=chunks(4 * MAX_BODY),
            headers={"Stripe-Signature": "t=1,v1=00"},
        ) as resp:
            assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
            assert resp.status == 400
            assert (await resp.json())["status"] == "body too large"
        assert h.webhook_results == [Refused.TOO_LARGE]


async def test_a_chunked_body_on_a_route_that_takes_none_is_not_kept(tmp_path: Path) -> None:
    async with payments_harness(tmp_path) as h:
        async with h.http.get(h.base_url + "/healthz", data=chunks(4 * MAX_BODY)) as resp:
            assert resp.status == 200
        async with h.http.get(h.base_url + "/healthz") as resp:  # still serving
            assert resp.status == 200
