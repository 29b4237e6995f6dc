"""PostgreSQL out of reach, as the operator sees it: `partnerbot run`'s own Runtime on a
PostgreSQL database behind a loopback proxy (tests/faults/pg_proxy.py) that is cut.

/healthz answers 503 naming the cause "unreachable", a command is answered with an
apology and a reference logged at ERROR, /metrics still answers with
partnerbot_storage_healthy 0; once the proxy lets connections through again /healthz is
200 and the next command works, without a restart.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import pytest

from storage.sql import Engine
from tests.faults.pg_proxy import PgProxy, proxied
from tests.faults.test_storage_failures import (
    CREATED,
    Running,
    ask,
    errors_with_ref,
    running_with,
)
from tests.integration.bot_harness import APOLOGY

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning"),
]


def parts(health: dict[str, str]) -> dict[str, str]:
    """/healthz without the instance's role, checked here: on PostgreSQL it is standby
    until elected (a grace after start) and again while the database is out of reach."""
    role = health.pop("role")
    assert role in ("leader", "standby"), role
    return health


def running_on(tmp_path: Path, proxy: PgProxy) -> contextlib.AbstractAsyncContextManager[Running]:
    return running_with(tmp_path, f'url = "{proxy.url}"\n')


async def test_postgresql_out_of_reach_is_reported_and_recovered_without_a_restart(
    tmp_path: Path, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with proxied(pg_url) as proxy:
        async with running_on(tmp_path, proxy) as r:
            assert r.services.store.engine is Engine.POSTGRES
            owner = await r.owner()
            assert parts(await r.health(200)) == {"database": "ok", "bot": "ok"}

            proxy.cut()
            caplog.clear()
            body = await r.health(503)
            assert parts(body) == {"database": "failing", "cause": "unreachable", "bot": "ok"}

            reply = await ask(owner, "/newchannel shop")
            apology = APOLOGY.match(reply.text)
            assert apology, reply.text
            [logged] = errors_with_ref(caplog, apology.group(1))
            assert "unreachable" in logged.getMessage(), logged.getMessage()
            status, page = await r.get("/metrics")
            assert status == 200 and "partnerbot_storage_healthy 0.0" in page

            proxy.restore()
            assert parts(await r.health(200)) == {"database": "ok", "bot": "ok"}
            reply = await ask(owner, "/newchannel shop")
            assert CREATED.match(reply.text), reply.text
