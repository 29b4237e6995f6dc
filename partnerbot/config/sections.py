"""The sections of the settings: one frozen pydantic model per ``[section]`` of the file.

Each field carries its default and the description that ``config.example.toml`` repeats;
the validators turn what a person may plausibly write (``"1,2"``, ``" usd "``, ``true``
for a number) into a value or a one-line reason.
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
)
from pydantic_settings import NoDecode

from core.errors import InvalidInput
from core.money import check_currency

_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")

# --------------------------------------------------------------------------- validators


def _reject_bool(value: Any) -> Any:
    # Lax pydantic turns true/false into 1/0; in a config file that is always a mistake.
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value


StrictishInt = Annotated[int, BeforeValidator(_reject_bool)]
StrictishFloat = Annotated[float, BeforeValidator(_reject_bool)]


def _blank_to_none(value: Any) -> Any:
    """Optional keys: an empty or all-blank string means "not set"; surrounding blanks
    (a trailing newline from ``$(cat token)``) are dropped."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, SecretStr):
        stripped = value.get_secret_value().strip()
        return SecretStr(stripped) if stripped else None
    return value


def _check_http_url(value: str) -> str:
    error = "must be an http:// or https:// URL with a host"
    if any(ch.isspace() for ch in value):
        raise ValueError(error)
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        raise ValueError(error) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(error)
    return value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


_SECTION = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{3,31}")
_CURRENCY = re.compile(r"[a-z]{3}")


# ------------------------------------------------------------------------------ sections


