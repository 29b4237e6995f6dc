"""Redelivered webhooks are counted as `duplicate`, not as their first result (issue 11,
point 7).

Stripe redelivers an event whenever it did not hear a 2xx in time. Before issue 10 each
redelivery was counted in `partnerbot_webhooks_total` under the first delivery's result,
so three credits delivered twice showed `credited` 6. This drives `partnerbot run` as a
real process (the composition root's own wiring of the webhook to the counter), delivers
three paid top-ups twice each over HTTP, and reads the metrics page.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.test_run import OWNER, SECRET, SUPPORT, running_bot

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def counter(page: str, name: str, **labels: str) -> float:
    """The value of one sample on a Prometheus text page (0 when absent)."""
    shown = ",".join(f'{k}="{v}"' for k, v in labels.items())
    wanted = f"{name}{{{shown}}}" if shown else name
    for line in page.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == wanted:
            return float(value)
    return 0.0


async def test_three_credits_delivered_twice_count_three_credited_three_duplicate(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as bot:
        support, owner = bot.tg.user(SUPPORT, "Sam"), bot.tg.user(OWNER, "Olga")
        await support.send("/newpartner Acme")
        code = re.search(r"\?start=([A-Za-z0-9_-]+)", (await support.wait_reply(10)).text)
        assert code
        await owner.send(f"/start {code.group(1)}")
        await owner.wait_reply(10)

        events = []
        for days in (30, 60, 90):
            await owner.send(f"/topup {days}")
            [[(_, url)]] = (await owner.wait_reply(10)).buttons()
            session = re.search(r"cs_test_[A-Za-z0-9]+", url or "")
            assert session, url
            events.append(bot.stripe.complete_session(session.group(0)))

        url = bot.http + "/stripe/webhook"
        for event in events + events:  # every event delivered twice
            status, _ = await bot.stripe.deliver_webhook(event, url, SECRET)
            assert status == 200
        for _ in events:
            assert "days credited" in (await owner.wait_reply(10)).text

        status, page = await bot.get("/metrics", bot.metrics)  # its own listener
        assert status == 200
        webhooks = "partnerbot_webhooks_total"
        assert counter(page, webhooks, result="credited") == 3
        assert counter(page, webhooks, result="duplicate") == 3
        assert counter(page, "partnerbot_payments_fulfilled_total") == 3
        assert counter(page, "partnerbot_days_credited_total") == 180
        await owner.send("/balance")
        assert (await owner.wait_reply(10)).text.splitlines()[0] == "Balance: 180 days"
