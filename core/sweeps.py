"""The scheduler's sweeps (rules 7-9 and invoice reminders).

Each sweep reads what it needs with a few set-based queries over all partners and
channels and writes in batches. Every effect is keyed (partner and crossing, channel
and expiry instant and stage, channel and expiry for renewals, invoice for reminders),
so a re-run, a restart half-way or two processes racing do nothing twice.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial

from core import alerts, channels, notices
from core.days import DAY, utc
from core.errors import InsufficientBalance, NotFound
from core.model import Channel, ChannelBilling, partner_account
from core.ports import Clock, Ledger, Store

EXPIRY_STAGES = (3, 1)  # days before active_until; 0 is the expiry itself
EXPIRED_GRACE = timedelta(days=7)  # after downtime, still tell about recent expiries
MAX_LISTED = 50  # channel names carried in one notice
RENEW_BATCH = 500  # renewals per transaction


@dataclass(frozen=True, slots=True)
class SweepResult:
    job: str
    looked_at: int
    acted: int
    detail: str = ""

    def summary(self) -> str:
        extra = f"; {self.detail}" if self.detail else ""
        return f"{self.job}: {self.looked_at} looked at, {self.acted} acted on{extra}"


def _alerts(ledger: Ledger, now: datetime) -> SweepResult:
    candidates = ledger.alert_candidates()
    going_low = [c.partner.id for c in candidates if not c.below]
    running = ledger.running_until(going_low, now)
    told = sum(
        alerts.apply_alert_state(ledger, now, c, running.get(c.partner.id, []))
        for c in candidates
    )
    return SweepResult("alerts", len(candidates), told, f"{len(candidates) - told} re-armed")


async def sweep_alerts(store: Store, clock: Clock) -> SweepResult:
    """Rule 7 for every partner at once."""
    now = utc(clock.now())  # arithmetic below in UTC: a zoned clock would add wall time
    return await store.write(lambda lg: _alerts(lg, now))


def expiry_stage(channel: Channel, now: datetime) -> int:
    assert channel.active_until is not None
    left = utc(channel.active_until) - utc(now)
    if left <= timedelta(0):
        return 0
    return next(s for s in sorted(EXPIRY_STAGES) if left <= s * DAY)


def _listed(chans: list[Channel]) -> tuple[notices.ListedChannel, ...]:
    """The first MAX_LISTED channels as a notice names them (the notice counts them all)."""
    return tuple(
        notices.ListedChannel(
            c.name, None if c.active_until is None else utc(c.active_until), c.auto_renew
        )
        for c in chans[:MAX_LISTED]
    )


def _expiry(ledger: Ledger, now: datetime) -> SweepResult:
    window = ledger.channels_expiring(now - EXPIRED_GRACE, now + max(EXPIRY_STAGES) * DAY)
    wanted = [(c.id, c.active_until, expiry_stage(c, now)) for c in window if c.active_until]
    new = ledger.record_expiry_warnings(wanted, now)
    by_id = {c.id: c for c in window}
    grouped: dict[tuple[int, int], list[Channel]] = defaultdict(list)
    for channel_id, _, stage in new:
        channel = by_id[channel_id]
        grouped[(channel.partner_id, stage)].append(channel)
    for (partner_id, stage), chans in grouped.items():
        # One message per partner and stage; the warnings table keeps each channel's
        # warning unique, so this key only has to be unique per run.
        notices.notify(
            ledger, now, f"expiry:{partner_id}:{stage}:{chans[0].id}:{utc(now).isoformat()}",
            partner_id, notices.ChannelsExpiring(stage, len(chans), _listed(chans)),
        )
    return SweepResult("expiry", len(window), len(new), f"{len(grouped)} messages queued")


async def sweep_expiry(store: Store, clock: Clock) -> SweepResult:
    """Rule 8: warn 3 days and 1 day before active_until, and on expiry; each once."""
    now = utc(clock.now())  # arithmetic below in UTC: a zoned clock would add wall time
    return await store.write(lambda lg: _expiry(lg, now))


def _renew_batch(
    ledger: Ledger, now: datetime, batch: list[Channel]
) -> tuple[int, dict[int, list[Channel]]]:
    renewed: dict[int, list[Channel]] = defaultdict(list)
    short: dict[int, list[Channel]] = defaultdict(list)
    for listed in batch:
        channel = ledger.get_channel(listed.id)
        if (
            channel is None or not channel.live or not channel.auto_renew
            or channel.billing is not ChannelBilling.BALANCE
            or channel.active_until != listed.active_until
        ):
            # Changed since the list was read: renewed by a sweep running at the same
            # time (renewing it again would take another 30 days), deleted, or switched.
            continue
        try:
            done = channels.renew_channel(ledger, now, channel.id, "scheduler:renew")
        except InsufficientBalance:
            short[channel.partner_id].append(channel)
            continue
        except NotFound:
            continue  # deleted since the list was read
        if not done.replayed:
            renewed[channel.partner_id].append(replace(channel, active_until=done.active_until))
    day = f"{utc(now):%Y-%m-%d}"
    for partner_id, chans in renewed.items():
        notices.notify(
            ledger, now, f"renewed:{partner_id}:{chans[0].id}:{utc(now).isoformat()}",
            partner_id, notices.ChannelsRenewed(len(chans), _listed(chans)),
        )
    for partner_id, chans in short.items():
        # One alert per partner and day, listing what could not be renewed.
        notices.notify(
            ledger, now, f"renew-short:{partner_id}:{day}", partner_id, notices.RenewFellShort(
                count=len(chans), needed=len(chans) * channels.RENEWAL_DAYS,
                balance=ledger.balance(partner_account(partner_id)), channels=_listed(chans),
            ),
        )
    return sum(len(c) for c in renewed.values()), short


def _by_partner_batches(due: list[Channel]) -> list[list[Channel]]:
    """About RENEW_BATCH channels a batch, a partner's channels never split over two: its
    one alert per day must list every channel the balance cannot cover."""
    batches: list[list[Channel]] = []
    current: list[Channel] = []
    for channel in due:  # ordered by partner
        if len(current) >= RENEW_BATCH and current[-1].partner_id != channel.partner_id:
            batches.append(current)
            current = []
        current.append(channel)
    if current:
        batches.append(current)
    return batches


async def sweep_renew(store: Store, clock: Clock, before: timedelta = DAY) -> SweepResult:
    """Rule 9: extend auto-renew channels expiring within `before` by 30 days each."""
    now = utc(clock.now())  # arithmetic below in UTC: a zoned clock would add wall time
    due = await store.read(lambda lg: lg.channels_to_renew(now + before))
    renewed = short = 0
    for batch in _by_partner_batches(due):
        count, missing = await store.write(partial(_renew_batch, now=now, batch=batch))
        renewed += count
        short += sum(len(c) for c in missing.values())
    return SweepResult("renew", len(due), renewed, f"{short} not covered by the balance")


def _reminders(
    ledger: Ledger, now: datetime, remind_after: timedelta, overdue_after: timedelta
) -> SweepResult:
    remind = ledger.invoices_to_remind(now - remind_after)
    for order in remind:
        notices.notify(
            ledger, now, f"remind:{order.id}", order.partner_id, notices.InvoiceUnpaid(
                order_id=order.id, amount=order.amount, currency=order.currency, url=order.url,
            ),
        )
    ledger.mark_invoices([o.id for o in remind], "reminded_at", now)
    overdue = ledger.invoices_to_flag_overdue(now - overdue_after)
    for order in overdue:
        overdue_notice = notices.InvoiceOverdue(
            order_id=order.id, partner_id=order.partner_id, amount=order.amount,
            currency=order.currency, url=order.url,
        )
        notices.notify(ledger, now, f"overdue:{order.id}", None, overdue_notice)
        notices.notify(
            ledger, now, f"overdue-member:{order.id}", order.partner_id, overdue_notice
        )
        ledger.record_event(
            now, "scheduler:reminders", "invoice.overdue", order.partner_id, f"order={order.id}"
        )
    ledger.mark_invoices([o.id for o in overdue], "overdue_at", now)
    return SweepResult(
        "reminders", len(remind) + len(overdue), len(remind) + len(overdue),
        f"{len(remind)} reminded, {len(overdue)} overdue",
    )


async def sweep_reminders(
    store: Store,
    clock: Clock,
    remind_after: timedelta = timedelta(days=3),
    overdue_after: timedelta = timedelta(days=14),
) -> SweepResult:
    """Unpaid invoices: a reminder after a few days, then overdue and support is told."""
    now = utc(clock.now())  # arithmetic below in UTC: a zoned clock would add wall time
    return await store.write(lambda lg: _reminders(lg, now, remind_after, overdue_after))
