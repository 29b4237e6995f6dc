"""Double subscriptions and periods paid with the wrong money (issue 11, point 6).

Through the real bot (python-telegram-bot against the loopback Bot API server), the real
StripeGateway against the loopback Stripe server and the real webhook over HTTP (the
`w` world of test_degraded_apis): a channel has at most one subscription, pending or
active; a second /subscribe names the first and makes no second checkout, sequentially
and concurrently; an expired checkout or a deleted subscription frees the channel; an
`invoice.paid` whose amount or currency is not the subscription's price credits nothing,
is answered and counted as `mismatch`, and support is told.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from core import notices
from core.model import OrderKind, OrderStatus, TransferKind
from core.payments import EventHandled, EventResult
from partnerbot.jobs import run_job
from partnerbot.runner import webhook_label
from tests.faults.test_degraded_apis import (  # noqa: F401  (w: the fixture)
    MATE,
    OWNER,
    RECONCILE_AFTER,
    World,
    session_of,
    w,
)
from tests.integration.payments_harness import (
    CHECKOUT,
    HTTPX_DEPRECATION,
    PaymentsHarness,
    payments_harness,
)

pytestmark = [
    pytest.mark.filterwarnings(HTTPX_DEPRECATION),
    pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning"),
]

PENDING = re.compile(
    r"^“shop” already has a monthly subscription waiting for payment, open until "
    r"\d{4}-\d\d-\d\d \d\d:\d\d UTC: pay it with its button, or let it lapse and ask again\. "
    r"Nothing new was made\.$"
)


def subscription_checkouts(world: World) -> list[Any]:
    return [
        r for r in world.stripe.requests_to(CHECKOUT, "POST")
        if r.params.get("mode") == "subscription"
    ]


async def open_subscriptions(world: World) -> list[Any]:
    found = await world.h.billing.orders(world.acme.id, (OrderStatus.OPEN,))
    return [o for o in found if o.kind is OrderKind.SUBSCRIPTION]


async def test_a_second_subscribe_names_the_pending_one_and_makes_no_second_checkout(
    w: World,  # noqa: F811
) -> None:
    h, owner = w.h, w.acme.owner
    first = await h.ask(owner, "/subscribe shop monthly")
    assert first.text.startswith("Subscription for shop:"), first.text
    for again in ("/subscribe shop monthly", "/subscribe SHOP annual"):
        second = await h.ask(owner, again)
        assert PENDING.match(second.text), second.text
        # Its own link again, not a new one.
        assert [url for row in second.buttons() for _, url in row] == [
            url for row in first.buttons() for _, url in row
        ]
    assert len(subscription_checkouts(w)) == 1
    assert len(await open_subscriptions(w)) == 1

    # Paid: now it is active, and a third /subscribe says so.
    done = await w.deliver(w.stripe.complete_session(session_of(first)))
    assert done["result"] == "subscribed"
    third = await h.ask(owner, "/subscribe shop annual")
    assert third.text == (
        "“shop” is already paid by a monthly subscription since 2030-01-14. "
        "Nothing new was made; to change it, ask support to cancel that one first."
    ), third.text
    assert third.buttons() == []
    assert len(subscription_checkouts(w)) == 1

    # Cancelled in Stripe: the channel is free again.
    [order] = [o for o in await h.billing.orders(w.acme.id) if o.kind is OrderKind.SUBSCRIPTION]
    assert order.payment_ref is not None
    ended = await w.deliver(w.stripe.cancel_subscription(order.payment_ref))
    assert ended["result"] == "ended"
    fresh = await h.ask(owner, "/subscribe shop annual")
    assert fresh.text.startswith("Subscription for shop:"), fresh.text
    assert len(subscription_checkouts(w)) == 2


async def test_two_members_subscribing_at_once_make_one_checkout(w: World) -> None:  # noqa: F811
    h, owner = w.h, w.acme.owner
    mate = await h.link(MATE, w.acme.id)
    await h.drain(owner)
    await h.drain(mate)
    await asyncio.gather(
        owner.send("/subscribe shop monthly"), mate.send("/subscribe shop monthly")
    )
    answers = [await owner.wait_reply(), await mate.wait_reply()]
    paying = [a for a in answers if a.text.startswith("Subscription for shop:")]
    refused = [a for a in answers if a.text.startswith("“shop” already has a monthly")]
    assert (len(paying), len(refused)) == (1, 1), [a.text for a in answers]
    assert len(subscription_checkouts(w)) == 1
    assert len(await open_subscriptions(w)) == 1


async def test_an_expired_checkout_frees_the_channel(w: World) -> None:  # noqa: F811
    h, owner = w.h, w.acme.owner
    first = await h.ask(owner, "/subscribe shop monthly")
    assert PENDING.match((await h.ask(owner, "/subscribe shop monthly")).text)
    expired = await w.deliver(w.stripe.expire_session(session_of(first)))
    assert expired["result"] == "expired"
    second = await h.ask(owner, "/subscribe shop monthly")
    assert second.text.startswith("Subscription for shop:"), second.text

    # Its webhook lost: the reconcile job finds it expired and frees the channel.
    assert PENDING.match((await h.ask(owner, "/subscribe shop monthly")).text)
    w.stripe.expire_session(session_of(second))  # Stripe's event never arrives
    w.clock.advance(timedelta(minutes=RECONCILE_AFTER + 1))
    summary = await run_job("reconcile", w.services)
    assert "1 closed" in summary, summary
    third = await h.ask(owner, "/subscribe shop monthly")
    assert third.text.startswith("Subscription for shop:"), third.text
    assert len(subscription_checkouts(w)) == 3
    assert len(await open_subscriptions(w)) == 1


# ------------------------------------------------------------- periods paid with other money


@pytest.fixture
async def ph(tmp_path: Path) -> AsyncIterator[PaymentsHarness]:
    async with payments_harness(tmp_path) as harness:
        yield harness


@pytest.mark.parametrize(
    ("case", "changes"),
    [
        ("zero", {"amount_paid": 0, "amount_due": 0, "total": 0, "subtotal": 0}),
        ("too little", {"amount_paid": 1, "amount_due": 1, "total": 1, "subtotal": 1}),
        ("other currency", {"currency": "eur"}),
    ],
)
async def test_a_period_paid_with_other_money_credits_nothing_and_support_is_told(
    ph: PaymentsHarness, case: str, changes: dict[str, Any]
) -> None:
    acme = await ph.new_partner("Acme", monthly_price=1000, channels=["shop"], member_id=101)
    order = await ph.payments.start_subscription(acme.id, "shop", "month", "user:101")
    assert order.provider_ref is not None
    assert await ph.deliver(ph.fake.complete_session(order.provider_ref)) == "subscribed"
    sub_id = ph.session(order)["subscription"]
    paid = ph.event_for("invoice.paid", ph.fake.get(sub_id)["latest_invoice"])
    forged = ph.variant(paid, **changes)  # signed: Stripe's own word, other money
    ph.webhook_results.clear()

    assert (case, await ph.deliver(forged)) == (case, "mismatch")
    assert (await ph.channel(acme.id, "shop")).active_until is None  # no days
    assert await ph.transfers(TransferKind.SUBSCRIPTION) == []
    assert await ph.deliver(forged) == "mismatch"  # a redelivery: answered the same
    assert [webhook_label(r) for r in ph.webhook_results] == ["mismatch", "duplicate"]
    assert webhook_label(EventHandled(EventResult.MISMATCH)) == "mismatch"
    [told] = await ph.notices(notices.PERIOD_MISMATCH)
    assert told.partner_id is None  # to support
    assert told.notice == notices.PeriodMismatched(
        partner_id=acme.id, channel="shop", invoice_ref=forged["data"]["object"]["id"],
        expected_amount=1000, expected_currency="usd",
        paid_amount=forged["data"]["object"]["amount_paid"],
        paid_currency=forged["data"]["object"]["currency"],
    )
    assert await ph.notices(notices.SUBSCRIPTION_PAID) == []

    # The genuine invoice still extends the channel, once.
    assert await ph.deliver(paid) == "extended"
    assert (await ph.channel(acme.id, "shop")).active_until is not None
    assert len(await ph.transfers(TransferKind.SUBSCRIPTION)) == 1
