"""The multi-instance harness (tests/e2e/cluster.py) with today's single-process setup:
one `partnerbot run` on SQLite, polling, behind the loopback balancer, Stripe's webhooks
going through the balancer as they will to several instances."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.cluster import STRIPE_SECRET, SUPPORT, Cluster
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.telegram_api import FakeTelegram
from tests.faults import ledger_verify

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]
OWNER = 900_002


async def test_a_top_up_through_the_balancer_survives_the_instance_being_killed(
    tmp_path: Path,
) -> None:
    async with (
        FakeTelegram() as tg, FakeStripe() as stripe,
        Cluster(tmp_path, tg, stripe, instances=1, mode="polling") as cluster,
    ):
        [bot] = cluster.instances
        support, owner = tg.user(SUPPORT, "Sam"), tg.user(OWNER, "Olga")
        await support.send("/newpartner Acme")
        code = re.search(r"\?start=([A-Za-z0-9_-]+)", (await support.wait_reply(20)).text)
        assert code
        await owner.send(f"/start {code.group(1)}")
        assert "linked to Acme as owner" in (await owner.wait_reply(20)).text
        await owner.send("/topup 300")
        [[(_, url)]] = (await owner.wait_reply(20)).buttons()
        session = re.search(r"cs_test_[A-Za-z0-9]+", url or "")
        assert session, url
        event = stripe.complete_session(session.group(0))

        await bot.kill()
        status, _ = await stripe.deliver_webhook(event, cluster.stripe_webhook, STRIPE_SECRET)
        assert status == 502  # nobody behind the balancer: Stripe will deliver it again
        assert cluster.balancer.log[-1].refused == (0,)

        health = await bot.start()
        assert health.status == 200 and bot.generation == 2
        for _ in range(2):  # the retry, then a redelivery: credited once
            status, _ = await stripe.deliver_webhook(event, cluster.stripe_webhook, STRIPE_SECRET)
            assert status == 200
        credited = "300 days credited; balance 300 days."
        # The kill may have come before Telegram heard the /topup confirmed: then it is
        # delivered again and answered with a second link (README), so look for the notice.
        await tg.wait_until(lambda: credited in [m.text for m in owner.replies], timeout=20)
        seen = len(owner.replies)
        await owner.send("/balance")
        await tg.wait_until(lambda: any(
            m.text.startswith("Balance: ") for m in owner.replies[seen:]), timeout=20)
        balance = next(m.text for m in owner.replies[seen:] if m.text.startswith("Balance: "))
        assert balance.splitlines()[0] == "Balance: 300 days"
        assert [m.text for m in owner.replies].count(credited) == 1
        assert cluster.balancer.served == {0: 2}
        assert await cluster.stop_all() == [0]
        logs = cluster.logs()
        assert tg.token not in logs and STRIPE_SECRET not in logs and stripe.api_key not in logs

    summary = await ledger_verify(cluster.db)
    assert summary.startswith("ledger ok: 1 transfers")