class TelegramSettings(BaseModel):
    model_config = _SECTION

    token: Annotated[SecretStr | None, BeforeValidator(_blank_to_none)] = Field(
        default=None,
        description="Bot token from @BotFather (secret). Required by `partnerbot run` only.",
    )
    api_base_url: str = Field(
        default="https://api.telegram.org/bot",
        description="Bot API base URL; the token is appended to it. Change it for a "
        "self-hosted Bot API server.",
    )
    bot_username: Annotated[str | None, BeforeValidator(_blank_to_none)] = Field(
        default=None,
        description="The bot's @username (without @), used for invite deep links "
        "(https://t.me/<bot>?start=<code>) when the bot cannot be asked (CLI).",
    )
    timezone: str = Field(
        default="UTC",
        description="IANA time zone for dates shown to users and for scheduled jobs.",
    )
    mode: Annotated[Literal["polling", "webhook"], BeforeValidator(_lower)] = Field(
        default="polling",
        description="How updates arrive: polling (getUpdates, one instance) or webhook "
        "(Telegram posts them to POST /telegram/webhook; several instances may share it).",
    )
    webhook_url: Annotated[str | None, BeforeValidator(_blank_to_none)] = Field(
        default=None,
        description="Public HTTPS URL Telegram posts updates to, e.g. "
        "https://bot.example.com/telegram/webhook (webhook mode).",
    )
    webhook_secret: Annotated[SecretStr | None, BeforeValidator(_blank_to_none)] = Field(
        default=None,
        description="Secret Telegram sends in X-Telegram-Bot-Api-Secret-Token with every "
        "update: 1-256 characters of A-Z a-z 0-9 _ - (secret). Required in webhook mode.",
    )

    @field_validator("api_base_url")
    @classmethod
    def _api_base_url(cls, value: str) -> str:
        return _check_http_url(value.strip())

    @field_validator("bot_username")
    @classmethod
    def _bot_username(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name = value.removeprefix("@")
        if not _USERNAME.fullmatch(name):
            raise ValueError("must be a Telegram username: 5-32 letters, digits or _")
        return name

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = _check_http_url(value.strip())
        if not url.startswith("https://"):
            raise ValueError("must be an https:// URL (Telegram posts only to HTTPS)")
        return url

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _WEBHOOK_SECRET.fullmatch(value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        key = value.strip()
        if key == "UTC":  # works even where no tz database is installed
            return key
        try:
            ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError("must be an IANA time zone name such as 'Europe/Berlin'") from None
        return key

    @property
    def tzinfo(self) -> datetime.tzinfo:
        """The configured time zone as a ``tzinfo``."""
        return datetime.UTC if self.timezone == "UTC" else ZoneInfo(self.timezone)


def _user_ids(value: Any) -> Any:
    """Accept a list, a JSON list (``[1, 2]``), or comma/space separated ids (``1, 2``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise ValueError("must be a list of Telegram user ids such as [1, 2]") from None
    return [part for part in re.split(r"[\s,]+", text) if part]


class AccessSettings(BaseModel):
    model_config = _SECTION

    support_user_ids: Annotated[
        tuple[Annotated[StrictishInt, Field(gt=0)], ...],
        NoDecode,  # the validator below parses env text, so "1,2" works as well as "[1,2]"
        BeforeValidator(_user_ids),
    ] = Field(
        default=(),
        description="Telegram user ids of support staff (they get the support commands).",
    )


class DatabaseSettings(BaseModel):
    model_config = _SECTION

    path: Path = Field(
        default=Path("partnerbot.db"),
        description="SQLite database file; a relative path is relative to the working directory.",
    )
    synchronous: Annotated[Literal["FULL", "NORMAL"], BeforeValidator(_upper)] = Field(
        default="FULL",
        description="SQLite PRAGMA synchronous in WAL mode: FULL survives power loss, "
        "NORMAL may lose the last transactions on power loss but not on a crash.",
    )
    busy_timeout_ms: StrictishInt = Field(
        default=5000,
        gt=0,
        description="How long a connection waits for a lock before failing, in ms.",
    )
    url: Annotated[SecretStr | None, BeforeValidator(_blank_to_none)] = Field(
        default=None,
        description="postgresql://user:password@host:port/database: PostgreSQL instead of "
        "the SQLite file at database.path (secret: it may hold a password).",
    )
    health_probe_seconds: StrictishFloat = Field(
        default=15.0,
        gt=0,
        le=300,
        description="Seconds between storage health probes (free space, a heartbeat write; "
        "PRAGMA quick_check every third probe) behind /healthz.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value().strip()
        scheme = text.split("://", 1)[0].lower() if "://" in text else ""
        if scheme not in ("postgresql", "postgres"):
            raise ValueError(
                "must be a PostgreSQL URL: postgresql://user:password@host:port/database"
            )
        return SecretStr(text)

    @field_validator("path", mode="before")
    @classmethod
    def _path_not_blank(cls, value: Any) -> Any:
        # Path("") would silently become Path(".").
        if isinstance(value, str) and not value.strip():
            raise ValueError("must be a file path")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: Path) -> Path:
        return value.expanduser()


class StripeSettings(BaseModel):
    model_config = _SECTION

    api_key: Annotated[SecretStr | None, BeforeValidator(_blank_to_none)] = Field(
        default=None,
        description="Stripe secret key, sk_live_... or sk_test_... (secret). Required to "
        "take payments.",
    )
    api_base: str = Field(
        default="https://api.stripe.com",
        description="Stripe API base URL (a test double in tests).",
    )
    webhook_secret: Annotated[SecretStr | None, BeforeValidator(_blank_to_none)] = Field(
        default=None,
        description="Signing secret of the Stripe webhook endpoint, whsec_... (secret). "
        "Required to accept webhooks.",
    )
    success_url: Annotated[str | None, BeforeValidator(_blank_to_none)] = Field(
        default=None,
        description="Where Stripe Checkout sends the payer after paying; may contain "
        "{CHECKOUT_SESSION_ID}.",
    )
    session_expiry_minutes: StrictishInt = Field(
        default=60,
        ge=30,
        le=1440,
        description="Lifetime of a Checkout Session (payment link), in minutes; Stripe "
        "allows 30 to 1440.",
    )
    annual_discount_percent: StrictishInt = Field(
        default=15,
        ge=0,
        le=100,
        description="Discount of an annual subscription against 12 monthly payments, in percent.",
    )
    timeout_seconds: StrictishFloat = Field(
        default=20.0,
        gt=0,
        le=600,
        description="Timeout of one request to the Stripe API, in seconds.",
    )

    @field_validator("api_base")
    @classmethod
    def _api_base(cls, value: str) -> str:
        return _check_http_url(value.strip()).rstrip("/")

    @field_validator("success_url")
    @classmethod
    def _success_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value)


class ServerSettings(BaseModel):
    model_config = _SECTION

    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address the HTTP server (POST /stripe/webhook, GET /healthz) "
        "listens on; 0.0.0.0 for all interfaces.",
    )
    port: StrictishInt = Field(
        default=8080,
        ge=1,
        le=65535,
        description="TCP port of the HTTP server.",
    )
    max_connections: StrictishInt = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Most connections open at once; at the cap a new one takes the slot "
        "of the longest-waiting idle or slow one, or is closed when all are being served. "
        "Must fit the open-file limit with room for the bot's own connections.",
    )
    header_timeout_seconds: StrictishFloat = Field(
        default=10.0,
        gt=0,
        le=600,
        description="A request's line and headers must arrive within this, from its first byte.",
    )
    body_timeout_seconds: StrictishFloat = Field(
        default=30.0,
        gt=0,
        le=600,
        description="A request's body must arrive within this after its headers.",
    )
    keepalive_timeout_seconds: StrictishFloat = Field(
        default=15.0,
        gt=0,
        le=3600,
        description="An idle connection (no request in progress) is closed after this.",
    )


class MetricsSettings(BaseModel):
    model_config = _SECTION

    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address of the metrics listener (GET /metrics); keep it private.",
    )
    port: StrictishInt = Field(
        default=9464,
        ge=0,
        le=65535,
        description="TCP port of the metrics listener; 0 turns it off.",
    )


class LimitsSettings(BaseModel):
    """Per-user flood limits (bot/limits.py): each sender may send this many updates a
    minute, in bursts of as many; beyond that updates are dropped before any work, and the
    sender is told once a minute. Support staff are not limited."""

    model_config = _SECTION

    member_per_minute: StrictishInt = Field(
        default=30,
        ge=1,
        le=6000,
        description="Updates a minute a partner member may send (also the largest burst).",
    )
    stranger_per_minute: StrictishInt = Field(
        default=10,
        ge=1,
        le=6000,
        description="Updates a minute a user linked to no partner may send.",
    )
    group_per_minute: StrictishInt = Field(
        default=15,
        ge=1,
        le=6000,
        description="Updates a minute from one group chat, all its members together "
        "(Telegram lets a bot answer a group 20 times a minute: keep room for the "
        "too-many answer and notices).",
    )


class BillingSettings(BaseModel):
    model_config = _SECTION

    currency: Annotated[str, BeforeValidator(_lower)] = Field(
        default="usd",
        description="Default currency of new partners, a lower-case ISO 4217 code.",
    )
    monthly_price: StrictishInt = Field(
        default=1000,
        gt=0,
        description="Default agreed price per channel-month (30 days), in minor units "
        "(1000 = 10.00).",
    )
    low_balance_days: StrictishInt = Field(
        default=30,
        ge=0,
        description="Default low-balance alert threshold, in days of balance.",
    )
    max_topup_days: StrictishInt = Field(
        default=36500,
        gt=0,
        description="Largest number of days one top-up may buy.",
    )
    billing_day: StrictishInt = Field(
        default=1,
        ge=1,
        le=31,
        description="Day of the month invoices are issued (clamped to the month's last day).",
    )
    invite_ttl_hours: StrictishInt = Field(
        default=72,
        gt=0,
        description="How long an invite code stays valid, in hours.",
    )

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not _CURRENCY.fullmatch(value):
            raise ValueError("must be a 3-letter ISO 4217 currency code such as 'usd'")
        try:
            return check_currency(value)
        except InvalidInput:
            raise ValueError(
                "must be a currency partnerbot supports, e.g. 'usd' or 'eur'"
            ) from None


class LoggingSettings(BaseModel):
    model_config = _SECTION

    level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)] = Field(
        default="INFO", description="Lowest level of log records written."
    )
    format: Annotated[Literal["text", "json"], BeforeValidator(_lower)] = Field(
        default="text",
        description="Log line format: text for people, json (one object a line) for collectors.",
    )


MIN_CHAIN_KEY = 16


def _check_chain_key(value: SecretStr | None) -> SecretStr | None:
    # Whoever guesses the key can re-chain the ledger unseen: a short one is no key.
    if value is not None and len(value.get_secret_value()) < MIN_CHAIN_KEY:
        raise ValueError(
            f"must be at least {MIN_CHAIN_KEY} characters (e.g. `openssl rand -hex 32`)"
        )
    return value


class LedgerSettings(BaseModel):
    model_config = _SECTION

    chain_key: Annotated[
        SecretStr | None, BeforeValidator(_blank_to_none), AfterValidator(_check_chain_key)
    ] = Field(
        default=None,
        description="Key sealing the ledger's hash chain with HMAC-SHA256 (secret). Once "
        "set, it must stay set and unchanged.",
    )

    @property
    def chain_key_bytes(self) -> bytes | None:
        key = self.chain_key
        return None if key is None else key.get_secret_value().encode()


def _check_cron(value: str) -> str:
    from partnerbot.crontab import crontab_trigger

    try:
        crontab_trigger(value, datetime.UTC)
    except ValueError as exc:
        raise ValueError(f"is not a crontab expression like '*/15 * * * *' ({exc})") from None
    return value


Cron = Annotated[str, AfterValidator(_check_cron)]


class JobsSettings(BaseModel):
    model_config = _SECTION

    invoices: Cron = Field(
        default="15 6 * * *",
        description="When the invoices job runs (crontab, in telegram.timezone); it "
        "invoices each partner on its billing day.",
    )
    reminders: Cron = Field(default="0 10 * * *", description="Unpaid-invoice reminders.")
    alerts: Cron = Field(default="*/15 * * * *", description="Low-balance sweep.")
    expiry: Cron = Field(default="5 * * * *", description="Channel expiry warnings.")
    renew: Cron = Field(default="*/30 * * * *", description="Auto-renewal of channels.")
    reconcile: Cron = Field(default="*/10 * * * *", description="Stripe reconciliation.")
    backup: Cron = Field(default="30 3 * * *", description="Scheduled database backup.")
    reminder_after_days: StrictishInt = Field(
        default=3, ge=1, le=60, description="Remind about an unpaid invoice after this."
    )
    overdue_after_days: StrictishInt = Field(
        default=14, ge=1, le=365, description="Mark an unpaid invoice overdue after this."
    )
    renew_before_hours: StrictishInt = Field(
        default=24, ge=1, le=24 * 14, description="Auto-renew this long before expiry."
    )
    reconcile_after_minutes: StrictishInt = Field(
        default=15, ge=1, le=24 * 60, description="Ask Stripe about orders open this long."
    )


class BackupSettings(BaseModel):
    model_config = _SECTION

    directory: Path = Field(
        default=Path("backups"),
        description="Where the scheduled backup job writes its copies (created if missing).",
    )
    keep_days: StrictishInt = Field(
        default=14, ge=1, le=3650, description="Scheduled backups older than this are removed."
    )


class ClusterSettings(BaseModel):
    model_config = _SECTION

    failover_seconds: StrictishFloat = Field(
        default=10.0,
        ge=3,
        le=600,
        description="Several instances: a standby takes over the scheduled jobs and the "
        "notice outbox within this many seconds of the leader's end; also the lease of an "
        "instance's claim on a sender's updates in webhook mode.",
    )
