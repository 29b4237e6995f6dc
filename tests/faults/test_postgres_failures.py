"""What PostgresStore does when the network or the server fails (storage/postgres.py).

- a connection that dies in the middle of a use case: the use case runs again, whole,
  on a new connection, and lands once;
- a COMMIT that never gets an answer: not run again (it might have landed); the caller
  hears StorageError, and retrying under the same idempotency key acts once;
- a server nobody can reach: calls fail with StorageError at once (bounded by the pool's
  wait), the health monitor says "unreachable", ping is false; once it is back the probe
  turns it healthy again, with no restart.

The network is cut by a loopback proxy (tests/faults/pg_proxy.py), the server is the
real test server.
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from core.errors import StorageError
from core.invariants import verify
from core.model import NewTransfer, TransferKind, partner_account
from core.policy import BillingPolicy
from core.ports import Ledger
from core.service import BillingService
from storage.health import Fault
from storage.postgres import PgOptions, PostgresStore
from storage.sql_ledger import SqlLedger
from tests.conftest import START, FakeClock
from tests.contract.test_concurrency import seed
from tests.faults.pg_proxy import proxied

QUICK = PgOptions(min_size=1, max_size=2, acquire_timeout_s=1.0, connect_timeout_s=2)


async def test_a_connection_lost_mid_use_case_runs_it_again_on_a_new_one(
    pg_url: str, clock: FakeClock
) -> None:
    store = await PostgresStore.open(pg_url)
    try:
        billing = BillingService(store, clock, BillingPolicy())
        pid = await seed(billing, 5)
        runs: list[int] = []

        def grant_after_losing_the_connection(lg: Ledger) -> None:
            assert isinstance(lg, SqlLedger)
            backend = lg.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            runs.append(backend)
            if len(runs) == 1:  # the first time only: the server drops this connection
                with psycopg.connect(pg_url, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
            lg.add_transfer(_grant("lost-1", pid, 3))

        await store.write(grant_after_losing_the_connection)

        assert len(runs) == 2 and runs[0] != runs[1]  # again, on another connection
        assert await store.read(lambda lg: lg.balance(partner_account(pid))) == 8
        report = await store.verify(verify)
        assert report.ok, report.violations
    finally:
        await store.close()


async def test_a_commit_without_an_answer_is_not_run_again_and_the_key_acts_once(
    pg_url: str, clock: FakeClock
) -> None:
    with proxied(pg_url) as proxy:
        store = await PostgresStore.open(proxy.url, options=QUICK)
        try:
            billing = BillingService(store, clock, BillingPolicy())
            pid = await seed(billing, 5)
            runs = 0

            def counted(lg: Ledger) -> None:
                nonlocal runs
                runs += 1
                lg.add_transfer(_grant("unknown-1", pid, 2))

            proxy.drop_on_commit = True
            with pytest.raises(StorageError, match="outcome is unknown"):
                await store.write(counted)
            proxy.drop_on_commit = False

            assert proxy.commits_dropped == 1
            assert runs == 1  # not retried behind the caller's back
            # The caller retries under the same key: it lands once (here it had not).
            await store.write(
                lambda lg: lg.find_transfer("unknown-1") or lg.add_transfer(
                    _grant("unknown-1", pid, 2)
                )
            )
            await store.write(
                lambda lg: lg.find_transfer("unknown-1") or lg.add_transfer(
                    _grant("unknown-1", pid, 2)
                )
            )
            assert await store.read(lambda lg: lg.balance(partner_account(pid))) == 7
        finally:
            await store.close()


async def test_an_unreachable_server_is_reported_and_recovery_needs_no_restart(
    pg_url: str, clock: FakeClock
) -> None:
    with proxied(pg_url) as proxy:
        store = await PostgresStore.open(proxy.url, options=QUICK)
        try:
            billing = BillingService(store, clock, BillingPolicy())
            pid = await seed(billing, 5)

            proxy.cut()
            with pytest.raises(StorageError, match="unreachable"):
                await store.write(lambda lg: lg.add_transfer(_grant("cut-1", pid, 1)))
            assert store.health.state.fault is Fault.UNREACHABLE
            assert not await store.ping()
            found = await store.probe(0, deep=False)
            assert found.fault is Fault.UNREACHABLE
            assert store.health.state.fault is Fault.UNREACHABLE

            proxy.restore()
            # The pool reconnects in the background with its own backoff: the probe that
            # runs every database.health_probe_seconds reports recovery once it has.
            for attempt in range(60):
                if (await store.probe(1 + attempt, deep=False)).healthy:
                    break
                await asyncio.sleep(0.5)
            else:
                raise AssertionError(f"never healthy again: {store.health.state}")
            assert store.health.state.healthy
            await store.write(lambda lg: lg.add_transfer(_grant("cut-1", pid, 1)))
            assert await store.read(lambda lg: lg.balance(partner_account(pid))) == 6
        finally:
            await store.close()


async def test_opening_a_store_on_a_server_nobody_can_reach_fails_with_its_address(
    pg_url: str,
) -> None:
    with proxied(pg_url) as proxy:
        proxy.cut()
        secret_url = proxy.url.replace("postgres@", "postgres:hunter2@")
        with pytest.raises(StorageError, match="cannot connect to postgresql://") as caught:
            await PostgresStore.open(secret_url, options=QUICK)
        assert "hunter2" not in str(caught.value)


def _grant(key: str, pid: int, days: int) -> NewTransfer:
    return NewTransfer(key, "ext:grants", partner_account(pid), days, TransferKind.GRANT,
                       "support:1", "test", START, None)
