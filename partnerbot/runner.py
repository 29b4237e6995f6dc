"""`partnerbot run`: the bot (long polling, or Telegram's webhook in webhook mode), the
HTTP server (Stripe webhook, health), the notice dispatcher and the job scheduler, in one
event loop until SIGINT or SIGTERM.

Every instance serves HTTP; only the leader (partnerbot/cluster.py) runs the dispatcher
and the jobs (LeaderDuties), started on election and stopped on deposition."""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import Application

from bot.api_request import MAX_CONNECTIONS as BOT_API_CONNECTIONS
from bot.app import ALLOWED_UPDATES, build_application, deps_of_app, start_up
from bot.claims import ClaimedUpdates
from bot.limits import FloodLimits
from bot.outbox import Dispatcher
from bot.poller import DurablePoller, WebhookIsSet
from bot.webhook import TelegramWebhook
from core.payments import EventHandled
from partnerbot.cluster import (
    CannotStart,
    Leadership,
    OnRole,
    PgLeadership,
    Role,
    SoleLeadership,
    Timing,
)
from partnerbot.config import Settings
from partnerbot.http import Check, HttpServer, build_http_app, build_metrics_app
from partnerbot.http_guard import HttpLimits
from partnerbot.metrics import Metrics
from partnerbot.scheduler import build_scheduler
from partnerbot.wiring import Services, open_services
from payments.webhook import StripeWebhook, WebhookResult
from storage.watch import HealthWatch

log = logging.getLogger("partnerbot")


class StartupError(Exception):
    """The bot could not start; the message is one line for the operator."""


def webhook_label(result: WebhookResult) -> str:
    """The `result` label of partnerbot_webhooks_total for one delivery."""
    if isinstance(result, EventHandled):
        return "duplicate" if result.duplicate else result.result.value
    return result.value


Feed = DurablePoller | ClaimedUpdates  # where updates come from: polling or webhook


def http_server(
    settings: Settings,
    services: Services,
    app: Application,  # type: ignore[type-arg]
    feed: Feed,
    metrics: Metrics,
    leadership: Leadership,
    telegram: TelegramWebhook | None = None,
) -> HttpServer:
    webhook = None
    if services.payments is not None and settings.stripe.webhook_secret is not None:
        webhook = StripeWebhook(
            services.payments, settings.stripe.webhook_secret.get_secret_value(),
            on_result=lambda result: metrics.webhooks.labels(result=webhook_label(result)).inc(),
        )

    async def healthy() -> dict[str, Check]:
        db = services.store.health.state  # kept by the store's calls and its probe
        return {
            "database": Check(db.healthy, db.fault.value if db.fault else None),
            "bot": Check(app.running and feed.running),
        }

    s = settings.server
    return HttpServer(
        build_http_app(
            webhook, healthy, lambda: leadership.role,
            telegram=telegram.handle if telegram else None,
        ),
        s.host, s.port,
        http_limits(settings, s.max_connections),
        on_drop=lambda why: metrics.http_dropped.labels(reason=why.value).inc(),
    )


def http_limits(settings: Settings, max_connections: int) -> HttpLimits:
    s = settings.server
    return HttpLimits(
        max_connections=max_connections,
        header_timeout=s.header_timeout_seconds,
        body_timeout=s.body_timeout_seconds,
        keepalive_timeout=s.keepalive_timeout_seconds,
    )


# The metrics listener is for one scraper on a private address: a few connections.
METRICS_MAX_CONNECTIONS = 16
# Descriptors the process needs beside its listeners' connections: the Bot API pool
# (and getUpdates), the database and its -wal/-shm on two connections, backups, the
# Stripe client, the listening sockets, the event loop's own, stdio.
RESERVED_FILES = BOT_API_CONNECTIONS + 64


def metrics_server(
    settings: Settings, services: Services, metrics: Metrics
) -> HttpServer | None:
    """The metrics listener, or None when `metrics.port` is 0."""
    m = settings.metrics
    if m.port == 0:
        return None

    async def metrics_page() -> bytes:
        return await metrics.render(services.store, services.clock.now())

    return HttpServer(
        build_metrics_app(metrics_page), m.host, m.port,
        http_limits(settings, METRICS_MAX_CONNECTIONS),
        on_drop=lambda why: metrics.http_dropped.labels(reason=why.value).inc(),
    )


