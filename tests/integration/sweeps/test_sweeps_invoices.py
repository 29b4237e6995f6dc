"""Monthly invoices (rule 6): billing days past a short month's end, in a zone with DST;
runs killed half-way, run while Stripe is down, and run at once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from core import notices
from core.jobs import billing_date, run_invoices
from core.payments import PaymentService
from storage.sqlite import SqliteStore
from tests.integration.sweeps.harness import BERLIN, Book, Killed, ReadFirst

# ---------------------------------------------------------------- monthly invoices (rule 6)


@pytest.mark.parametrize(("year", "last"), [(2030, 28), (2028, 29)])
async def test_billing_day_31_is_the_last_day_of_february(
    book: Book, year: int, last: int
) -> None:
    pid = await book.partner("Acme", billing_day=31)
    await book.channel(pid, "shop", 30)
    assert billing_date(year, 2, 31) == billing_date(year, 2, 30) == datetime(
        year, 2, last, tzinfo=UTC
    ).date()

    book.clock.set(datetime(year, 2, last - 1, 23, 59, tzinfo=UTC))
    early = await book.run_invoices()
    book.clock.set(datetime(year, 2, last, 0, 0, tzinfo=UTC))
    due = await book.run_invoices()
    book.clock.set(datetime(year, 2, last, 18, 0, tzinfo=UTC))
    again = await book.run_invoices()
    book.clock.set(datetime(year, 3, 1, 6, 15, tzinfo=UTC))
    march = await book.run_invoices()

    assert (early.period, early.not_due, early.issued) == (f"{year}-02", [pid], [])
    assert (due.issued, again.issued, again.already) == ([pid], [], [pid])
    assert (march.period, march.not_due) == (f"{year}-03", [pid])  # March 31 is its day
    assert await book.invoices() == [(pid, f"{year}-02")]


async def test_billing_day_31_in_a_30_day_month_is_the_30th(book: Book) -> None:
    pid = await book.partner("Acme", billing_day=31)
    await book.channel(pid, "shop", 30)
    book.clock.set(datetime(2030, 4, 29, 12, tzinfo=UTC))
    assert (await book.run_invoices()).not_due == [pid]
    book.clock.set(datetime(2030, 4, 30, 12, tzinfo=UTC))
    assert (await book.run_invoices()).issued == [pid]
    assert await book.invoices() == [(pid, "2030-04")]


async def test_the_billing_day_is_the_date_in_the_configured_zone(book: Book) -> None:
    pid = await book.partner("Acme", billing_day=1)
    await book.channel(pid, "shop", 30)
    # January's invoice first, so that only February's can be issued below.
    book.clock.set(datetime(2030, 1, 20, 12, tzinfo=UTC))
    assert (await book.run_invoices(BERLIN)).issued == [pid]

    # 23:30 UTC on January 31 is already February 1 in Berlin (CET, UTC+1).
    book.clock.set(datetime(2030, 1, 31, 23, 30, tzinfo=UTC))
    in_utc = await book.run_invoices(UTC)
    in_berlin = await book.run_invoices(BERLIN)

    assert (in_utc.period, in_utc.already) == ("2030-01", [pid])
    assert (in_berlin.period, in_berlin.issued) == ("2030-02", [pid])
    assert await book.invoices() == [(pid, "2030-01"), (pid, "2030-02")]


async def test_a_billing_day_on_the_spring_dst_change_is_invoiced_once(book: Book) -> None:
    # 2030-03-31 is a Sunday: in Berlin 02:00 CET jumps to 03:00 CEST.
    pid = await book.partner("Acme", billing_day=31)
    await book.channel(pid, "shop", 30)
    runs = []
    for instant in (
        datetime(2030, 3, 30, 22, 59, tzinfo=UTC),  # 23:59 CET on the 30th
        datetime(2030, 3, 30, 23, 0, tzinfo=UTC),  # 00:00 CET on the 31st
        datetime(2030, 3, 31, 0, 59, tzinfo=UTC),  # 01:59 CET
        datetime(2030, 3, 31, 1, 0, tzinfo=UTC),  # 03:00 CEST
        datetime(2030, 3, 31, 21, 59, tzinfo=UTC),  # 23:59 CEST
        datetime(2030, 3, 31, 22, 0, tzinfo=UTC),  # 00:00 CEST on April 1
    ):
        book.clock.set(instant)
        runs.append(await book.run_invoices(BERLIN))

    assert [(r.period, r.issued, r.not_due) for r in runs] == [
        ("2030-03", [], [pid]),
        ("2030-03", [pid], []),
        ("2030-03", [], []),
        ("2030-03", [], []),
        ("2030-03", [], []),
        ("2030-04", [], [pid]),
    ]
    assert await book.invoices() == [(pid, "2030-03")]


async def test_the_repeated_autumn_hour_invoices_once(book: Book) -> None:
    # 2030-10-27: 03:00 CEST falls back to 02:00 CET; a job at 02:30 local runs twice
    # (APScheduler fires at both 02:30s: see test_scheduler_wiring).
    pid = await book.partner("Acme", billing_day=27)
    await book.channel(pid, "shop", 30)
    book.clock.set(datetime(2030, 10, 27, 0, 30, tzinfo=UTC))  # 02:30 CEST
    first = await book.run_invoices(BERLIN)
    book.clock.set(datetime(2030, 10, 27, 1, 30, tzinfo=UTC))  # 02:30 CET
    second = await book.run_invoices(BERLIN)

    assert (first.issued, second.issued, second.already) == ([pid], [], [pid])
    assert await book.invoices() == [(pid, "2030-10")]
    assert len(await book.sent(notices.INVOICE_ISSUED)) == 1


async def test_an_invoice_run_killed_half_way_and_run_again_invoices_everyone_once(
    book: Book,
) -> None:
    pids = [await book.partner(f"P{i}", members=(100 + i,)) for i in range(4)]
    for pid in pids:
        await book.channel(pid, f"shop-{pid}", 30)
    book.gateway.kill_for = {pids[2]}  # dies after the order, making its payment link

    with pytest.raises(Killed):
        await book.run_invoices()
    assert await book.invoices() == [(p, "2030-01") for p in pids[:3]]

    book.gateway.kill_for = set()
    rerun = await book.run_invoices()
    third = await book.run_invoices()

    assert (sorted(rerun.issued), sorted(rerun.already)) == (sorted([pids[3]]), pids[:3])
    assert third.issued == [] and sorted(third.already) == pids
    assert await book.invoices() == [(p, "2030-01") for p in pids]
    opened = await book.billing.orders(pids[2])
    assert [o.url for o in opened] == [f"https://pay.example/{opened[0].id}"]  # linked now
    assert await book.count("SELECT count(*) FROM transfers WHERE kind = 'purchase'") == 0


async def test_the_members_hear_of_an_invoice_whose_run_died_before_its_link(
    book: Book,
) -> None:
    pid = await book.partner("Acme", members=(101,))
    await book.channel(pid, "shop", 30)
    book.gateway.kill_for = {pid}
    with pytest.raises(Killed):
        await book.run_invoices()
    book.gateway.kill_for = set()
    await book.run_invoices()

    issued = await book.sent(notices.INVOICE_ISSUED)
    assert [(n.partner_id, n.facts["period"]) for n in issued] == [(pid, "2030-01")]


async def test_an_invoice_issued_while_stripe_was_down_is_announced_again_with_its_link(
    book: Book,
) -> None:
    pid = await book.partner("Acme", members=(101,))
    await book.channel(pid, "shop", 30)
    book.gateway.down = True
    down = await book.run_invoices()
    book.gateway.down = False
    up = await book.run_invoices()
    again = await book.run_invoices()

    assert (down.failed, up.already, again.already) == ([pid], [pid], [pid])
    issued = await book.sent(notices.INVOICE_ISSUED)
    [order] = await book.billing.orders(pid)
    assert [(n.key, n.facts["url"]) for n in issued] == [
        (f"invoice:{order.id}:unlinked", None),
        (f"invoice:{order.id}", f"https://pay.example/{order.id}"),
    ]


async def test_invoice_runs_at_once_issue_one_invoice_each(
    book: Book, second: SqliteStore
) -> None:
    pids = [await book.partner(f"P{i}", members=(100 + i,)) for i in range(5)]
    for pid in pids:
        await book.channel(pid, f"shop-{pid}", 30)
    gate = ReadFirst(3)
    stores = [gate(book.store), gate(book.store), gate(second)]

    runs = await asyncio.gather(*(
        run_invoices(s, book.clock, PaymentService(s, book.clock, book.gateway), UTC)
        for s in stores
    ))

    assert sorted(p for r in runs for p in r.issued) == pids
    assert sorted(await book.invoices()) == [(p, "2030-01") for p in pids]
    issued = await book.sent(notices.INVOICE_ISSUED)
    assert sorted(n.partner_id or 0 for n in issued) == pids
