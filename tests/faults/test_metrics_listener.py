"""`/metrics` (payment counts, days credited) is not served on the public webhook
listener but on its own, loopback by default (issue 11, point 4, the metrics half)."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from partnerbot.config import load_settings
from tests.e2e import REPO
from tests.e2e.test_run import running_bot

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_metrics_listen_on_loopback_by_default() -> None:
    settings = load_settings(None, environ={})
    assert (settings.metrics.host, settings.metrics.port) == ("127.0.0.1", 9464)
    assert settings.server.port != settings.metrics.port


def test_the_docker_image_does_not_publish_metrics() -> None:
    dockerfile = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    assert "PARTNERBOT_METRICS__HOST=127.0.0.1" in dockerfile
    exposed = {p for line in re.findall(r"(?m)^EXPOSE (.+)$", dockerfile) for p in line.split()}
    assert exposed == {"8080"}, exposed  # `docker run -P` publishes what is exposed


@pytest.mark.slow
async def test_metrics_are_404_on_the_public_port_and_served_on_their_own(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as bot:
        status, _ = await bot.get("/metrics")
        assert status == 404
        status, _ = await bot.get("/healthz")
        assert status == 200  # the public listener still answers what it is for
        status, page = await bot.get("/metrics", bot.metrics)
        assert status == 200
        assert "partnerbot_days_credited_total" in page
        assert bot.metrics.startswith("http://127.0.0.1:")
        # The metrics listener serves nothing else.
        async with aiohttp.ClientSession() as s, s.get(bot.metrics + "/healthz") as r:
            assert r.status == 404
