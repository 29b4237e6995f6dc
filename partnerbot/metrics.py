"""Prometheus metrics (the official client), served at GET /metrics.

Counts of what happens in this process (updates by command, errors, webhooks) are plain
counters; figures that must survive restarts and include other processes (payments
fulfilled, days credited, the outbox, job runs) are read from the database at scrape
time, so they are right even after a crash.

A database that cannot be read (corrupt, unreadable) must not take the page down with
it: the page then carries the process's own counters, `partnerbot_storage_healthy 0`
and a count of failed reads, without the database's figures (absent beats wrong).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.errors import StorageError
from storage.base import OperatedStore
from storage.rows import to_us
from storage.stats import StoreStats

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_US = 1_000_000


class _StoreFigures(Collector):
    def __init__(self) -> None:
        self.latest: StoreStats | None = None

    def collect(self) -> Iterator[Metric]:
        s = self.latest
        if s is None:
            return
        yield CounterMetricFamily(
            "partnerbot_payments_fulfilled", "Paid orders whose days were credited",
            value=s.payments,
        )
        yield CounterMetricFamily(
            "partnerbot_days_credited", "Days credited by paid orders", value=s.days_credited
        )
        yield GaugeMetricFamily(
            "partnerbot_outbox_depth", "Notices and deliveries waiting to be sent",
            value=s.outbox_depth,
        )
        oldest = s.outbox_oldest_us
        yield GaugeMetricFamily(
            "partnerbot_outbox_oldest_age_seconds",
            "Age of the oldest notice still waiting (0 when none)",
            value=0 if oldest is None else oldest / _US,
        )
        yield GaugeMetricFamily(
            "partnerbot_members_unreachable", "Members who blocked the bot",
            value=s.unreachable,
        )
        success = GaugeMetricFamily(
            "partnerbot_job_last_success_timestamp_seconds",
            "When each job last finished successfully (Unix time)", labels=["job"],
        )
        duration = GaugeMetricFamily(
            "partnerbot_job_last_duration_seconds", "How long each job's last run took",
            labels=["job"],
        )
        ok = GaugeMetricFamily(
            "partnerbot_job_last_run_ok", "1 if the job's last run did all its work",
            labels=["job"],
        )
        for j in s.jobs:
            if j.last_success_us is not None:
                success.add_metric([j.job], j.last_success_us / _US)
            if j.last_duration_us is not None:
                duration.add_metric([j.job], j.last_duration_us / _US)
            if j.last_run_ok is not None:
                ok.add_metric([j.job], int(j.last_run_ok))
        yield success
        yield duration
        yield ok


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.updates = Counter(
            "partnerbot_updates", "Telegram updates handled, by command", ["command"],
            registry=self.registry,
        )
        self.errors = Counter(
            "partnerbot_errors", "Unexpected errors while handling updates",
            registry=self.registry,
        )
        self.webhooks = Counter(
            "partnerbot_webhooks", "Stripe webhooks received, by outcome", ["result"],
            registry=self.registry,
        )
        self.http_dropped = Counter(
            "partnerbot_http_connections_dropped",
            "HTTP connections the server closed itself, by reason (refused, evicted, "
            "header_timeout, body_timeout)", ["reason"], registry=self.registry,
        )
        self.storage_healthy = Gauge(
            "partnerbot_storage_healthy", "1 while the database passes its health checks",
            registry=self.registry,
        )
        self.stats_errors = Counter(
            "partnerbot_metrics_store_errors",
            "Scrapes whose figures could not be read from the database",
            registry=self.registry,
        )
        self._figures = _StoreFigures()
        self.registry.register(self._figures)
        self._stats_failing = False

    async def render(self, store: OperatedStore, now: Any) -> bytes:
        try:
            self._figures.latest = await store.stats(to_us(now))
        except StorageError as exc:
            self._figures.latest = None
            self.stats_errors.inc()
            if not self._stats_failing:  # once per failing spell, not per scrape
                log.warning("metrics: database figures left out until it reads again: %s", exc)
            self._stats_failing = True
        else:
            if self._stats_failing:
                log.info("metrics: database figures are back")
            self._stats_failing = False
        self.storage_healthy.set(int(store.health.state.healthy))
        return generate_latest(self.registry)
