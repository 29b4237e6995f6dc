"""Payments on loopback: FakeStripe + a real SQLite file + BillingService + PaymentService.

The real `StripeGateway` (stripe-python's StripeClient over HTTPX) talks to
:class:`FakeStripe`, which validates every parameter against stripe-python's own TypedDicts;
the real `StripeWebhook` is served by partnerbot.http (`build_http_app`, `HttpServer`) on
127.0.0.1 and gets signed events over HTTP, like Stripe delivers them::

    async with payments_harness(tmp_path) as h:
        acme = await h.new_partner("Acme", channels=["shop"])
        order = await h.payments.start_topup(acme.id, 30, "user:1")
        event = h.fake.complete_session(order.provider_ref)
        assert await h.deliver(event) == "credited"
        assert await h.balance(acme.id) == 30
        await h.verify()

The application clock is a :class:`FakeClock` that keeps FakeStripe's clock at the same
instant (FakeStripe checks `expires_at` against its own clock), so tests may move to any
date. Webhook signatures use real time, as Stripe's verification does.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from core import notices
from core.model import OrderStatus, Partner, PaymentOrder, partner_account
from core.payments import PaymentService
from core.policy import BillingPolicy
from core.ports import Store
from core.service import BillingService
from partnerbot.http import HttpServer, build_http_app
from payments.stripe_gateway import StripeGateway
from payments.webhook import StripeWebhook, WebhookResult
from storage.sqlite import SqliteStore
from tests.conftest import START, FakeClock
from tests.fakes.stripe_api import FakeStripe, RecordedRequest

WEBHOOK_SECRET = "whsec_test_partnerbot_payments_0123456789"
SUCCESS_URL = "https://t.me/partner_test_bot"
SESSION_TTL = timedelta(hours=1)
GATEWAY_TIMEOUT = 0.5  # seconds: a hung Stripe call gives up fast
ANNUAL_DISCOUNT = 15
CHECKOUT = "/v1/checkout/sessions"

# stripe's HTTPXClient passes the form body as `data=<str>`, which httpx deprecates.
HTTPX_DEPRECATION = "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"

Json = dict[str, Any]
Healthy = Callable[[], Awaitable[dict[str, bool]]]


class SyncedClock(FakeClock):
    """A FakeClock that moves FakeStripe's clock along with it (whole seconds)."""

    def __init__(self, start: datetime, fake: FakeStripe) -> None:
        super().__init__(start)
        self.fake = fake
        self.sync()

    def sync(self) -> None:
        """Put FakeStripe's clock back at this clock's instant (e.g. after a renewal)."""
        self.fake.advance_time(int(self.now().timestamp()) - self.fake.now())

    def advance(self, delta: timedelta) -> datetime:
        instant = super().advance(delta)
        self.sync()
        return instant

    def set(self, instant: datetime) -> None:
        super().set(instant)
        self.sync()


@dataclass(frozen=True)
class Snapshot:
    """What a payment could change, for "changes nothing" assertions (equality)."""

    accounts: tuple[tuple[Any, ...], ...]
    orders: tuple[tuple[Any, ...], ...]
    channels: tuple[tuple[Any, ...], ...]
    transfers: int
    notices: int


@dataclass(frozen=True)
class Notice:
    partner_id: int | None  # None: for support staff
    kind: str
    facts: Json  # the stored payload
    notice: notices.AnyNotice  # the payload decoded


