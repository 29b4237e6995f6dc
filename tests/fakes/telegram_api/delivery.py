"""Webhook delivery: the fake posts its queued updates to a bot's HTTP endpoint, as
Telegram does once a webhook is set.

Each update is POSTed as JSON with ``X-Telegram-Bot-Api-Secret-Token`` (when a secret is
given or was set with setWebhook); a 2xx answer acknowledges it (it leaves the queue); any
other answer, a refused connection or a timeout leaves it queued and it is posted again a
little later (to the next target, when several are given: a load balancer in front of
several instances). Targets may be plain http://127.0.0.1 URLs: the HTTPS rule binds
setWebhook only. Every attempt is recorded in ``deliveries``.

Several connections post concurrently, but, as Telegram does, one sender's next update
waits until the previous one is acknowledged: a slow answer holds up that user's updates
only. (So one user's updates reach the bot in order, though maybe at different
instances, each answering before the previous one's handling is done.)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from .methods import BotApiMethods
from .records import JSONDict

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


@dataclass(frozen=True)
class DeliveryAttempt:
    """One POST of an update: the target, and the HTTP status (None: no answer)."""

    update_id: int
    target: str
    status: int | None
    error: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookSender(BotApiMethods):
    """Adds ``start_delivery``/``stop_delivery`` and the records of what was posted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deliveries: list[DeliveryAttempt] = []
        self._delivering: list[asyncio.Task[None]] = []
        self._in_delivery: set[int] = set()

    @property
    def acknowledged(self) -> list[int]:
        """Update ids answered 2xx, in the order acknowledged (repeats included)."""
        return [a.update_id for a in self.deliveries if a.acknowledged]

    def start_delivery(
        self,
        *targets: str,
        secret: str | None = None,
        connections: int = 1,
        retry_delay: float = 0.1,
        timeout: float = 10.0,
    ) -> None:
        """Post queued updates to ``targets`` (round robin) from ``connections`` workers
        until :meth:`stop_delivery`. ``secret`` defaults to setWebhook's secret_token."""
        if not targets:
            raise ValueError("give at least one target URL")
        token = secret if secret is not None else self.webhook.get("secret_token")
        rotation = itertools.cycle(targets)
        for n in range(connections):
            self._delivering.append(asyncio.create_task(
                self._deliver(rotation, token, retry_delay, timeout), name=f"fake-webhook-{n}"
            ))

    async def stop_delivery(self) -> None:
        tasks, self._delivering = self._delivering, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._in_delivery.clear()

    async def stop(self) -> None:
        await self.stop_delivery()
        await super().stop()

    def _next_update(self) -> JSONDict | None:
        """The earliest queued update whose sender has none queued before it (in flight
        or waiting to be posted again)."""
        waiting: set[object] = set()
        for update in self._updates:
            sender = _sender(update)
            if int(update["update_id"]) not in self._in_delivery and sender not in waiting:
                return update
            if sender is not None:
                waiting.add(sender)
        return None

    async def _deliver(
        self,
        rotation: itertools.cycle[str],
        secret: str | None,
        retry_delay: float,
        seconds: float,
    ) -> None:
        headers = {"Content-Type": "application/json"}
        if secret:
            headers[SECRET_HEADER] = secret
        limits = aiohttp.ClientTimeout(total=seconds)
        async with aiohttp.ClientSession(timeout=limits) as session:
            while not self._closing:
                update = self._next_update()
                if update is None:
                    await self._wait_change(0.05)
                    continue
                update_id = int(update["update_id"])
                self._in_delivery.add(update_id)
                target = next(rotation)
                attempt = await self._post(session, target, update, headers)
                self.deliveries.append(attempt)
                self._in_delivery.discard(update_id)
                if attempt.acknowledged:
                    self._updates = [u for u in self._updates if u is not update]
                    self._max_delivered = max(self._max_delivered, update_id)
                    self._notify()
                    continue
                self.webhook_last_error = (
                    int(time.time()),
                    attempt.error or f"Wrong response from the webhook: {attempt.status}",
                )
                self._notify()
                await asyncio.sleep(retry_delay)

    @staticmethod
    async def _post(
        session: aiohttp.ClientSession, target: str, update: JSONDict, headers: dict[str, str]
    ) -> DeliveryAttempt:
        update_id = int(update["update_id"])
        try:
            async with session.post(target, data=json.dumps(update), headers=headers) as resp:
                await resp.read()
                return DeliveryAttempt(update_id, target, resp.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return DeliveryAttempt(
                update_id, target, None, f"Connection failed: {type(exc).__name__}"
            )


def _sender(update: JSONDict) -> object:
    """Who an update is from (the user; None: nobody, never held up)."""
    for key, value in update.items():
        if key != "update_id" and isinstance(value, dict):
            user = value.get("from")
            if isinstance(user, dict):
                return user.get("id")
    return None
