"""The scheduled jobs by name: what `partnerbot jobs run JOB` and the scheduler call."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from core import sweeps
from core.errors import BillingError
from core.jobs import run_invoices
from partnerbot.backups import scheduled_backup
from partnerbot.config import ConfigError
from partnerbot.wiring import Services

log = logging.getLogger("partnerbot.jobs")
JOBS = ("invoices", "reminders", "alerts", "expiry", "renew", "reconcile", "backup")


class JobFailed(Exception):
    """A job ran but could not do all of its work (it is retried on its next run)."""


async def _work(
    name: str, svc: Services, period: str | None, by_hand: bool
) -> tuple[bool, str]:
    store, clock, jobs = svc.store, svc.clock, svc.settings.jobs
    if period is not None and name != "invoices":
        raise BillingError("--period applies to the invoices job only")
    if name in ("invoices", "reconcile") and svc.payments is None:
        raise ConfigError(
            "config: stripe.api_key: field required to take payments "
            "(set it in the config file or PARTNERBOT_STRIPE__API_KEY)",
            ["stripe.api_key"],
        )
    if name == "invoices":
        assert svc.payments is not None
        run = await run_invoices(
            store, clock, svc.payments, svc.settings.telegram.tzinfo, period
        )
        return not run.failed, run.summary()
    if name == "reconcile":
        assert svc.payments is not None
        # The age filter spares Stripe the orders whose webhook is simply on its way; an
        # operator running it by hand (a webhook known lost) means every open order.
        age = timedelta(0) if by_hand else timedelta(minutes=jobs.reconcile_after_minutes)
        done = await svc.payments.reconcile(age)
        return not done.failed, (
            f"reconcile: {done.checked} open orders checked with Stripe, {done.credited} "
            f"credited, {done.closed} closed, {done.relinked} invoices given a new link, "
            f"{done.failed} could not be checked"
        )
    if name == "backup":
        return True, await scheduled_backup(
            svc.store, svc.settings.backup.directory, clock.now(),
            timedelta(days=svc.settings.backup.keep_days),
        )
    if name == "reminders":
        result = await sweeps.sweep_reminders(
            store, clock, timedelta(days=jobs.reminder_after_days),
            timedelta(days=jobs.overdue_after_days),
        )
    elif name == "alerts":
        result = await sweeps.sweep_alerts(store, clock)
    elif name == "expiry":
        result = await sweeps.sweep_expiry(store, clock)
    elif name == "renew":
        result = await sweeps.sweep_renew(store, clock, timedelta(hours=jobs.renew_before_hours))
    else:
        raise BillingError(f"no job named {name!r}; jobs: {', '.join(JOBS)}")
    return True, result.summary()


async def run_job(
    name: str, svc: Services, period: str | None = None, *, by_hand: bool = False
) -> str:
    """Run one job now, recording the run; JobFailed if part of it must be retried.

    `by_hand`: `partnerbot jobs run` (reconcile then checks every open order)."""
    now = svc.clock.now()
    run_id = await svc.store.write(lambda lg: lg.start_job_run(name, now))
    started = time.monotonic()
    ok, summary = False, "crashed"
    try:
        ok, summary = await _work(name, svc, period, by_hand)
    except BillingError as exc:
        summary = str(exc)
        raise
    finally:
        end = svc.clock.now()
        await svc.store.write(lambda lg: lg.finish_job_run(run_id, end, ok, summary))
        log.info("job %s %s in %.2fs: %s", name, "done" if ok else "incomplete",
                 time.monotonic() - started, summary, extra={"job": name})
    if not ok:
        raise JobFailed(summary)
    return summary