def check_file_limit(settings: Settings) -> None:
    """Refuse a connection cap that does not leave the bot its own descriptors: at the
    limit the Bot API client cannot open sockets and chats stop being answered."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = settings.server.max_connections
    metrics = METRICS_MAX_CONNECTIONS if settings.metrics.port else 0
    if soft != resource.RLIM_INFINITY and cap + metrics + RESERVED_FILES > soft:
        raise StartupError(
            f"server.max_connections: {cap} connections (+{metrics} for metrics and "
            f"{RESERVED_FILES} kept for the bot's own connections and files) do not fit "
            f"the open-file limit of {soft}: lower server.max_connections to at most "
            f"{max(soft - metrics - RESERVED_FILES, 0)} or raise the limit "
            "(ulimit -n, systemd LimitNOFILE=)"
        )


async def listen(server: HttpServer, key: str) -> None:
    """Start one listener; a port that cannot be had stops start-up naming its key."""
    try:
        await server.start()
    except OSError as exc:
        raise StartupError(
            f"{key}: cannot listen on {server.host}:{server.port} ({exc.strerror})"
        ) from exc


def leadership_for(settings: Settings, on_role: OnRole) -> Leadership:
    """An election: through a lock file beside SQLite's database (one machine), or
    through PostgreSQL (several)."""
    url = settings.database.url
    if url is None:
        return SoleLeadership(
            settings.database.path, on_role,
            exclusive=settings.telegram.mode == "polling",
            poll=Timing.for_failover(settings.cluster.failover_seconds).poll,
        )
    return PgLeadership(
        url.get_secret_value(), Timing.for_failover(settings.cluster.failover_seconds),
        on_role, exclusive_poller=settings.telegram.mode == "polling",
    )


class LeaderDuties:
    """What only the leader runs: the notice dispatcher and the job schedule."""

    def __init__(
        self, services: Services, dispatcher: Dispatcher, catch_up: timedelta | None
    ) -> None:
        self.services, self.dispatcher, self.catch_up = services, dispatcher, catch_up
        self.scheduler: AsyncIOScheduler | None = None

    async def lead(self) -> int:
        now = self.services.clock.now()
        # The fence first: from this commit on, the deposed leader's rounds claim nothing.
        epoch = await self.services.store.write(lambda lg: lg.begin_leadership(now))
        self.dispatcher.start(epoch)
        self.scheduler = build_scheduler(self.services, self.dispatcher.wake.set, self.catch_up)
        self.scheduler.start()
        return epoch

    async def step_down(self) -> None:
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)  # a job in hand finishes; it is keyed
        await self.dispatcher.stop()  # sends nothing more: it asks before each message


class Runtime:
    """Everything `run` starts, started in order and stopped in reverse."""

    def __init__(self, settings: Settings, services: Services) -> None:
        settings.require("telegram.token")
        assert settings.telegram.token is not None
        self.settings, self.services = settings, services
        self.metrics = metrics = Metrics()
        self.app = build_application(
            token=settings.telegram.token.get_secret_value(),
            api_base_url=settings.telegram.api_base_url,
            billing=services.billing,
            support_ids=frozenset(settings.access.support_user_ids),
            tz=settings.telegram.tzinfo,
            payments=services.payments,
            on_update=lambda command: metrics.updates.labels(command=command).inc(),
            on_error=metrics.errors.inc,
            limits=FloodLimits(
                member_per_minute=settings.limits.member_per_minute,
                stranger_per_minute=settings.limits.stranger_per_minute,
                group_per_minute=settings.limits.group_per_minute,
            ),
        )
        self.feed: Feed
        telegram: TelegramWebhook | None = None
        deps = deps_of_app(self.app)
        if settings.telegram.mode == "webhook":
            settings.require("telegram.webhook_secret")
            assert settings.telegram.webhook_secret is not None
            # Updates come to POST /telegram/webhook; the database orders their handling
            # across instances (bot/claims.py).
            self.feed = ClaimedUpdates(
                self.app, services.store, services.clock,
                lease=settings.cluster.failover_seconds, gate=deps.gate,
            )
            telegram = TelegramWebhook(
                self.feed, settings.telegram.webhook_secret.get_secret_value(), self.app.bot,
                deps.gate,
                on_result=lambda r: metrics.telegram_webhook.labels(result=r.value).inc(),
            )
        else:
            # Not the Updater's start_polling: it confirms updates to Telegram while they
            # still wait in memory. This one records them in the database first.
            self.feed = DurablePoller(
                self.app, services.store, services.clock, allowed_updates=ALLOWED_UPDATES,
                raw=deps.raw_updates,
            )
        self.leadership = leadership = leadership_for(
            settings, lambda role: metrics.leader.set(int(role is Role.LEADER))
        )
        self.server = http_server(
            settings, services, self.app, self.feed, metrics, leadership, telegram
        )
        self.metrics_server = metrics_server(settings, services, metrics)
        self.dispatcher = Dispatcher(
            self.app.bot, services.store, services.clock, settings.telegram.tzinfo,
            settings.access.support_user_ids,
            leading=lambda: leadership.role is Role.LEADER, on_fenced=leadership.fenced,
        )
        # A new leader of several runs the jobs that fell due while nobody led.
        catch_up = (
            None if settings.database.url is None
            else timedelta(seconds=2 * settings.cluster.failover_seconds)
        )
        self.duties = LeaderDuties(services, self.dispatcher, catch_up)
        self.health_watch = HealthWatch(services.store, settings.database.health_probe_seconds)

    def bot_username(self) -> str | None:
        """The running bot's username (getMe), known once `start` has initialized it."""
        username: str = self.app.bot.username
        return username

    async def start(self) -> None:
        check_file_limit(self.settings)
        try:
            await self.leadership.open()  # a second owner of the file, or poller: refused
        except CannotStart as exc:
            raise StartupError(str(exc)) from None
        self.health_watch.start()
        try:
            await self.app.initialize()  # asks getMe: checks the token and the API address
        except InvalidToken as exc:
            raise StartupError("telegram.token: Telegram refused the bot token") from exc
        except NetworkError as exc:
            raise StartupError(
                f"telegram.api_base_url: cannot reach the Bot API ({exc.message})"
            ) from exc
        await start_up(self.app)
        await listen(self.server, "server.port")
        if self.metrics_server is not None:
            await listen(self.metrics_server, "metrics.port")
        await self.app.start()
        if isinstance(self.feed, ClaimedUpdates):
            await self.check_webhook()
        try:
            await self.feed.start()
        except WebhookIsSet as exc:
            raise StartupError(str(exc)) from exc
        self.leadership.start(self.duties)  # the jobs and the outbox, once leading
        log.info("bot @%s running; stop with SIGINT or SIGTERM", self.app.bot.username)

    async def check_webhook(self) -> None:
        """Webhook mode: say so when Telegram posts updates elsewhere, or nowhere (the
        instance still starts: `partnerbot webhook set` may come after)."""
        wanted = self.settings.telegram.webhook_url
        try:
            info = await self.app.bot.get_webhook_info()
        except TelegramError as exc:
            log.warning("could not ask Telegram which webhook is set: %s", exc)
            return
        if not info.url:
            log.warning("webhook mode, but no webhook is set with Telegram: run"
                        " `partnerbot webhook set`")
        elif wanted and info.url != wanted:
            log.warning("Telegram posts updates to %s, not telegram.webhook_url (%s): run"
                        " `partnerbot webhook set`", info.url, wanted)

    async def stop(self) -> None:
        await self.leadership.close()  # steps down first, then lets another lead
        app = self.app
        await self.feed.stop()  # polling: stops asking; webhook: finishes its senders' updates
        if app.running:
            await app.stop()  # finishes the updates in hand
        await self.feed.close()  # polling: marks them handled; webhook: releases claims
        await self.server.stop()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        await self.health_watch.stop()
        try:
            await app.shutdown()
        except TelegramError as exc:
            log.warning("shutdown: %s", exc)


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Open the services, run until `stop` (or SIGINT, SIGTERM), close them."""
    runtime: Runtime | None = None

    def bot_username() -> str | None:
        # Asked when a payment link is made: every one is made after start-up's getMe
        # (handlers, jobs and the webhook start after it), so the bot's own username.
        return runtime.bot_username() if runtime is not None else None

    services = await open_services(settings, bot_username)
    try:
        runtime = Runtime(settings, services)
        await _run(runtime, stop or asyncio.Event())
    finally:
        await services.close()


async def _run(runtime: Runtime, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await runtime.start()
            await stop.wait()
            log.info("stopping: finishing the updates in hand")
        finally:
            await runtime.stop()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
