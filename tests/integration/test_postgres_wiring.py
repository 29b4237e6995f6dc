"""`database.url` set: the composition root opens PostgreSQL (not the SQLite file), and
the scheduled SQLite backup job is left out with one log line saying why."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from partnerbot.config import load_settings
from partnerbot.scheduler import build_scheduler
from partnerbot.wiring import open_services
from storage.postgres import PostgresStore
from storage.sql import Engine


async def test_a_database_url_opens_postgresql_and_leaves_the_backup_job_out(
    tmp_path: Path, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[telegram]\ntoken = "123456789:AAFakeTokenForTestsOnly_0123456789ab"\n'
        f'[database]\nurl = "{pg_url}"\npath = "{tmp_path / "unused.db"}"\n',
        encoding="utf-8",
    )
    settings = load_settings(config, environ={})
    caplog.set_level(logging.INFO, logger="partnerbot.scheduler")

    services = await open_services(settings)
    try:
        assert isinstance(services.store, PostgresStore)
        assert services.store.engine is Engine.POSTGRES
        assert not (tmp_path / "unused.db").exists()

        scheduler = build_scheduler(services, lambda: None)
        jobs = {job.id for job in scheduler.get_jobs()}
        assert "backup" not in jobs
        assert {"reminders", "alerts", "expiry", "renew"} <= jobs
        said = [r.getMessage() for r in caplog.records if "backup" in r.getMessage()]
        assert len(said) == 1 and "pg_dump" in said[0], said
    finally:
        await services.close()
