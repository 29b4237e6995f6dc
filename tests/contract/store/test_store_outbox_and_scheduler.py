"""Store contract: the notice outbox, and the queries the scheduler runs."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from core.model import GRANTS, Member, OrderKind, Role, partner_account
from core.ports import Ledger, Store
from core.service import BillingService
from tests.conftest import START
from tests.contract.store.helpers import (
    DAY,
    STRIPE,
    SUPPORT,
    fresh_key,
    new_partner,
    raw_partner,
    raw_transfer,
    save_members,
)

# the notice outbox ------------------------------------------------------------------


async def test_a_notice_is_queued_once_per_key(store: Store) -> None:
    pid = await store.write(raw_partner)

    first = await store.write(lambda lg: lg.add_notice("n1", pid, "kind", "{}", START))
    again = await store.write(lambda lg: lg.add_notice("n1", pid, "other", "{}", START))

    assert (first, again) == (True, False)


async def test_a_notice_reaches_each_reachable_member_or_each_support_agent_once(
    store: Store,
) -> None:
    pid = await store.write(raw_partner)
    members = [
        Member(user_id, pid, Role.MEMBER, START, unreachable=unreachable)
        for user_id, unreachable in ((100, False), (101, True), (102, False))
    ]
    await store.write(lambda lg: save_members(lg, members))
    await store.write(lambda lg: lg.add_notice("to-members", pid, "k", '{"a":1}', START))
    await store.write(lambda lg: lg.add_notice("to-support", None, "k", "{}", START))

    added = await store.write(lambda lg: lg.expand_notices([7, 8], START))
    again = await store.write(lambda lg: lg.expand_notices([7, 8], START))

    assert (added, again) == (4, 0)
    due = await store.read(lambda lg: lg.due_deliveries(START, 10))
    got = sorted((d.notice.key, d.user_id) for d in due)
    assert got == [("to-members", 100), ("to-members", 102), ("to-support", 7), ("to-support", 8)]
    notice = next(d.notice for d in due if d.notice.key == "to-members")
    assert (notice.partner_id, notice.kind, notice.payload, notice.created_at) == (
        pid, "k", '{"a":1}', START
    )
    assert {d.attempts for d in due} == {0}


async def test_a_delivery_is_due_until_sent_retried_later_or_given_up(store: Store) -> None:
    pid = await store.write(raw_partner)
    members = [Member(user_id, pid, Role.MEMBER, START) for user_id in (100, 101, 102)]
    await store.write(lambda lg: save_members(lg, members))
    await store.write(lambda lg: lg.add_notice("n1", pid, "k", "{}", START))
    await store.write(lambda lg: lg.expand_notices([], START))
    due = await store.read(lambda lg: lg.due_deliveries(START, 10))
    sent, retried, failed = sorted(due, key=lambda d: d.user_id)
    later = START + timedelta(minutes=5)

    def finish(lg: Ledger) -> None:
        lg.finish_delivery(sent.id, sent=True, at=START)
        lg.finish_delivery(retried.id, sent=False, at=START, error="429", retry_at=later)
        lg.finish_delivery(failed.id, sent=False, at=START, error="403")

    await store.write(finish)

    assert await store.read(lambda lg: lg.due_deliveries(later - DAY / 24 / 60, 10)) == []
    again = await store.read(lambda lg: lg.due_deliveries(later, 10))
    assert [(d.id, d.attempts) for d in again] == [(retried.id, 1)]
    assert len(await store.read(lambda lg: lg.due_deliveries(later, 0))) == 0


# scheduler queries ------------------------------------------------------------------


async def test_a_partner_below_its_threshold_is_an_alert_candidate_until_recorded(
    billing: BillingService, store: Store
) -> None:
    low = await new_partner(billing, "Low")
    high = await new_partner(billing, "High")
    await store.write(lambda lg: lg.add_transfer(
        raw_transfer(fresh_key(), GRANTS, partner_account(high), 100)
    ))

    state = await store.read(lambda lg: lg.alert_state(low))
    assert (state.partner.id, state.balance, state.below, state.crossings) == (low, 0, False, 0)
    candidates = await store.read(lambda lg: lg.alert_candidates())
    assert [c.partner.id for c in candidates] == [low]

    await store.write(lambda lg: lg.set_alert_state(low, True, 1, START))
    assert await store.read(lambda lg: lg.alert_candidates()) == []
    recorded = await store.read(lambda lg: lg.alert_state(low))
    assert (recorded.below, recorded.crossings) == (True, 1)

    await store.write(lambda lg: lg.add_transfer(
        raw_transfer(fresh_key(), GRANTS, partner_account(low), 100)
    ))
    rearm = await store.read(lambda lg: lg.alert_candidates())
    assert [(c.partner.id, c.balance, c.below) for c in rearm] == [(low, 100, True)]
    with pytest.raises(LookupError):
        await store.read(lambda lg: lg.alert_state(999))


async def test_running_expiring_and_renewable_channels_are_found_by_their_end(
    store: Store,
) -> None:
    acme = await store.write(lambda lg: raw_partner(lg, "Acme"))
    beta = await store.write(lambda lg: raw_partner(lg, "Beta"))

    def channels(lg: Ledger) -> dict[str, int]:
        made = {}
        for pid, name, days, renew, deleted in (
            (acme, "soon", 1, True, False),
            (acme, "later", 10, False, False),
            (acme, "gone", 2, True, True),
            (acme, "never", None, True, False),
            (beta, "past", -1, True, False),
            (beta, "week", 7, True, False),
        ):
            c = lg.add_channel(pid, name, START)
            lg.update_channel(replace(
                c,
                active_until=None if days is None else START + days * DAY,
                auto_renew=renew,
                deleted_at=START if deleted else None,
            ))
            made[name] = c.id
        return made

    ids = await store.write(channels)

    running = await store.read(lambda lg: lg.running_until([acme, beta, 999], START))
    assert {p: sorted(u) for p, u in running.items()} == {
        acme: [START + DAY, START + 10 * DAY], beta: [START + 7 * DAY], 999: []
    }
    expiring = await store.read(lambda lg: lg.channels_expiring(START, START + 7 * DAY))
    assert [c.id for c in expiring] == [ids["soon"], ids["week"]]
    renewable = await store.read(lambda lg: lg.channels_to_renew(START + 2 * DAY))
    assert [c.id for c in renewable] == [ids["soon"], ids["past"]]


async def test_an_expiry_warning_is_recorded_once_per_channel_end_and_stage(
    store: Store,
) -> None:
    pid = await store.write(raw_partner)
    shop = await store.write(lambda lg: lg.add_channel(pid, "Shop", START))
    end = START + 3 * DAY
    warnings = [(shop.id, end, 3), (shop.id, end, 1)]

    first = await store.write(lambda lg: lg.record_expiry_warnings(warnings, START))
    again = await store.write(
        lambda lg: lg.record_expiry_warnings([*warnings, (shop.id, end + DAY, 3)], START)
    )

    assert first == warnings
    assert again == [(shop.id, end + DAY, 3)]


async def test_an_open_invoice_is_reminded_and_flagged_overdue_once_each(
    billing: BillingService, store: Store
) -> None:
    pid = await new_partner(billing)
    old = await billing.open_order(pid, OrderKind.INVOICE, 30, SUPPORT, period="2030-01")
    paid = await billing.open_order(pid, OrderKind.INVOICE, 30, SUPPORT, period="2029-12")
    await billing.credit_paid_order(paid.id, paid.amount, "usd", STRIPE)
    await billing.open_order(pid, OrderKind.TOPUP, 30, SUPPORT)

    remind = await store.read(lambda lg: lg.invoices_to_remind(START))
    assert [o.id for o in remind] == [old.id]
    assert await store.read(lambda lg: lg.invoices_to_remind(START - DAY)) == []

    await store.write(lambda lg: lg.mark_invoices([old.id], "reminded_at", START))

    assert await store.read(lambda lg: lg.invoices_to_remind(START)) == []
    overdue = await store.read(lambda lg: lg.invoices_to_flag_overdue(START))
    assert [o.id for o in overdue] == [old.id]
    await store.write(lambda lg: lg.mark_invoices([old.id], "overdue_at", START))
    assert await store.read(lambda lg: lg.invoices_to_flag_overdue(START)) == []


async def test_job_runs_are_numbered_in_the_order_they_start(store: Store) -> None:
    def two_runs(lg: Ledger) -> tuple[int, int]:
        first = lg.start_job_run("alerts", START)
        lg.finish_job_run(first, START + DAY, True, "0 alerts")
        return first, lg.start_job_run("alerts", START + DAY)

    first, second = await store.write(two_runs)

    assert second > first
