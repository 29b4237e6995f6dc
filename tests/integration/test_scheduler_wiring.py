"""How the jobs are wired: the APScheduler schedule built from the configuration, job runs
recorded by `run_job`, and `partnerbot jobs run JOB` as a real process on a temp database."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.errors import BillingError
from core.model import OrderKind
from core.payments import PaymentService
from core.policy import BillingPolicy
from core.ports import Ledger
from core.service import BillingService
from partnerbot.config import ConfigError, Settings, load_settings
from partnerbot.crontab import crontab_trigger, crontab_weekdays
from partnerbot.jobs import JOBS, JobFailed, run_job
from partnerbot.scheduler import build_scheduler
from partnerbot.wiring import Services, policy_from
from storage.sqlite import SqliteStore
from tests.conftest import FakeClock
from tests.e2e import clean_env, console_script
from tests.integration.sweeps.harness import FakeGateway

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2030, 1, 14, 9, 30, tzinfo=UTC)  # a Monday
ACTOR = "support:900"
CRONTABS = {
    "invoices": "15 6 * * *",
    "reminders": "0 10 * * 1-5",
    "alerts": "*/15 * * * *",
    "expiry": "5 * * * *",
    "renew": "*/30 * * * *",
    "reconcile": "*/10 * * * *",
    "backup": "30 3 * * 0",
}


def settings_file(tmp_path: Path, *, tz: str = "Europe/Berlin", stripe: bool = False) -> Path:
    jobs = "\n".join(f'{name} = "{cron}"' for name, cron in CRONTABS.items())
    keys = (
        '[stripe]\napi_key = "sk_test_wiring"\nwebhook_secret = "whsec_wiring"\n'
        if stripe else ""
    )
    path = tmp_path / "config.toml"
    path.write_text(
        f'[telegram]\ntimezone = "{tz}"\n[database]\npath = "{tmp_path / "wiring.db"}"\n'
        f'synchronous = "NORMAL"\n[backup]\ndirectory = "{tmp_path / "backups"}"\n'
        f"{keys}[jobs]\n{jobs}\n",
        encoding="utf-8",
    )
    return path


@dataclass
class Wired:
    settings: Settings
    services: Services
    clock: FakeClock
    gateway: FakeGateway


@pytest.fixture
async def wired(tmp_path: Path) -> AsyncIterator[Wired]:
    settings = load_settings(settings_file(tmp_path, stripe=True), environ={})
    store = await SqliteStore.open(settings.database.path, synchronous="NORMAL")
    clock = FakeClock(T0)
    gateway = FakeGateway()
    billing = BillingService(store, clock, policy_from(settings))
    services = Services(settings, store, clock, billing, PaymentService(store, clock, gateway))
    try:
        yield Wired(settings, services, clock, gateway)
    finally:
        await store.close()


def fire_times(trigger: Any, start: datetime, count: int) -> list[datetime]:
    """The next `count` fire times after `start`, as APScheduler computes them."""
    found: list[datetime] = []
    previous = None
    now = start
    for _ in range(count):
        nxt = trigger.get_next_fire_time(previous, now)
        found.append(nxt)
        previous, now = nxt, nxt.astimezone(UTC) + timedelta(seconds=1)
    return found


# ----------------------------------------------------------------------------- schedule


async def test_every_job_is_scheduled_on_its_crontab_in_the_configured_zone(
    wired: Wired,
) -> None:
    scheduler = build_scheduler(wired.services, lambda: None)
    jobs = {job.id: job for job in scheduler.get_jobs()}

    assert sorted(jobs) == sorted(JOBS)
    for name, job in jobs.items():
        assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, 3600)
        assert job.trigger.timezone == BERLIN
        fields = {f.name: str(f) for f in job.trigger.fields}
        minute, hour, day, month, _ = CRONTABS[name].split()
        assert (fields["minute"], fields["hour"], fields["day"], fields["month"]) == (
            minute, hour, day, month
        )
    # 06:15 in Berlin: 05:15 UTC in winter, 04:15 UTC in summer.
    assert fire_times(jobs["invoices"].trigger, T0, 1) == [
        datetime(2030, 1, 15, 6, 15, tzinfo=BERLIN)
    ]
    assert fire_times(jobs["invoices"].trigger, datetime(2030, 7, 1, tzinfo=UTC), 1)[0] == (
        datetime(2030, 7, 1, 4, 15, tzinfo=UTC)
    )


async def test_without_stripe_there_is_nothing_to_invoice_or_reconcile(
    wired: Wired,
) -> None:
    services = replace(wired.services, payments=None)
    scheduler = build_scheduler(services, lambda: None)
    assert sorted(j.id for j in scheduler.get_jobs()) == sorted(
        set(JOBS) - {"invoices", "reconcile"}
    )


@pytest.mark.parametrize(
    ("field", "days"),
    [
        ("1", "mon"), ("0", "sun"), ("7", "sun"), ("1-5", "mon,tue,wed,thu,fri"),
        ("*/2", "sun,tue,thu,sat"), ("SAT,sun", "sun,sat"), ("5-7", "sun,fri,sat"),
        ("*", "*"),
    ],
)
def test_crontab_weekdays_mean_what_crontab_means(field: str, days: str) -> None:
    # APScheduler 3 reads 0 as Monday; crontab reads it as Sunday.
    assert crontab_weekdays(field) == days


async def test_a_weekday_job_runs_on_the_crontab_weekdays(wired: Wired) -> None:
    scheduler = build_scheduler(wired.services, lambda: None)
    reminders = scheduler.get_job("reminders").trigger
    backup = scheduler.get_job("backup").trigger
    friday = datetime(2030, 1, 18, 12, 0, tzinfo=BERLIN)

    assert [f"{t:%a %H:%M}" for t in fire_times(reminders, friday, 3)] == [
        "Mon 10:00", "Tue 10:00", "Wed 10:00"
    ]
    assert [f"{t:%a %d %H:%M}" for t in fire_times(backup, friday, 2)] == [
        "Sun 20 03:30", "Sun 27 03:30"
    ]
    with pytest.raises(ValueError):
        crontab_trigger("0 10 * * 8", BERLIN)


@pytest.mark.parametrize("start", [datetime(2030, 3, 29, tzinfo=UTC),
                                   datetime(2030, 10, 25, tzinfo=UTC)])
def test_a_daily_job_runs_once_a_day_across_the_dst_changes(start: datetime) -> None:
    trigger = crontab_trigger(CRONTABS["invoices"], BERLIN)
    times = fire_times(trigger, start, 5)
    assert [t.astimezone(BERLIN).strftime("%m-%d %H:%M") for t in times] == [
        f"{start + timedelta(days=i):%m-%d} 06:15" for i in range(5)
    ]


def test_the_configuration_takes_7_for_sunday(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[jobs]\nbackup = "30 3 * * 7"\n', encoding="utf-8")
    try:
        settings = load_settings(path, environ={})
    except ConfigError as exc:
        raise AssertionError(str(exc)) from None
    assert settings.jobs.backup == "30 3 * * 7"


async def test_a_scheduled_job_records_its_run_and_wakes_the_dispatcher(
    wired: Wired,
) -> None:
    woken: list[str] = []
    scheduler = build_scheduler(wired.services, lambda: woken.append("wake"))
    for name in ("alerts", "expiry", "renew", "reminders"):
        await scheduler.get_job(name).func()  # what APScheduler calls on the crontab

    runs = await wired.services.store.execute_raw(
        "SELECT job, ok, summary FROM job_runs ORDER BY id"
    )
    assert [(job, ok) for job, ok, _ in runs] == [
        ("alerts", 1), ("expiry", 1), ("renew", 1), ("reminders", 1)
    ]
    assert runs[0][2] == "alerts: 0 looked at, 0 acted on; 0 re-armed"
    assert woken == ["wake"] * 4


async def test_a_failing_scheduled_job_is_logged_and_still_wakes(
    wired: Wired, caplog: pytest.LogCaptureFixture
) -> None:
    woken: list[str] = []
    scheduler = build_scheduler(wired.services, lambda: woken.append("wake"))
    wired.gateway.down = True
    made = await wired.services.billing.create_partner("Acme", ACTOR)
    await wired.services.billing.create_channel(made.partner.id, "shop", ACTOR, "c1")

    with caplog.at_level("WARNING", logger="partnerbot.scheduler"):
        await scheduler.get_job("invoices").func()  # must not raise into APScheduler

    assert woken == ["wake"]
    assert "job invoices incomplete" in caplog.text
    [(ok, summary)] = await wired.services.store.execute_raw("SELECT ok, summary FROM job_runs")
    assert ok == 0 and "1 failed (retried on the next run)" in summary


# ------------------------------------------------------------------------------ run_job


async def test_run_job_records_start_end_outcome_and_summary(wired: Wired) -> None:
    svc = wired.services

    summary = await run_job("expiry", svc)

    [(job, started, finished, ok, recorded)] = await svc.store.execute_raw(
        "SELECT job, started_at, finished_at, ok, summary FROM job_runs"
    )
    t0_us = int(T0.timestamp() * 1_000_000)
    assert (job, started, finished, ok) == ("expiry", t0_us, t0_us, 1)
    assert recorded == summary == "expiry: 0 looked at, 0 acted on; 0 messages queued"


async def test_run_job_records_failures_and_refusals(wired: Wired) -> None:
    svc = wired.services
    made = await svc.billing.create_partner("Acme", ACTOR)
    await svc.billing.create_channel(made.partner.id, "shop", ACTOR, "c1")
    wired.gateway.down = True

    with pytest.raises(JobFailed, match="1 failed"):
        await run_job("invoices", svc)
    with pytest.raises(BillingError, match="--period applies to the invoices job only"):
        await run_job("alerts", svc, period="2030-01")
    with pytest.raises(BillingError, match="no job named"):
        await run_job("nonsense", svc)
    wired.gateway.down = False
    assert "0 issued, 1 already issued" in await run_job("invoices", svc)  # linked now

    runs = await svc.store.execute_raw("SELECT job, ok FROM job_runs ORDER BY id")
    assert runs == [("invoices", 0), ("alerts", 0), ("nonsense", 0), ("invoices", 1)]


async def test_a_job_run_twice_at_once_does_its_work_once(wired: Wired) -> None:
    svc = wired.services
    for i in range(3):
        made = await svc.billing.create_partner(f"P{i}", ACTOR)
        await svc.billing.redeem_invite(made.invite_code, 100 + i)
        await svc.billing.grant_days(made.partner.id, 4, "test", ACTOR, f"g{i}")
        await svc.billing.create_channel(made.partner.id, "shop", ACTOR, f"c{i}")
        await svc.billing.allocate_days(made.partner.id, "shop", 2, ACTOR, f"a{i}")

    results = await asyncio.gather(run_job("expiry", svc), run_job("expiry", svc))

    assert sorted(results) == [
        "expiry: 3 looked at, 0 acted on; 0 messages queued",
        "expiry: 3 looked at, 3 acted on; 3 messages queued",
    ]
    [(runs,)] = await svc.store.execute_raw("SELECT count(*) FROM job_runs WHERE ok = 1")
    assert runs == 2


# ---------------------------------------------------------------- partnerbot jobs run JOB


async def _cli_book(db: Path) -> dict[str, int]:
    """A database where each sweep has something to do, relative to the real time."""
    now = datetime.now(UTC)
    clock = FakeClock(now - timedelta(days=4))
    store = await SqliteStore.open(db)
    billing = BillingService(store, clock, BillingPolicy(low_balance_days=10))
    try:
        made = await billing.create_partner("Acme", ACTOR)
        pid = made.partner.id
        await billing.redeem_invite(made.invite_code, 101)
        await billing.grant_days(pid, 100, "test", ACTOR, "g1")
        invoice = await billing.open_order(pid, OrderKind.INVOICE, 30, ACTOR, channels=1)
        clock.set(now)
        await billing.create_channel(pid, "soon", ACTOR, "c1")
        await billing.allocate_days(pid, "soon", 2, ACTOR, "a1")  # expiry: 3-day warning
        await billing.create_channel(pid, "auto", ACTOR, "c2")
        clock.set(now - timedelta(days=29, hours=12))
        await billing.allocate_days(pid, "auto", 30, ACTOR, "a2")  # ends in 12 hours
        clock.set(now)
        await billing.set_auto_renew(pid, "auto", True, ACTOR)

        def raise_threshold(lg: Ledger) -> None:  # behind the use cases: for the sweep
            partner = lg.get_partner(pid)
            assert partner is not None
            lg.update_partner(replace(partner, low_balance_days=1000))

        await store.write(raise_threshold)
        return {"partner": pid, "invoice": invoice.id}
    finally:
        await store.close()


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(
        PARTNERBOT_DATABASE__PATH=str(tmp_path / "cli.db"),
        PARTNERBOT_ACCESS__SUPPORT_USER_IDS="[900]",
    )
    return subprocess.run(
        [*console_script(), *args], capture_output=True, text=True, cwd=tmp_path, env=env,
        timeout=60, check=False,
    )


async def test_jobs_run_from_the_command_line_do_their_work_once(tmp_path: Path) -> None:
    ids = await _cli_book(tmp_path / "cli.db")

    jobs = ("alerts", "renew", "expiry", "reminders")
    first = [await asyncio.to_thread(_cli, tmp_path, "jobs", "run", job) for job in jobs]
    # Again, all at once: four processes on one file.
    again = list(await asyncio.gather(*(
        asyncio.to_thread(_cli, tmp_path, "jobs", "run", job) for job in jobs
    )))

    for done in first + again:
        assert (done.returncode, done.stderr) == (0, ""), done.args
    assert [d.stdout for d in first] == [
        "alerts: 1 looked at, 1 acted on; 0 re-armed\n",
        "renew: 1 looked at, 1 acted on; 0 not covered by the balance\n",
        # "auto" was renewed just before: only "soon" is in the window.
        "expiry: 1 looked at, 1 acted on; 1 messages queued\n",
        "reminders: 1 looked at, 1 acted on; 1 reminded, 0 overdue\n",
    ]
    assert [d.stdout for d in again] == [
        "alerts: 0 looked at, 0 acted on; 0 re-armed\n",
        "renew: 0 looked at, 0 acted on; 0 not covered by the balance\n",
        "expiry: 1 looked at, 0 acted on; 0 messages queued\n",
        "reminders: 0 looked at, 0 acted on; 0 reminded, 0 overdue\n",
    ]
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        kinds = [r[0] for r in conn.execute("SELECT kind FROM notices ORDER BY kind")]
        runs = conn.execute("SELECT job, ok, summary FROM job_runs ORDER BY id").fetchall()
        reminded = conn.execute(
            "SELECT reminded_at IS NOT NULL FROM orders WHERE id = ?", (ids["invoice"],)
        ).fetchone()
    # Each job's notice once; and the set-up's support grant and allocations, announced
    # to the members.
    assert kinds == [
        "balance_corrected", "expiry", "invoice_reminder", "low_balance", "renewed",
        "support_allocated", "support_allocated",
    ]
    assert sorted(j for j, _, _ in runs) == sorted(["alerts", "expiry", "renew", "reminders"] * 2)
    assert {ok for _, ok, _ in runs} == {1}
    assert reminded == (1,)


def test_jobs_run_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    no_stripe = _cli(tmp_path, "jobs", "run", "invoices")
    unknown = _cli(tmp_path, "jobs", "run", "nonsense")
    period = _cli(tmp_path, "jobs", "run", "expiry", "--period", "2030-01")

    assert no_stripe.returncode == 2
    assert no_stripe.stderr.startswith("partnerbot: config: stripe.api_key")
    assert unknown.returncode == 2 and "invalid choice: 'nonsense'" in unknown.stderr
    assert period.returncode == 1
    assert period.stderr == "partnerbot: --period applies to the invoices job only\n"


async def test_a_new_leader_runs_at_once_the_jobs_due_while_nobody_led(wired: Wired) -> None:
    # Elected at T0 (10:30 in Berlin) looking back 20 minutes (2 x failover_seconds in
    # production): what fell due since 10:10 is due now, so the scheduler runs it at once.
    scheduler = build_scheduler(wired.services, lambda: None, timedelta(minutes=20))
    due = {job.id: job.next_run_time for job in scheduler.get_jobs()}

    assert due["alerts"] == datetime(2030, 1, 14, 10, 15, tzinfo=BERLIN)
    assert due["reconcile"] == datetime(2030, 1, 14, 10, 10, tzinfo=BERLIN)
    assert due["renew"] == datetime(2030, 1, 14, 10, 30, tzinfo=BERLIN)
    # Due before the look-back (10:05): the old leader ran it; the next one is at 11:05.
    assert due["expiry"] == datetime(2030, 1, 14, 11, 5, tzinfo=BERLIN)
    assert due["invoices"] == datetime(2030, 1, 15, 6, 15, tzinfo=BERLIN)
