"""Monthly invoices (rule 6): `issue_invoice` and the `run_invoices` job over the real
gateway. One invoice per partner per period, whatever re-runs happen; links that Stripe
could not make are made by a later run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, timedelta
from pathlib import Path

import pytest

from core.errors import InvalidInput, NothingToInvoice, PaymentUnavailable
from core.jobs import InvoiceRun, run_invoices
from core.model import OrderKind, OrderStatus, Partner, TransferKind
from core.policy import BillingPolicy
from tests.integration.payments_harness import (
    CHECKOUT,
    HTTPX_DEPRECATION,
    PaymentsHarness,
    payments_harness,
    utc,
)

pytestmark = pytest.mark.filterwarnings(HTTPX_DEPRECATION)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[PaymentsHarness]:
    async with payments_harness(tmp_path) as harness:  # billing day 1, clock 2030-01-14
        yield harness


async def _run(h: PaymentsHarness, period: str | None = None) -> InvoiceRun:
    return await run_invoices(h.store, h.clock, h.payments, UTC, period)


async def _partner(
    h: PaymentsHarness, name: str, channels: int, *, billing_day: int | None = None,
    member_id: int | None = None,
) -> Partner:  # fmt: skip
    partner = await h.new_partner(
        name, channels=[f"{name.lower()}-{i}" for i in range(channels)], member_id=member_id
    )
    if billing_day is not None:
        partner = replace(partner, billing_day=billing_day)
        await h.store.write(lambda lg: lg.update_partner(partner))
    return partner


async def _stripe_sessions(h: PaymentsHarness) -> list[str]:
    client = h.fake.make_client()
    listed = await client.v1.checkout.sessions.list_async(params={"limit": 100})
    return sorted(s.id for s in listed.data)


# --------------------------------------------------------------------- issuing


async def test_an_invoice_bills_the_channels_and_paying_it_credits_them(
    h: PaymentsHarness,
) -> None:
    acme = await _partner(h, "Acme", 3, member_id=101)
    order = await h.payments.issue_invoice(acme.id, "support:900")
    assert (order.kind, order.channels, order.days, order.amount) == (
        OrderKind.INVOICE, 3, 90, 3000
    )
    assert order.period is None and order.status is OrderStatus.OPEN
    assert order.url is not None and order.provider_ref is not None
    [request] = h.checkout_requests(order.id)
    assert request.params["mode"] == "payment"
    assert request.params["metadata"] == {
        "partner_id": str(acme.id), "order_id": str(order.id), "days": "90", "kind": "invoice",
    }
    assert request.params["line_items"][0]["price_data"]["unit_amount"] == "3000"
    [issued] = await h.notices("invoice_issued")
    assert issued.partner_id == acme.id
    assert issued.facts["url"] == order.url
    assert issued.facts["days"] == 90

    # Support may size one by hand; the partner's balance moves only when paid.
    bigger = await h.payments.issue_invoice(acme.id, "support:900", channel_count=5)
    assert (bigger.days, bigger.amount) == (150, 5000)
    assert await h.balance(acme.id) == 0

    assert order.provider_ref is not None
    assert await h.deliver(h.fake.complete_session(order.provider_ref)) == "credited"
    assert await h.balance(acme.id) == 90
    assert (await h.order(bigger.id)).status is OrderStatus.OPEN
    assert len(await h.transfers(TransferKind.PURCHASE)) == 1
    await h.verify()


async def test_an_invoice_needs_channels(h: PaymentsHarness) -> None:
    acme = await _partner(h, "Acme", 1)
    [shop] = await h.billing.channel_views(acme.id)
    await h.billing.delete_channel(acme.id, shop.channel.id, "user:1", h.key("del"))
    with pytest.raises(NothingToInvoice):
        await h.payments.issue_invoice(acme.id, "support:900")
    with pytest.raises(NothingToInvoice):
        await h.payments.issue_invoice(acme.id, "support:900", channel_count=0)
    assert await h.orders(acme.id) == []
    assert h.checkout_requests() == []
    await h.verify()


# ------------------------------------------------------------------ the job


async def test_run_invoices_issues_once_per_partner_per_period(h: PaymentsHarness) -> None:
    acme = await _partner(h, "Acme", 3)
    beta = await _partner(h, "Beta", 1)
    empty = await _partner(h, "Empty", 0)

    # Three runs at once (a restart overlapping the scheduler, say), then three more.
    runs = await asyncio.gather(*(_run(h) for _ in range(3)))
    assert all(run.period == "2030-01" for run in runs)
    assert sorted(pid for run in runs for pid in run.issued) == [acme.id, beta.id]
    for _ in range(3):
        run = await _run(h)
        assert (run.issued, sorted(run.already), run.no_channels, run.failed) == (
            [], [acme.id, beta.id], [empty.id], []
        )

    invoices = await h.orders(None)
    assert sorted((o.partner_id, o.period, o.days) for o in invoices) == [
        (acme.id, "2030-01", 90), (beta.id, "2030-01", 30)
    ]
    # One Stripe session per invoice, each order pointing at its own.
    assert all(o.url is not None for o in invoices)
    assert sorted(o.provider_ref or "" for o in invoices) == await _stripe_sessions(h)
    assert len(await h.notices("invoice_issued")) == 2
    await h.verify()


async def test_billing_day_past_the_end_of_february_means_its_last_day(
    tmp_path: Path,
) -> None:
    async with payments_harness(
        tmp_path, start=utc(2030, 2, 27, 23), policy=BillingPolicy(billing_day=31)
    ) as h:
        acme = await _partner(h, "Acme", 2)
        assert acme.billing_day == 31

        early = await _run(h)
        assert (early.period, early.not_due, early.issued) == ("2030-02", [acme.id], [])
        assert await h.orders(acme.id) == []

        h.clock.set(utc(2030, 2, 28, 0))  # the last day of February 2030
        due = await _run(h)
        assert (due.period, due.issued) == ("2030-02", [acme.id])
        [invoice] = await h.orders(acme.id)
        assert (invoice.period, invoice.days) == ("2030-02", 60)

        h.clock.set(utc(2030, 3, 30, 12))  # March has 31 days: not yet
        assert (await _run(h)).not_due == [acme.id]
        h.clock.set(utc(2030, 3, 31, 0))
        assert (await _run(h)).issued == [acme.id]
        assert sorted(o.period or "" for o in await h.orders(acme.id)) == ["2030-02", "2030-03"]
        await h.verify()


async def test_partners_without_channels_get_no_invoice(h: PaymentsHarness) -> None:
    none = await _partner(h, "None", 0)
    gone = await _partner(h, "Gone", 1)
    [view] = await h.billing.channel_views(gone.id)
    await h.billing.delete_channel(gone.id, view.channel.id, "user:1", h.key("del"))
    run = await _run(h)
    assert sorted(run.no_channels) == sorted([none.id, gone.id])
    assert run.issued == [] and await h.orders(None) == []
    assert h.checkout_requests() == []
    await h.verify()


async def test_an_explicit_period_invoices_everyone_now(h: PaymentsHarness) -> None:
    due = await _partner(h, "Due", 1, billing_day=1)
    later = await _partner(h, "Later", 2, billing_day=28)
    assert (await _run(h)).not_due == [later.id]  # 14 January: Later bills on the 28th

    run = await _run(h, "2029-12")
    assert sorted(run.issued) == sorted([due.id, later.id])
    again = await _run(h, "2029-12")
    assert again.issued == [] and sorted(again.already) == sorted([due.id, later.id])
    periods = sorted((o.partner_id, o.period) for o in await h.orders(None))
    assert periods == sorted([(due.id, "2030-01"), (due.id, "2029-12"), (later.id, "2029-12")])
    with pytest.raises(InvalidInput):
        await _run(h, "2030-13")
    await h.verify()


# ------------------------------------------------------- Stripe failing on invoices


async def test_invoice_whose_link_failed_gets_it_on_the_next_run(h: PaymentsHarness) -> None:
    acme = await _partner(h, "Acme", 2, member_id=101)
    beta = await _partner(h, "Beta", 1)
    h.fake.fail_next(path=CHECKOUT, method="POST", status=500)  # Acme's, the first one
    first = await _run(h)
    assert (first.failed, first.issued) == ([acme.id], [beta.id])
    [invoice] = await h.orders(acme.id)
    assert invoice.status is OrderStatus.OPEN
    assert (invoice.url, invoice.provider_ref) == (None, None)
    [told] = [n for n in await h.notices("invoice_issued") if n.partner_id == acme.id]
    assert told.facts["url"] is None  # "/invoices has it" once the link exists

    h.clock.advance(timedelta(hours=1))
    second = await _run(h)
    assert (second.failed, sorted(second.already)) == ([], sorted([acme.id, beta.id]))
    linked = await h.order(invoice.id)
    assert linked.url is not None and linked.provider_ref is not None
    assert len(await h.orders(acme.id)) == 1  # the same invoice, not a second one
    assert await h.deliver(h.fake.complete_session(linked.provider_ref)) == "credited"
    assert await h.balance(acme.id) == 60
    await h.verify()


async def test_invoice_issued_on_request_while_stripe_is_down_gets_its_link_later(
    h: PaymentsHarness,
) -> None:
    """The bot tells support "the invoices job retries": it must, for on-request invoices."""
    acme = await _partner(h, "Acme", 2, billing_day=28)  # not due this month
    h.fake.fail_next(path=CHECKOUT, method="POST", status=500)
    with pytest.raises(PaymentUnavailable):
        await h.payments.issue_invoice(acme.id, "support:900")
    [invoice] = await h.orders(acme.id)
    assert (invoice.status, invoice.url, invoice.period) == (OrderStatus.OPEN, None, None)

    run = await _run(h)
    assert run.failed == []
    linked = await h.order(invoice.id)
    assert linked.url is not None and linked.provider_ref is not None
    assert await h.deliver(h.fake.complete_session(linked.provider_ref)) == "credited"
    assert await h.balance(acme.id) == 60
    await h.verify()


async def test_last_months_invoice_without_a_link_gets_it_next_month(
    tmp_path: Path,
) -> None:
    async with payments_harness(tmp_path, start=utc(2030, 1, 31, 23)) as h:
        acme = await _partner(h, "Acme", 1, billing_day=31)
        h.fake.fail_next(path=CHECKOUT, method="POST", status=500)
        assert (await _run(h)).failed == [acme.id]
        h.clock.set(utc(2030, 2, 1, 1))  # the next run falls in February
        run = await _run(h)
        assert run.failed == []
        [january] = await h.orders(acme.id)
        assert january.period == "2030-01"
        assert january.url is not None
        await h.verify()


async def test_a_link_whose_answer_was_lost_is_made_on_the_next_run(
    h: PaymentsHarness,
) -> None:
    """Stripe made the session but the answer never came back (timeout): the next run,
    later and with the same order, must still get a link."""
    acme = await _partner(h, "Acme", 2)
    h.fake.hang_next(3.0, path=CHECKOUT, method="POST", process="before")
    assert (await _run(h)).failed == [acme.id]
    [invoice] = await h.orders(acme.id)
    assert invoice.url is None

    h.clock.advance(timedelta(minutes=10))
    run = await _run(h)
    assert run.failed == []
    linked = await h.order(invoice.id)
    assert linked.url is not None and linked.provider_ref is not None
    assert await h.deliver(h.fake.complete_session(linked.provider_ref)) == "credited"
    assert await h.balance(acme.id) == 60
    await h.verify()


async def test_concurrent_runs_after_a_failed_link_agree_on_one_session(
    h: PaymentsHarness,
) -> None:
    acme = await _partner(h, "Acme", 1, member_id=101)
    h.fake.fail_next(path=CHECKOUT, method="POST", status=500)
    assert (await _run(h)).failed == [acme.id]
    h.clock.advance(timedelta(minutes=5))
    await asyncio.gather(*(_run(h) for _ in range(3)))
    [invoice] = await h.orders(acme.id)
    assert invoice.url is not None and invoice.provider_ref is not None
    # Whatever sessions Stripe made, the order keeps one; paying it credits.
    assert await h.deliver(h.fake.complete_session(invoice.provider_ref)) == "credited"
    assert await h.balance(acme.id) == 30
    await h.verify()


async def test_two_attempts_at_a_link_racing_keep_the_first_attached(
    h: PaymentsHarness,
) -> None:
    """Two attempts seconds apart ask Stripe for different sessions; the order must keep
    one link, the same one both callers hand out (else a payer may pay a session the order
    does not know, and nothing is credited)."""
    acme = await _partner(h, "Acme", 1)
    h.fake.fail_next(path=CHECKOUT, method="POST", status=500)
    with pytest.raises(PaymentUnavailable):
        await h.payments.issue_invoice(acme.id, "support:900")
    [invoice] = await h.orders(acme.id)

    first = asyncio.create_task(h.payments.ensure_link(invoice))
    await asyncio.sleep(0)  # the first has asked Stripe
    h.clock.advance(timedelta(seconds=5))
    second = asyncio.create_task(h.payments.ensure_link(invoice))
    a, b = await asyncio.gather(first, second)

    stored = await h.order(invoice.id)
    assert a.url == b.url == stored.url is not None
    assert a.provider_ref == b.provider_ref == stored.provider_ref is not None
    assert len(h.checkout_requests(invoice.id)) == 3  # the failed one and two sessions
    assert await h.deliver(h.fake.complete_session(stored.provider_ref)) == "credited"
    assert await h.balance(acme.id) == 30
    await h.verify()


@pytest.mark.parametrize("told_by", ["webhook", "reconcile"])
async def test_an_invoice_outlives_its_checkout_session(
    h: PaymentsHarness, told_by: str
) -> None:
    """A Checkout Session lives 24 h at most; an invoice is reminded of after days and
    flagged overdue after weeks, so it must stay payable: a lapsed link is replaced."""
    acme = await _partner(h, "Acme", 2, member_id=101)
    assert (await _run(h)).issued == [acme.id]
    [invoice] = await h.orders(acme.id)
    assert invoice.provider_ref is not None and invoice.url is not None

    expired = h.fake.expire_session(invoice.provider_ref)
    if told_by == "webhook":
        assert await h.deliver(expired) == "link_expired"
        lapsed = await h.order(invoice.id)
        assert (lapsed.status, lapsed.url, lapsed.provider_ref) == (OrderStatus.OPEN, None, None)
        assert await h.deliver(h.variant(expired)) == "unknown"  # that session is gone

    h.clock.advance(timedelta(minutes=30))
    done = await h.payments.reconcile(timedelta(minutes=30))
    assert (done.credited, done.closed, done.failed, done.relinked) == (0, 0, 0, 1)
    renewed = await h.order(invoice.id)
    assert renewed.status is OrderStatus.OPEN
    assert renewed.url is not None and renewed.provider_ref is not None
    assert renewed.provider_ref != invoice.provider_ref
    [request] = [r for r in h.checkout_requests(invoice.id) if r.status == 200][1:]
    assert request.params["expires_at"] == str(
        int((h.clock.now() + timedelta(hours=1)).timestamp())
    )

    # The old link's "expired" arriving late changes nothing; paying the new one credits.
    if told_by == "reconcile":
        assert await h.deliver(expired) == "unknown"
    assert await h.deliver(h.fake.complete_session(renewed.provider_ref)) == "credited"
    assert await h.balance(acme.id) == 60
    assert len(await h.orders(acme.id)) == 1
    assert (await _run(h)).already == [acme.id]
    await h.verify()
