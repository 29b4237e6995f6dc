"""The scheduler's work against a real SQLite file, with a clock the tests move.

Monthly invoices (rule 6) on billing days past a short month's end and in a zone with
DST; low-balance alerts (rule 7) crossed down, up and down again, right after the
operation and by the sweep; expiry warnings (rule 8) at their stage boundaries; auto-renew
(rule 9); invoice reminders. Each also killed half-way and run again, and run twice at
once (in one process, and from two connections to one file): nothing twice, nothing lost.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.notices import render
from core import alerts, channels, notices, sweeps
from core.days import DAY, runway_until
from core.errors import PaymentUnavailable
from core.jobs import InvoiceRun, billing_date, run_invoices
from core.model import (
    ChannelBilling,
    CheckoutLink,
    CheckoutRequest,
    Notice,
    OrderKind,
    OrderStatus,
    SessionState,
)
from core.payments import PaymentService
from core.policy import BillingPolicy
from core.ports import Ledger
from core.service import BillingService
from storage.sqlite import SqliteStore
from tests.conftest import FakeClock

BERLIN = ZoneInfo("Europe/Berlin")
ACTOR = "support:900"
SUPPORT = 900
T0 = datetime(2030, 1, 14, 9, 30, tzinfo=UTC)


class Killed(Exception):
    """Stands for the process dying at that point: nothing after it runs."""


# ------------------------------------------------------------------------------- set-up


class FakeGateway:
    """core.ports.PaymentGateway: links made instantly; can fail or 'die' for a partner."""

    def __init__(self) -> None:
        self.made: list[int] = []  # order ids, in the order the links were made
        self.kill_for: set[int] = set()  # partner ids whose link request kills the process
        self.down = False

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutLink:
        order = request.order
        if order.partner_id in self.kill_for:
            raise Killed(f"died making the link of order {order.id}")
        if self.down:
            raise PaymentUnavailable("test: Stripe is down")
        self.made.append(order.id)
        return CheckoutLink(f"cs_test_{order.id}", f"https://pay.example/{order.id}")

    async def session_state(self, provider_ref: str) -> SessionState:
        raise PaymentUnavailable("not used here")


@dataclass
class Sent:
    key: str
    partner_id: int | None
    kind: str
    facts: dict[str, Any]  # the stored payload
    notice: notices.AnyNotice  # the payload decoded


class Book:
    """A SQLite file, a FakeClock and the services over them, with set-up shortcuts."""

    def __init__(self, store: SqliteStore, clock: FakeClock, path: Path) -> None:
        self.store, self.clock, self.path = store, clock, path
        self.billing = BillingService(store, clock, BillingPolicy(low_balance_days=10))
        self.gateway = FakeGateway()
        self.payments = PaymentService(store, clock, self.gateway)
        self._keys = 0

    def key(self, prefix: str) -> str:
        self._keys += 1
        return f"{prefix}:{self._keys}"

    async def partner(
        self, name: str, *, days: int = 0, threshold: int | None = None,
        members: tuple[int, ...] = (), billing_day: int | None = None,
    ) -> int:
        made = await self.billing.create_partner(name, ACTOR)
        pid = made.partner.id
        for i, user_id in enumerate(members):
            code = made.invite_code if i == 0 else (
                await self.billing.create_invite(pid, ACTOR)
            ).code
            await self.billing.redeem_invite(code, user_id)
        if days:
            await self.grant(pid, days)
        if threshold is not None:
            await self.billing.set_alert_threshold(pid, threshold, ACTOR)
        if billing_day is not None:
            partner = await self.billing.partner(pid)
            await self.store.write(
                lambda lg: lg.update_partner(replace(partner, billing_day=billing_day))
            )
        return pid

    async def grant(self, pid: int, days: int) -> None:
        await self.billing.grant_days(pid, days, "test", ACTOR, self.key("grant"))

    async def channel(
        self, pid: int, name: str, days: int = 0, *, auto_renew: bool = False,
        granted: bool = True,
    ) -> int:
        made = await self.billing.create_channel(pid, name, ACTOR, self.key("channel"))
        if days:
            if granted:
                await self.grant(pid, days)
            await self.billing.allocate_days(pid, name, days, ACTOR, self.key("allocate"))
        if auto_renew:
            await self.billing.set_auto_renew(pid, name, True, ACTOR)
        return made.channel_id

    async def channels_of(self, pid: int) -> dict[str, Any]:
        found = await self.store.read(lambda lg: lg.list_channels(pid, include_deleted=True))
        return {c.name: c for c in found}

    async def balance(self, pid: int) -> int:
        return (await self.billing.summary(pid)).balance

    async def sent(self, kind: str | None = None) -> list[Sent]:
        rows = await self.store.execute_raw(
            "SELECT key, partner_id, kind, payload FROM notices ORDER BY id"
        )
        return [
            Sent(r[0], r[1], r[2], json.loads(r[3]), notices.decode(r[2], r[3]))
            for r in rows if kind is None or r[2] == kind
        ]

    async def count(self, sql: str, *args: Any) -> int:
        [(n,)] = await self.store.execute_raw(sql, args)
        return int(n)

    async def invoices(self) -> list[tuple[int, str | None]]:
        rows = await self.store.execute_raw(
            "SELECT partner_id, period FROM orders WHERE kind = 'invoice' ORDER BY id"
        )
        return [(r[0], r[1]) for r in rows]

    async def verify(self) -> None:
        report = await self.billing.verify()
        assert report.ok, "\n".join(str(v) for v in report.violations)

    async def run_invoices(self, tz: tzinfo = UTC, period: str | None = None) -> InvoiceRun:
        return await run_invoices(self.store, self.clock, self.payments, tz, period)


@pytest.fixture
async def book(tmp_path: Path) -> AsyncIterator[Book]:
    path = tmp_path / "sweeps.db"
    store = await SqliteStore.open(path, synchronous="NORMAL")
    try:
        yield Book(store, FakeClock(T0), path)
    finally:
        await store.close()


@pytest.fixture
async def second(book: Book) -> AsyncIterator[SqliteStore]:
    """Another connection to the same file, as a second process would have."""
    store = await SqliteStore.open(book.path, synchronous="NORMAL")
    try:
        yield store
    finally:
        await store.close()


class ReadFirst:
    """Store proxies whose writes wait until `n` runs have read: the interleaving where
    runs started at once all work from the same list (otherwise left to timing)."""

    def __init__(self, n: int) -> None:
        self.n, self.reads, self.ready = n, 0, asyncio.Event()

    def __call__(self, store: SqliteStore) -> Any:
        gate = self

        class Gated:
            async def read(self, work: Callable[[Ledger], Any]) -> Any:
                result = await store.read(work)
                gate.reads += 1
                if gate.reads >= gate.n:
                    gate.ready.set()
                return result

            async def write(self, work: Callable[[Ledger], Any]) -> Any:
                await asyncio.wait_for(gate.ready.wait(), 5)
                return await store.write(work)

            async def verify(self, work: Callable[[Any], Any]) -> Any:
                return await store.verify(work)

        return Gated()


def die_on_call(n: int, real: Callable[..., Any]) -> Callable[..., Any]:
    """`real`, except that its n-th call (1-based) raises Killed."""
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == n:
            raise Killed(f"died in call {n} of {real.__name__}")
        return real(*args, **kwargs)

    return wrapper


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


# ------------------------------------------------------------------- low balance (rule 7)


async def test_crossing_down_up_and_down_alerts_right_after_each_operation(
    book: Book,
) -> None:
    pid = await book.partner("Acme", days=20, threshold=10, members=(101,))
    assert await book.sent(notices.LOW_BALANCE) == []

    await book.grant(pid, -15)  # 5 < 10: down
    first = await book.sent(notices.LOW_BALANCE)
    await book.grant(pid, -1)  # still below: nothing new
    await book.grant(pid, 6)  # 10: back up, re-armed
    rearmed = await book.sent(notices.LOW_BALANCE)
    await book.grant(pid, -1)  # 9: down again
    second = await book.sent(notices.LOW_BALANCE)
    swept = await sweeps.sweep_alerts(book.store, book.clock)

    assert [n.facts["balance"] for n in first] == [5]
    assert rearmed == first
    assert [(n.key, n.facts["balance"], n.facts["threshold"]) for n in second] == [
        (f"low:{pid}:1", 5, 10), (f"low:{pid}:2", 9, 10),
    ]
    assert (swept.looked_at, swept.acted) == (0, 0)  # nothing left for the sweep


async def test_the_sweep_finds_crossings_no_transfer_made(book: Book) -> None:
    # A threshold changed behind the use cases' back (or a missed check).
    pid = await book.partner("Acme", days=20, threshold=10, members=(101,))

    async def threshold(days: int) -> None:
        def work(lg: Ledger) -> None:
            partner = lg.get_partner(pid)
            assert partner is not None
            lg.update_partner(replace(partner, low_balance_days=days))

        await book.store.write(work)

    await threshold(25)
    down = await sweeps.sweep_alerts(book.store, book.clock)
    again = await sweeps.sweep_alerts(book.store, book.clock)
    await threshold(15)
    up = await sweeps.sweep_alerts(book.store, book.clock)
    await threshold(30)
    down_again = await sweeps.sweep_alerts(book.store, book.clock)

    assert [(r.looked_at, r.acted) for r in (down, again, up, down_again)] == [
        (1, 1), (0, 0), (1, 0), (1, 1)
    ]
    sent = await book.sent(notices.LOW_BALANCE)
    assert [(n.key, n.facts["threshold"]) for n in sent] == [
        (f"low:{pid}:1", 25), (f"low:{pid}:2", 30)
    ]


async def test_the_alert_tells_the_runway_of_the_running_channels(book: Book) -> None:
    pid = await book.partner("Acme", days=60, threshold=10, members=(101,))
    await book.channel(pid, "a", 10, granted=False)
    await book.channel(pid, "b", 20, granted=False)
    await book.grant(pid, -25)  # 5 left: down

    [alert] = await book.sent(notices.LOW_BALANCE)
    expected = runway_until(5, [T0 + 10 * DAY, T0 + 20 * DAY], T0)
    assert expected is not None
    assert (alert.facts["running"], alert.facts["runway"]) == (2, expected.isoformat())
    text = render(
        Notice(1, alert.key, pid, alert.kind, json.dumps(alert.facts), T0), BERLIN
    )
    assert f"until {expected.astimezone(BERLIN):%Y-%m-%d}" in text


async def test_an_allocation_that_crosses_the_threshold_counts_its_channel_in_the_runway(
    book: Book,
) -> None:
    pid = await book.partner("Acme", days=40, threshold=10, members=(101,))
    await book.channel(pid, "shop", 35, granted=False)  # 5 left: the allocation crosses

    [alert] = await book.sent(notices.LOW_BALANCE)
    assert alert.facts["running"] == 1
    expected = runway_until(5, [T0 + 35 * DAY], T0)
    assert expected is not None and alert.facts["runway"] == expected.isoformat()


async def test_an_alert_run_killed_half_way_and_run_again_alerts_each_partner_once(
    book: Book, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids = [await book.partner(f"P{i}", days=20, threshold=10, members=(100 + i,))
            for i in range(3)]
    await book.store.write(lambda lg: [
        lg.update_partner(replace(p, low_balance_days=50))
        for p in lg.list_partners()
    ])
    monkeypatch.setattr(alerts.notices, "notify", die_on_call(2, notices.notify))
    with pytest.raises(Killed):
        await sweeps.sweep_alerts(book.store, book.clock)
    assert await book.sent(notices.LOW_BALANCE) == []  # one transaction: all or nothing
    monkeypatch.undo()

    rerun = await sweeps.sweep_alerts(book.store, book.clock)
    third = await sweeps.sweep_alerts(book.store, book.clock)

    assert (rerun.acted, third.acted) == (3, 0)
    sent = await book.sent(notices.LOW_BALANCE)
    assert sorted(n.key for n in sent) == sorted(f"low:{p}:1" for p in pids)


async def test_alert_sweeps_at_once_alert_once(book: Book, second: SqliteStore) -> None:
    for i in range(4):
        await book.partner(f"P{i}", days=20, threshold=10, members=(100 + i,))
    await book.store.write(lambda lg: [
        lg.update_partner(replace(p, low_balance_days=50)) for p in lg.list_partners()
    ])

    results = await asyncio.gather(
        sweeps.sweep_alerts(book.store, book.clock),
        sweeps.sweep_alerts(book.store, book.clock),
        sweeps.sweep_alerts(second, book.clock),
        sweeps.sweep_alerts(second, book.clock),
    )

    assert sum(r.acted for r in results) == 4
    assert len(await book.sent(notices.LOW_BALANCE)) == 4


# ------------------------------------------------------------------------ expiry (rule 8)


async def test_expiry_warnings_come_3_days_and_1_day_before_and_on_expiry_once_each(
    book: Book,
) -> None:
    pid = await book.partner("Acme", members=(101,))
    await book.channel(pid, "shop", 10)
    until = T0 + 10 * DAY
    seen: list[tuple[timedelta, list[int]]] = []
    for before in (
        3 * DAY + timedelta(seconds=1), 3 * DAY, 2 * DAY, DAY + timedelta(seconds=1), DAY,
        timedelta(hours=1), timedelta(0), -DAY, -8 * DAY,
    ):
        book.clock.set(until - before)
        await sweeps.sweep_expiry(book.store, book.clock)
        await sweeps.sweep_expiry(book.store, book.clock)  # a re-run changes nothing
        seen.append((before, [n.facts["stage"] for n in await book.sent(notices.EXPIRY)]))

    assert [stages for _, stages in seen] == [
        [], [3], [3], [3], [3, 1], [3, 1], [3, 1, 0], [3, 1, 0], [3, 1, 0]
    ]
    warned = await book.store.execute_raw("SELECT stage FROM expiry_warnings ORDER BY stage")
    assert warned == [(0,), (1,), (3,)]


async def test_expiry_stages_are_whole_days_of_time_across_a_dst_change(book: Book) -> None:
    # Berlin moves its clocks on 2030-03-31; the channel ends at 12:00 CEST that day.
    # Three days before is 72 hours before: 11:00 CET on the 28th, not 12:00.
    pid = await book.partner("Acme", members=(101,))
    book.clock.set(datetime(2030, 3, 21, 10, 0, tzinfo=UTC))
    await book.channel(pid, "shop", 10)
    until = datetime(2030, 3, 31, 12, 0, tzinfo=BERLIN)
    assert (await book.channels_of(pid))["shop"].active_until == until

    book.clock.set(datetime(2030, 3, 28, 10, 59, 59, tzinfo=BERLIN))
    early = await sweeps.sweep_expiry(book.store, book.clock)
    book.clock.set(datetime(2030, 3, 28, 11, 0, tzinfo=BERLIN))
    on_time = await sweeps.sweep_expiry(book.store, book.clock)
    book.clock.set(datetime(2030, 3, 30, 12, 0, tzinfo=BERLIN))  # 24 h before
    one_day = await sweeps.sweep_expiry(book.store, book.clock)

    assert (early.acted, on_time.acted, one_day.acted) == (0, 1, 1)
    three, one = await book.sent(notices.EXPIRY)
    text = render(Notice(1, three.key, pid, three.kind, json.dumps(three.facts), T0), BERLIN)
    assert "expire within 3 days" in text and "<b>shop</b> (2030-03-31)" in text
    assert one.facts["stage"] == 1


async def test_a_channel_given_days_is_warned_again_for_its_new_expiry(book: Book) -> None:
    pid = await book.partner("Acme", members=(101,))
    await book.channel(pid, "shop", 3)
    await sweeps.sweep_expiry(book.store, book.clock)  # stage 3 for the first expiry
    await book.grant(pid, 5)
    await book.billing.allocate_days(pid, "shop", 5, ACTOR, "more")  # now T0 + 8 days
    await sweeps.sweep_expiry(book.store, book.clock)  # not within 3 days any more
    book.clock.advance(5 * DAY)
    await sweeps.sweep_expiry(book.store, book.clock)

    sent = await book.sent(notices.EXPIRY)
    assert [n.facts["stage"] for n in sent] == [3, 3]
    assert [n.notice for n in sent] == [
        notices.ChannelsExpiring(3, 1, (notices.ListedChannel("shop", T0 + 3 * DAY, False),)),
        notices.ChannelsExpiring(3, 1, (notices.ListedChannel("shop", T0 + 8 * DAY, False),)),
    ]


async def test_expiry_sends_one_message_per_partner_and_stage_within_telegram_limits(
    book: Book,
) -> None:
    pid = await book.partner("Acme", members=(101,))
    other = await book.partner("Beta", members=(102,))
    long = "x" * 60
    names = [f"{long}{i:03d}" for i in range(70)]
    await book.store.write(lambda lg: [
        channels.create_channel(lg, T0, pid, n, ACTOR, f"bulk:{n}") for n in names
    ])
    await book.grant(pid, 70 * 2)
    await book.store.write(lambda lg: [
        channels.allocate_days(lg, T0, pid, n, 2, ACTOR, f"alloc:{n}") for n in names
    ])
    await book.channel(other, "solo", 1)
    await book.channel(pid, "later", 30)
    gone = await book.channel(pid, "gone", 2)
    await book.billing.delete_channel(pid, gone, ACTOR, "del")

    result = await sweeps.sweep_expiry(book.store, book.clock)

    assert (result.looked_at, result.acted) == (71, 71)
    by_partner = {(n.partner_id, n.facts["stage"]): n for n in await book.sent(notices.EXPIRY)}
    assert sorted(by_partner) == [(pid, 3), (other, 1)]
    big = by_partner[(pid, 3)]
    assert big.facts["count"] == 70
    assert isinstance(big.notice, notices.ChannelsExpiring)
    assert len(big.notice.channels) == sweeps.MAX_LISTED
    text = render(Notice(1, big.key, pid, big.kind, json.dumps(big.facts), T0), UTC)
    assert len(text) <= 4096
    assert text.rstrip().splitlines()[-2] == "… and 50 more: /channels"


async def test_expired_long_ago_or_deleted_channels_are_not_warned(book: Book) -> None:
    pid = await book.partner("Acme", members=(101,))
    await book.channel(pid, "old", 1)
    book.clock.advance(9 * DAY)  # expired 8 days ago: past the grace period
    result = await sweeps.sweep_expiry(book.store, book.clock)
    assert (result.looked_at, result.acted) == (0, 0)


async def test_an_expiry_run_killed_half_way_and_run_again_warns_once(
    book: Book, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids = [await book.partner(f"P{i}", members=(100 + i,)) for i in range(3)]
    for pid in pids:
        await book.channel(pid, f"a-{pid}", 1)
        await book.channel(pid, f"b-{pid}", 2)
    monkeypatch.setattr(sweeps.notices, "notify", die_on_call(2, notices.notify))
    with pytest.raises(Killed):
        await sweeps.sweep_expiry(book.store, book.clock)
    assert await book.count("SELECT count(*) FROM expiry_warnings") == 0
    monkeypatch.undo()

    rerun = await sweeps.sweep_expiry(book.store, book.clock)
    third = await sweeps.sweep_expiry(book.store, book.clock)

    assert (rerun.acted, third.acted) == (6, 0)
    sent = await book.sent(notices.EXPIRY)
    assert sorted((n.partner_id or 0, n.facts["stage"], n.facts["count"]) for n in sent) == [
        (p, stage, 1) for p in pids for stage in (1, 3)
    ]


async def test_expiry_sweeps_at_once_warn_once(book: Book, second: SqliteStore) -> None:
    for i in range(4):
        pid = await book.partner(f"P{i}", members=(100 + i,))
        await book.channel(pid, f"c{i}", 1 + i % 3)

    results = await asyncio.gather(
        sweeps.sweep_expiry(book.store, book.clock),
        sweeps.sweep_expiry(second, book.clock),
        sweeps.sweep_expiry(book.store, book.clock),
        sweeps.sweep_expiry(second, book.clock),
    )

    assert sum(r.acted for r in results) == 4
    assert len(await book.sent(notices.EXPIRY)) == 4
    assert await book.count("SELECT count(*) FROM expiry_warnings") == 4


# ---------------------------------------------------------------------- auto-renew (rule 9)


async def test_auto_renew_extends_by_30_days_from_the_balance_once(book: Book) -> None:
    pid = await book.partner("Acme", members=(101,))
    await book.channel(pid, "shop", 2, auto_renew=True)
    await book.channel(pid, "manual", 1)
    await book.grant(pid, 100)

    early = await sweeps.sweep_renew(book.store, book.clock)
    book.clock.set(T0 + DAY)  # 24 h before the end of "shop"
    due = await sweeps.sweep_renew(book.store, book.clock)
    again = await sweeps.sweep_renew(book.store, book.clock)

    assert (early.acted, due.acted, again.acted) == (0, 1, 0)
    chans = await book.channels_of(pid)
    assert chans["shop"].active_until == T0 + 32 * DAY  # from its end, not from now
    assert chans["manual"].active_until == T0 + DAY
    assert await book.balance(pid) == 70
    [renewed] = await book.sent(notices.RENEWED)
    assert (renewed.partner_id, renewed.notice) == (pid, notices.ChannelsRenewed(
        1, (notices.ListedChannel("shop", T0 + 32 * DAY, True),)
    ))
    await book.verify()


async def test_one_alert_lists_the_channels_the_balance_cannot_renew(book: Book) -> None:
    pid = await book.partner("Acme", members=(101,))
    for name, days in (("a", 1), ("b", 1), ("c", 1)):
        await book.channel(pid, name, days, auto_renew=True)
    await book.grant(pid, 40)

    first = await sweeps.sweep_renew(book.store, book.clock)
    book.clock.advance(timedelta(hours=1))
    again = await sweeps.sweep_renew(book.store, book.clock)  # same day: no new alert

    assert (first.looked_at, first.acted, again.acted) == (3, 1, 0)
    assert await book.balance(pid) == 10
    [short] = await book.sent(notices.RENEW_SHORT)
    assert (short.facts["count"], short.facts["needed"], short.facts["balance"]) == (2, 60, 10)
    assert isinstance(short.notice, notices.RenewFellShort)
    assert short.notice.channels == tuple(
        notices.ListedChannel(name, T0 + DAY, True) for name in ("b", "c")
    )


async def test_a_partner_is_never_split_over_two_renew_batches(
    book: Book, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweeps, "RENEW_BATCH", 2)
    rich = await book.partner("Rich", members=(101,))
    poor = await book.partner("Poor", members=(102,))
    await book.channel(rich, "r1", 1, auto_renew=True)
    for name in ("p1", "p2", "p3", "p4"):
        await book.channel(poor, name, 1, auto_renew=True)
    await book.grant(rich, 30)

    result = await sweeps.sweep_renew(book.store, book.clock)

    assert (result.looked_at, result.acted) == (5, 1)
    [short] = await book.sent(notices.RENEW_SHORT)
    assert isinstance(short.notice, notices.RenewFellShort)
    assert (short.partner_id, short.facts["count"], [c.name for c in short.notice.channels]) == (
        poor, 4, ["p1", "p2", "p3", "p4"]
    )


async def test_a_renew_run_killed_half_way_and_run_again_renews_each_channel_once(
    book: Book, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweeps, "RENEW_BATCH", 2)
    pids = [await book.partner(f"P{i}", members=(100 + i,)) for i in range(3)]
    for pid in pids:
        await book.channel(pid, f"x-{pid}", 1, auto_renew=True)
        await book.channel(pid, f"y-{pid}", 1, auto_renew=True)
        await book.grant(pid, 60)
    # Batches: P0's two channels, P1's, P2's. Die in the middle of the second.
    monkeypatch.setattr(sweeps.channels, "renew_channel", die_on_call(4, channels.renew_channel))
    with pytest.raises(Killed):
        await sweeps.sweep_renew(book.store, book.clock)
    assert [await book.balance(p) for p in pids] == [0, 60, 60]  # batch 2 rolled back
    monkeypatch.setattr(sweeps.channels, "renew_channel", channels.renew_channel)

    rerun = await sweeps.sweep_renew(book.store, book.clock)
    third = await sweeps.sweep_renew(book.store, book.clock)

    assert (rerun.looked_at, rerun.acted, third.looked_at) == (4, 4, 0)
    assert [await book.balance(p) for p in pids] == [0, 0, 0]
    for pid in pids:
        assert {c.active_until for c in (await book.channels_of(pid)).values()} == {
            T0 + 31 * DAY
        }
    assert await book.count("SELECT count(*) FROM transfers WHERE kind = 'renewal'") == 6
    assert sorted(n.partner_id or 0 for n in await book.sent(notices.RENEWED)) == pids
    await book.verify()


async def test_renew_sweeps_at_once_renew_each_channel_once(
    book: Book, second: SqliteStore
) -> None:
    pids = [await book.partner(f"P{i}", members=(100 + i,)) for i in range(3)]
    for pid in pids:
        await book.channel(pid, f"x-{pid}", 1, auto_renew=True)
        await book.channel(pid, f"y-{pid}", 1, auto_renew=True)
        await book.grant(pid, 200)

    gate = ReadFirst(3)  # all three read the same six channels as due

    results = await asyncio.gather(
        sweeps.sweep_renew(gate(book.store), book.clock),
        sweeps.sweep_renew(gate(book.store), book.clock),
        sweeps.sweep_renew(gate(second), book.clock),
    )

    assert [r.looked_at for r in results] == [6, 6, 6]
    assert sum(r.acted for r in results) == 6
    assert await book.count("SELECT count(*) FROM transfers WHERE kind = 'renewal'") == 6
    assert [await book.balance(p) for p in pids] == [140, 140, 140]
    for pid in pids:
        assert {c.active_until for c in (await book.channels_of(pid)).values()} == {
            T0 + 31 * DAY
        }
    assert len(await book.sent(notices.RENEWED)) == 3
    await book.verify()


async def test_deleted_subscription_and_manual_channels_are_not_renewed(book: Book) -> None:
    pid = await book.partner("Acme", days=500, members=(101,))
    gone = await book.channel(pid, "gone", 1, auto_renew=True)
    await book.billing.delete_channel(pid, gone, ACTOR, "del")
    await book.channel(pid, "manual", 1)
    sub = await book.channel(pid, "sub", 1, auto_renew=True)
    await book.store.write(lambda lg: lg.update_channel(replace(
        lg.get_channel(sub), subscription_ref="sub_1",  # type: ignore[type-var]
        billing=ChannelBilling.SUBSCRIPTION,
    )))

    result = await sweeps.sweep_renew(book.store, book.clock)

    assert (result.looked_at, result.acted) == (0, 0)
    assert await book.count("SELECT count(*) FROM transfers WHERE kind = 'renewal'") == 0


# --------------------------------------------------------------------- invoice reminders


async def test_unpaid_invoices_are_reminded_then_overdue_and_support_is_told(
    book: Book,
) -> None:
    pid = await book.partner("Acme", members=(101,))
    paid_pid = await book.partner("Paid", members=(102,))
    order = await book.billing.open_order(pid, OrderKind.INVOICE, 30, ACTOR, channels=1)
    paid = await book.billing.open_order(paid_pid, OrderKind.INVOICE, 30, ACTOR, channels=1)
    await book.billing.credit_paid_order(paid.id, paid.amount, paid.currency, "stripe:evt")
    steps = []
    for at in (3 * DAY - timedelta(seconds=1), 3 * DAY, 5 * DAY, 14 * DAY, 20 * DAY):
        book.clock.set(T0 + at)
        result = await sweeps.sweep_reminders(book.store, book.clock)
        steps.append(result.detail)

    assert steps == [
        "0 reminded, 0 overdue", "1 reminded, 0 overdue", "0 reminded, 0 overdue",
        "0 reminded, 1 overdue", "0 reminded, 0 overdue",
    ]
    sent = [(n.kind, n.partner_id, n.facts["order_id"]) for n in await book.sent()
            if n.kind in (notices.INVOICE_REMINDER, notices.INVOICE_OVERDUE)]
    assert sent == [
        (notices.INVOICE_REMINDER, pid, order.id),
        (notices.INVOICE_OVERDUE, None, order.id),  # support
        (notices.INVOICE_OVERDUE, pid, order.id),
    ]
    assert (await book.store.read(lambda lg: lg.get_order(order.id))).status is (  # type: ignore[union-attr]
        OrderStatus.OPEN
    )
    assert await book.count(
        "SELECT count(*) FROM events WHERE action = 'invoice.overdue' AND partner_id = ?", pid
    ) == 1


async def test_reminder_sweeps_at_once_remind_once(book: Book, second: SqliteStore) -> None:
    for i in range(3):
        pid = await book.partner(f"P{i}", members=(100 + i,))
        await book.billing.open_order(pid, OrderKind.INVOICE, 30, ACTOR, channels=1)
    book.clock.advance(15 * DAY)

    await asyncio.gather(
        sweeps.sweep_reminders(book.store, book.clock),
        sweeps.sweep_reminders(second, book.clock),
        sweeps.sweep_reminders(book.store, book.clock),
    )

    kinds = [n.kind for n in await book.sent()]
    assert kinds.count(notices.INVOICE_REMINDER) == 3
    assert kinds.count(notices.INVOICE_OVERDUE) == 6  # support and members, once each


# ------------------------------------------------------------------------ everything, twice


async def test_a_month_of_hourly_sweeps_keeps_the_ledger_valid(book: Book) -> None:
    """Every sweep on the hour for 40 days across a month end: each channel renewed once
    per 30 days while the balance lasts, every warning once per expiry and stage."""
    book.clock.set(datetime(2030, 1, 20, 0, 0, tzinfo=UTC))
    pid = await book.partner("Acme", days=62, members=(101,), billing_day=31, threshold=20)
    await book.channel(pid, "auto", 5, auto_renew=True, granted=False)
    await book.channel(pid, "manual", 12, granted=False)
    # 45 left: one renewal (30), then 15 < 20 is low, and the next cannot be paid.
    start = book.clock.now()
    for hour in range(40 * 24):
        book.clock.set(start + timedelta(hours=hour))
        for sweep in (sweeps.sweep_alerts, sweeps.sweep_expiry, sweeps.sweep_renew):
            await sweep(book.store, book.clock)
        if hour % 24 == 6:
            await book.run_invoices(BERLIN)

    chans = await book.channels_of(pid)
    assert chans["auto"].active_until == start + 35 * DAY
    assert await book.balance(pid) == 15
    warned = await book.store.execute_raw(
        "SELECT c.name, w.stage FROM expiry_warnings w JOIN channels c ON c.id = w.channel_id"
        " ORDER BY c.name, w.active_until, w.stage DESC"
    )
    assert warned == [
        ("auto", 3), ("auto", 1), ("auto", 3), ("auto", 1), ("auto", 0),
        ("manual", 3), ("manual", 1), ("manual", 0),
    ]
    assert [n.key for n in await book.sent(notices.LOW_BALANCE)] == [f"low:{pid}:1"]
    short = await book.sent(notices.RENEW_SHORT)  # once a (UTC) day while it stays due
    assert [n.key for n in short] == [f"renew-short:{pid}:2030-02-{d}" for d in range(23, 29)]
    assert await book.invoices() == [(pid, "2030-01"), (pid, "2030-02")]
    await book.verify()
