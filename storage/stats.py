"""Figures for /metrics, read from the database in one snapshot (indexed aggregates)."""

from __future__ import annotations

from dataclasses import dataclass

from storage.sql import SqlConnection


@dataclass(frozen=True)
class JobFigures:
    job: str
    last_success_us: int | None  # when a run last did all its work
    last_duration_us: int | None  # how long the latest finished run took
    last_run_ok: bool | None  # whether the latest finished run did all its work


@dataclass(frozen=True)
class StoreStats:
    payments: int  # paid orders whose days were credited
    days_credited: int
    outbox_depth: int  # notices not yet expanded plus deliveries not yet sent
    outbox_oldest_us: int | None  # age of the oldest of those; None when there is none
    unreachable: int  # members who blocked the bot
    jobs: tuple[JobFigures, ...]


def read_stats(c: SqlConnection, now_us: int) -> StoreStats:
    paid = c.execute(
        "SELECT count(*), coalesce(sum(days), 0) FROM transfers WHERE kind = 'purchase'"
    ).fetchone()
    pending = c.execute(
        "SELECT count(*), min(n.created_at) FROM deliveries d"
        " JOIN notices n ON n.id = d.notice_id WHERE d.status = 'pending'"
    ).fetchone()
    unexpanded = c.execute(
        "SELECT count(*), min(created_at) FROM notices WHERE expanded = 0"
    ).fetchone()
    oldest = min((v for v in (pending[1], unexpanded[1]) if v is not None), default=None)
    jobs = c.execute(
        "SELECT job, max(CASE WHEN ok = 1 THEN finished_at END),"
        " (SELECT finished_at - started_at FROM job_runs r2 WHERE r2.job = r.job"
        "  AND finished_at IS NOT NULL ORDER BY id DESC LIMIT 1),"
        " (SELECT ok FROM job_runs r3 WHERE r3.job = r.job"
        "  AND finished_at IS NOT NULL ORDER BY id DESC LIMIT 1)"
        " FROM job_runs r GROUP BY job"
    ).fetchall()
    unreachable = c.execute("SELECT count(*) FROM members WHERE unreachable = 1").fetchone()[0]
    return StoreStats(
        payments=int(paid[0]),
        days_credited=int(paid[1]),
        outbox_depth=int(pending[0]) + int(unexpanded[0]),
        outbox_oldest_us=None if oldest is None else now_us - int(oldest),
        unreachable=int(unreachable),
        jobs=tuple(
            JobFigures(
                job=str(job),
                last_success_us=None if last_ok is None else int(last_ok),
                last_duration_us=None if took is None else int(took),
                last_run_ok=None if ok is None else bool(ok),
            )
            for job, last_ok, took, ok in jobs
        ),
    )
