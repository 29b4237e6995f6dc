"""The job schedule: APScheduler 3's AsyncIOScheduler in the bot's event loop.

Each job runs on its crontab in telegram.timezone; missed runs are coalesced into one;
a job never runs twice at once in this process (max_instances=1), and what a job does
is keyed so that another process running it at the same moment changes nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from partnerbot.crontab import crontab_trigger
from partnerbot.jobs import JOBS, JobFailed, run_job
from partnerbot.wiring import Services
from storage.sql import Engine

log = logging.getLogger("partnerbot.scheduler")


def build_scheduler(services: Services, after_run: Callable[[], None]) -> AsyncIOScheduler:
    settings = services.settings
    tz = settings.telegram.tzinfo
    scheduler = AsyncIOScheduler(timezone=tz)
    for name in JOBS:
        if name in ("invoices", "reconcile") and services.payments is None:
            continue  # payments are not configured: nothing to invoice or reconcile
        if name == "backup" and services.store.engine is Engine.POSTGRES:
            log.info("job backup not scheduled: the database is PostgreSQL, whose backups "
                     "are pg_dump's job (or the server's continuous archiving)")
            continue

        async def job(name: str = name) -> None:
            try:
                await run_job(name, services)
            except JobFailed as exc:
                log.warning("job %s incomplete: %s", name, exc)
            except Exception:
                log.exception("job %s failed", name)
            finally:
                after_run()  # wake the dispatcher: the job may have queued notices

        scheduler.add_job(
            job,
            crontab_trigger(getattr(settings.jobs, name), tz),
            id=name,
            name=name,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=3600,
        )
    return scheduler
