"""Several `partnerbot run` processes sharing one database, behind a loopback balancer.

    async with FakeTelegram() as tg, FakeStripe() as stripe, Cluster(
        tmp_path, tg, stripe, instances=3, database_url=pg_url, mode="webhook"
    ) as cluster:
        ... Telegram and Stripe post to cluster.public_url (the balancer) ...
        leader = await cluster.wait_leader()
        await leader.kill()              # SIGKILL
        await leader.start()             # a new process in the same slot, same port

The same console script, configuration from the environment, as production: each instance
has its own HTTP port (server.port), log file per process generation and the same database
(`database_url` on PostgreSQL, else one SQLite file under `tmp`, where only one instance
can poll), bot token, Stripe and secrets. The balancer (tests/fakes/balancer) spreads the
requests; a killed instance refuses connections and is skipped. Used by
tests/e2e/test_cluster.py and bench/e2e.py's --instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Literal, Protocol, TypeVar

import aiohttp

from tests.e2e import clean_env, console_script
from tests.fakes.balancer import Balancer
from tests.faults import free_port

Mode = Literal["polling", "webhook"]


class BotApi(Protocol):
    """Where the instances find the Bot API (FakeTelegram, or the bench's load process)."""

    @property
    def token(self) -> str: ...

    @property
    def base_url(self) -> str: ...


class StripeApi(Protocol):
    """Where the instances find Stripe (FakeStripe)."""

    @property
    def api_key(self) -> str: ...

    @property
    def base_url(self) -> str: ...
STRIPE_SECRET = "whsec_cluster_partnerbot_0123456789abcdef"
WEBHOOK_SECRET = "tg-cluster-secret_0123456789"
# What the instances are told their public address is. Telegram (the fake) is pointed at
# the balancer itself; the configured URL must be https, as Telegram requires.
PUBLIC_WEBHOOK_URL = "https://bot.example.com/telegram/webhook"
SUPPORT = 900_001
START_SECONDS = 60.0  # a loaded 2-core machine starting three processes is slow


@dataclass(frozen=True)
class Health:
    """One answer of GET /healthz."""

    status: int
    body: dict[str, Any]

    @property
    def role(self) -> str | None:
        """"leader" or "standby" once several instances elect one (issue 12); None before."""
        role = self.body.get("role")
        return role if isinstance(role, str) else None


TG = TypeVar("TG", bound=BotApi)
ST = TypeVar("ST", bound="StripeApi | None")


class Instance:
    """One slot of the cluster: a `partnerbot run` process, started again after a kill on
    the same port (the balancer keeps its address)."""

    def __init__(self, cluster: Cluster[Any, Any], index: int) -> None:
        self.cluster, self.index = cluster, index
        self.port = free_port()
        self.metrics_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.generation = 0
        self.kills = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def log(self, generation: int | None = None) -> Path:
        g = self.generation if generation is None else generation
        return self.cluster.tmp / f"bot{self.index}-{g}.log"

    def logs(self) -> str:
        """Every generation's log, oldest first."""
        return "".join(
            self.log(g).read_text(errors="replace")
            for g in range(1, self.generation + 1) if self.log(g).exists()
        )

    def tail(self, chars: int = 3000) -> str:
        log = self.log()
        return log.read_text(errors="replace")[-chars:] if log.exists() else ""

    async def launch(self) -> None:
        """Start the process; do not wait for it (see wait_healthy)."""
        assert not self.running, f"instance {self.index} is already running"
        self.generation += 1
        with self.log().open("wb") as sink:
            self.proc = await asyncio.create_subprocess_exec(
                *console_script(), "run", cwd=self.cluster.tmp, stdout=sink, stderr=sink,
                env=self.cluster.env(self),
            )

    async def health(self) -> Health | None:
        """GET /healthz; None when nothing answers."""
        timeout = aiohttp.ClientTimeout(total=3)
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
            async with aiohttp.ClientSession(timeout=timeout) as http, http.get(
                self.url + "/healthz"
            ) as r:
                text = await r.text()
                body = json.loads(text) if text.startswith("{") else {"text": text}
                return Health(r.status, body if isinstance(body, dict) else {})
        return None

    async def wait_healthy(self, within: float = START_SECONDS) -> Health:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.returncode is not None:
                raise AssertionError(f"instance {self.index} exited:\n{self.tail()}")
            found = await self.health()
            if found is not None and found.status == 200:
                return found
            await asyncio.sleep(0.1)
        raise AssertionError(f"instance {self.index} not healthy in {within} s:\n{self.tail()}")

    async def start(self) -> Health:
        await self.launch()
        return await self.wait_healthy()

    async def kill(self) -> None:
        """SIGKILL: no goodbye, no lock released by the process itself."""
        assert self.proc is not None and self.running, self.tail()
        self.kills += 1
        self.proc.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(self.proc.wait(), 20) == -signal.SIGKILL

    async def stop(self, within: float = 30.0) -> int:
        """SIGTERM, as a deploy stops it; returns the exit status."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), within)

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as http, http.get(self.metrics_url + "/metrics") as r:
            return await r.text()


class Cluster(Generic[TG, ST]):
    """N instances on one database, behind a Balancer; an async context manager that starts
    them all (in parallel), waits until each is healthy, and kills what is left at exit."""

    def __init__(
        self, tmp: Path, tg: TG, stripe: ST, *, instances: int = 3,
        database_url: str | None = None, mode: Mode = "webhook",
        webhook_secret: str = WEBHOOK_SECRET, support: int = SUPPORT, **extra_env: str,
    ) -> None:  # fmt: skip
        if mode == "polling" and instances > 1:
            raise ValueError("only one instance may poll a bot token")
        self.tmp, self.tg, self.stripe = tmp, tg, stripe
        self.database_url, self.mode = database_url, mode
        self.webhook_secret, self.support = webhook_secret, support
        self.db = tmp / "bot.db"  # the SQLite file when there is no database_url
        self.extra_env = extra_env
        self.instances = [Instance(self, i) for i in range(instances)]
        self.balancer = Balancer([i.url for i in self.instances])

    @property
    def public_url(self) -> str:
        """Where Telegram and Stripe post: the balancer."""
        return self.balancer.url

    @property
    def telegram_webhook(self) -> str:
        return self.public_url + "/telegram/webhook"

    @property
    def stripe_webhook(self) -> str:
        return self.public_url + "/stripe/webhook"

    def env(self, instance: Instance) -> dict[str, str]:
        settings = {
            "PARTNERBOT_TELEGRAM__TOKEN": self.tg.token,
            "PARTNERBOT_TELEGRAM__API_BASE_URL": self.tg.base_url,
            "PARTNERBOT_TELEGRAM__MODE": self.mode,
            "PARTNERBOT_ACCESS__SUPPORT_USER_IDS": f"[{self.support}]",
            "PARTNERBOT_SERVER__PORT": str(instance.port),
            "PARTNERBOT_METRICS__PORT": str(instance.metrics_port),
            "PARTNERBOT_LOGGING__FORMAT": "json",
            # Each instance's backups would race for one folder; the jobs are the leader's.
            "PARTNERBOT_BACKUP__DIRECTORY": str(self.tmp / f"backups-{instance.index}"),
        }
        if self.stripe is not None:  # else payments are off, as without stripe.api_key
            settings["PARTNERBOT_STRIPE__API_KEY"] = self.stripe.api_key
            settings["PARTNERBOT_STRIPE__API_BASE"] = self.stripe.base_url
            settings["PARTNERBOT_STRIPE__WEBHOOK_SECRET"] = STRIPE_SECRET
        if self.database_url is not None:
            settings["PARTNERBOT_DATABASE__URL"] = self.database_url
        else:
            settings["PARTNERBOT_DATABASE__PATH"] = str(self.db)
        if self.mode == "webhook":
            settings["PARTNERBOT_TELEGRAM__WEBHOOK_URL"] = PUBLIC_WEBHOOK_URL
            settings["PARTNERBOT_TELEGRAM__WEBHOOK_SECRET"] = self.webhook_secret
        settings.update(self.extra_env)
        return clean_env(**settings)

    async def __aenter__(self) -> Cluster[TG, ST]:
        await self.balancer.__aenter__()
        try:
            for instance in self.instances:
                await instance.launch()
            await asyncio.gather(*(i.wait_healthy() for i in self.instances))
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for instance in self.instances:
            if instance.proc is not None and instance.proc.returncode is None:
                instance.proc.kill()
                await instance.proc.wait()
        await self.balancer.__aexit__(None, None, None)

    async def roles(self) -> dict[int, str | None]:
        """Each running instance's /healthz role (None: no role reported, or no answer)."""
        found = await asyncio.gather(*(i.health() for i in self.instances))
        return {
            i.index: (h.role if h is not None else None)
            for i, h in zip(self.instances, found, strict=True) if i.running
        }

    async def wait_leader(self, within: float = 30.0, other_than: int | None = None) -> Instance:
        """The one running instance whose /healthz says "leader" (never two at once)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            roles = await self.roles()
            leaders = [i for i, role in roles.items() if role == "leader"]
            assert len(leaders) <= 1, f"two leaders at once: {roles}"
            if leaders and leaders[0] != other_than:
                return self.instances[leaders[0]]
            await asyncio.sleep(0.1)
        raise AssertionError(f"no leader within {within} s: {await self.roles()}")

    def logs(self) -> str:
        return "".join(i.logs() for i in self.instances)

    async def stop_all(self) -> list[int]:
        """SIGTERM every running instance; their exit statuses."""
        running = [i for i in self.instances if i.running]
        return list(await asyncio.gather(*(i.stop() for i in running)))


__all__ = [
    "PUBLIC_WEBHOOK_URL", "STRIPE_SECRET", "SUPPORT", "WEBHOOK_SECRET", "BotApi", "Cluster",
    "Health", "Instance", "Mode", "StripeApi",
]