class PaymentsHarness:
    def __init__(
        self,
        fake: FakeStripe,
        store: SqliteStore,
        clock: SyncedClock,
        billing: BillingService,
        gateway: StripeGateway,
        payments: PaymentService,
        webhook: StripeWebhook,
        server: HttpServer,
        http: aiohttp.ClientSession,
        base_url: str,
        webhook_results: list[WebhookResult] | None = None,
    ) -> None:
        self.fake = fake
        self.store = store
        self.clock = clock
        self.billing = billing
        self.gateway = gateway
        self.payments = payments
        self.webhook = webhook
        # What the webhook's result hook heard, one entry per delivery.
        self.webhook_results = [] if webhook_results is None else webhook_results
        self.server = server
        self.http = http
        self.base_url = base_url
        self.webhook_url = f"{base_url}/stripe/webhook"
        self.secret = WEBHOOK_SECRET
        self._keys = 0

    # ------------------------------------------------------------------------ set-up

    def key(self, prefix: str = "test") -> str:
        self._keys += 1
        return f"{prefix}:{self._keys}"

    async def new_partner(
        self,
        name: str,
        *,
        currency: str | None = None,
        monthly_price: int | None = None,
        channels: Iterable[str] = (),
        days: int = 0,
        member_id: int | None = None,
    ) -> Partner:
        """A partner with live channels, a balance and (optionally) a linked member."""
        made = await self.billing.create_partner(
            name, "support:900", monthly_price=monthly_price, currency=currency
        )
        pid = made.partner.id
        if member_id is not None:
            await self.billing.redeem_invite(made.invite_code, member_id)
        for channel in channels:
            await self.billing.create_channel(pid, channel, "support:900", self.key("new"))
        if days:
            await self.billing.grant_days(pid, days, "test set-up", "support:900", self.key("g"))
        return made.partner

    # ---------------------------------------------------------------------- webhooks

    async def post(
        self,
        event: Json | str | bytes,
        *,
        secret: str | None = None,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
        signed: bool = True,
    ) -> tuple[int, Json]:
        """POST an event to the webhook (signed like Stripe unless told otherwise)."""
        body, signed_headers = self.fake.signed_webhook(
            event, secret or self.secret, timestamp
        )
        if not signed:
            signed_headers.pop("Stripe-Signature")
        if headers is not None:
            signed_headers.update(headers)
        async with self.http.post(self.webhook_url, data=body, headers=signed_headers) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text else {}

    async def deliver(self, event: Json) -> str:
        """A signed delivery that must be accepted; returns what the bot did with it."""
        status, body = await self.post(event)
        assert status == 200, (status, body)
        return str(body.get("result", body["status"]))

    async def get(self, path: str) -> tuple[int, Json]:
        async with self.http.get(f"{self.base_url}{path}") as resp:
            return resp.status, await resp.json()

    def event_for(self, event_type: str, object_id: str) -> Json:
        """The last event of `event_type` about the object `object_id`."""
        for event in reversed(self.fake.events_of_type(event_type)):
            if event["data"]["object"]["id"] == object_id:
                return event
        raise AssertionError(f"no {event_type} for {object_id}")

    def variant(self, event: Json, **changes: Any) -> Json:
        """A copy of `event` with a new id and `data.object` fields changed (as Stripe
        would send a different event about the same object)."""
        copied = copy.deepcopy(event)
        copied["id"] = f"{event['id']}{self.key('v').replace(':', '')}"
        copied["data"]["object"].update(changes)
        return copied

    # --------------------------------------------------------------------- Stripe side

    def checkout_requests(self, order_id: int | None = None) -> list[RecordedRequest]:
        """POST /v1/checkout/sessions requests seen by the fake (for one order)."""
        seen = self.fake.requests_to(CHECKOUT, "POST")
        if order_id is None:
            return seen
        return [r for r in seen if r.params.get("metadata", {}).get("order_id") == str(order_id)]

    def session(self, order: PaymentOrder) -> Json:
        assert order.provider_ref is not None, order
        return self.fake.get(order.provider_ref)

    # --------------------------------------------------------------------- reading

    async def balance(self, partner_id: int) -> int:
        return await self.store.read(lambda lg: lg.balance(partner_account(partner_id)))

    async def order(self, order_id: int) -> PaymentOrder:
        found = await self.store.read(lambda lg: lg.get_order(order_id))
        assert found is not None
        return found

    async def orders(
        self, partner_id: int | None = None, *statuses: OrderStatus
    ) -> list[PaymentOrder]:
        return await self.store.read(lambda lg: lg.list_orders(partner_id, statuses=statuses))

    async def channel(self, partner_id: int, name: str) -> Any:
        found = await self.store.read(lambda lg: lg.find_live_channel(partner_id, name))
        assert found is not None
        return found

    async def notices(self, kind: str | None = None) -> list[Notice]:
        rows = await self.store.execute_raw(
            "SELECT partner_id, kind, payload FROM notices ORDER BY id"
        )
        found = [Notice(r[0], r[1], json.loads(r[2]), notices.decode(r[1], r[2])) for r in rows]
        return [n for n in found if kind is None or n.kind == kind]

    async def deliveries(self, support_ids: Iterable[int] = ()) -> list[tuple[int, str]]:
        """Expand queued notices into deliveries (as the dispatcher does) and list them
        as (user id, notice kind)."""
        ids = list(support_ids)
        now = self.clock.now()
        await self.store.write(lambda lg: lg.expand_notices(ids, now))
        rows = await self.store.execute_raw(
            "SELECT d.user_id, n.kind FROM deliveries d JOIN notices n ON n.id = d.notice_id"
            " ORDER BY d.id"
        )
        return [(int(r[0]), str(r[1])) for r in rows]

    async def transfers(self, kind: str | None = None) -> list[tuple[Any, ...]]:
        rows = await self.store.execute_raw(
            "SELECT debit, credit, days, kind, actor, order_id FROM transfers ORDER BY id"
        )
        return [r for r in rows if kind is None or r[3] == kind]

    async def stripe_events(self) -> dict[str, tuple[str, str]]:
        rows = await self.store.execute_raw("SELECT id, type, result FROM stripe_events")
        return {r[0]: (r[1], r[2]) for r in rows}

    async def snapshot(self) -> Snapshot:
        q = self.store.execute_raw
        return Snapshot(
            accounts=tuple(await q("SELECT code, balance FROM accounts ORDER BY code")),
            orders=tuple(await q(
                "SELECT id, status, provider_ref, payment_ref, url, paid_at, closed_at,"
                " refunded_days FROM orders ORDER BY id"
            )),
            channels=tuple(await q(
                "SELECT id, active_until, billing, subscription_ref, deleted_at"
                " FROM channels ORDER BY id"
            )),
            transfers=(await q("SELECT count(*) FROM transfers"))[0][0],
            notices=(await q("SELECT count(*) FROM notices"))[0][0],
        )

    async def verify(self) -> None:
        report = await self.billing.verify()
        assert report.ok, [str(v) for v in report.violations]


async def _server_port(server: HttpServer) -> int:
    addresses = server.addresses
    assert addresses, "the HTTP server is not listening"
    return int(addresses[0][1])


@contextlib.asynccontextmanager
async def payments_harness(
    tmp_path: Path,
    *,
    start: datetime = START,
    policy: BillingPolicy | None = None,
    max_network_retries: int = 0,
    gateway_timeout: float = GATEWAY_TIMEOUT,
    healthy: Healthy | None = None,
    payments_store: Callable[[SqliteStore], Store] | None = None,
) -> AsyncIterator[PaymentsHarness]:
    """Everything payments need, started; checks the ledger and the fake on the way out.

    `payments_store` puts something between the PaymentService and the database (a store
    that fails on cue, for crash tests); the rest of the harness reads the database."""
    async with FakeStripe() as fake:
        clock = SyncedClock(start, fake)
        store = await SqliteStore.open(tmp_path / "payments.db")
        gateway = StripeGateway(
            fake.api_key, api_base=fake.base_url, success_url=lambda: SUCCESS_URL,
            timeout_seconds=gateway_timeout, max_network_retries=max_network_retries,
        )
        try:
            billing = BillingService(store, clock, policy or BillingPolicy())
            payments = PaymentService(
                payments_store(store) if payments_store else store, clock, gateway,
                policy=policy, session_ttl=SESSION_TTL,
                annual_discount_percent=ANNUAL_DISCOUNT,
            )
            results: list[WebhookResult] = []
            webhook = StripeWebhook(payments, WEBHOOK_SECRET, on_result=results.append)

            async def database_ok() -> dict[str, bool]:
                return {"database": await store.ping()}

            server = HttpServer(
                build_http_app(webhook, healthy or database_ok), "127.0.0.1", 0
            )
            await server.start()
            try:
                port = await _server_port(server)
                async with aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=10)
                ) as http:
                    harness = PaymentsHarness(
                        fake, store, clock, billing, gateway, payments, webhook, server,
                        http, f"http://127.0.0.1:{port}", results,
                    )
                    yield harness
                    await harness.verify()
            finally:
                await server.stop()
        finally:
            await gateway.close()
            with contextlib.suppress(ValueError):  # a test may have closed it already
                await store.close()
    assert fake.internal_errors == []


def utc(year: int, month: int, day: int, hour: int = 9) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


__all__ = [
    "ANNUAL_DISCOUNT",
    "CHECKOUT",
    "HTTPX_DEPRECATION",
    "SESSION_TTL",
    "WEBHOOK_SECRET",
    "Notice",
    "PaymentsHarness",
    "Snapshot",
    "payments_harness",
    "utc",
]
