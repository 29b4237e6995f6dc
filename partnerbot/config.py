"""Settings: one frozen object built from init kwargs, the environment and a TOML file.

Sources, highest priority first:

1. keyword arguments given to ``Settings(...)`` (tests);
2. environment variables ``PARTNERBOT_<SECTION>__<KEY>``, e.g. ``PARTNERBOT_TELEGRAM__TOKEN``
   (a list as JSON, ``PARTNERBOT_ACCESS__SUPPORT_USER_IDS='[1, 2]'``; ``1,2`` works too);
3. the TOML file chosen by :func:`load_settings`: the path given, else ``$PARTNERBOT_CONFIG``,
   else ``./config.toml`` (which may be absent: environment-only configuration).

Nothing is read at import time. Every problem becomes a :class:`ConfigError` whose text is
one line naming the key in dotted form and never contains a secret value.

Keys that only some commands need (the bot token for ``partnerbot run``) are optional here
and checked where they are needed with :meth:`Settings.require`.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from core.errors import InvalidInput
from core.money import check_currency

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_PATH",
    "ENV_PREFIX",
    "AccessSettings",
    "BillingSettings",
    "ConfigError",
    "DatabaseSettings",
    "LoggingSettings",
    "ServerSettings",
    "Settings",
    "StripeSettings",
    "TelegramSettings",
    "env_var_name",
    "load_settings",
]

ENV_PREFIX = "PARTNERBOT_"
ENV_NESTED_DELIMITER = "__"
CONFIG_ENV_VAR = "PARTNERBOT_CONFIG"
DEFAULT_CONFIG_PATH = Path("config.toml")


class ConfigError(Exception):
    """A missing or invalid setting. ``str()`` is one line, e.g.
    ``config: billing.monthly_price: must be greater than 0 (got -5)``; never a secret.

    ``keys`` holds the dotted keys at fault (empty when the file as a whole is at fault).
    """

    def __init__(self, message: str, keys: Iterable[str] = ()) -> None:
        line = " ".join(message.split())  # one line, whatever went in
        super().__init__(line)
        self.message = line
        self.keys: tuple[str, ...] = tuple(keys)


def env_var_name(dotted_key: str) -> str:
    """The environment variable that overrides a key: ``telegram.token`` ->
    ``PARTNERBOT_TELEGRAM__TOKEN``."""
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(dotted_key.split(".")).upper()


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


# ------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class _LoadRequest:
    toml_file: Path | None
    environ: Mapping[str, str]


# Set by load_settings() for the duration of one Settings() construction; the sources hook
# is a classmethod, so this is how a path chosen at run time reaches it.
_LOAD_REQUEST: ContextVar[_LoadRequest | None] = ContextVar("partnerbot_config_load", default=None)


class _MappingEnvSettingsSource(EnvSettingsSource):
    """The environment source, reading a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {
            (key if self.case_sensitive else key.lower()): value
            for key, value in self._environ.items()
            if not (self.env_ignore_empty and value == "")
        }


class Settings(BaseSettings):
    """All settings. Build it with :func:`load_settings`; ``Settings(**kwargs)`` reads
    only the kwargs and ``os.environ`` (handy in tests)."""

    model_config = SettingsConfigDict(
        frozen=True,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
        case_sensitive=False,
        env_ignore_empty=True,  # VAR= (e.g. compose's ${VAR:-}) means "not set here"
        hide_input_in_errors=True,
        validate_default=True,
    )

    telegram: TelegramSettings = Field(
        default_factory=TelegramSettings, description="Telegram Bot API."
    )
    access: AccessSettings = Field(
        default_factory=AccessSettings, description="Who may use support commands."
    )
    database: DatabaseSettings = Field(
        default_factory=DatabaseSettings, description="SQLite storage."
    )
    stripe: StripeSettings = Field(default_factory=StripeSettings, description="Stripe payments.")
    server: ServerSettings = Field(
        default_factory=ServerSettings, description="HTTP server for webhooks and health."
    )
    billing: BillingSettings = Field(
        default_factory=BillingSettings, description="Defaults of the billing rules."
    )
    logging: LoggingSettings = Field(default_factory=LoggingSettings, description="Logging.")
    backup: BackupSettings = Field(
        default_factory=BackupSettings, description="Scheduled backups."
    )
    jobs: JobsSettings = Field(
        default_factory=JobsSettings, description="Schedules of the scheduled jobs."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # No .env file and no secrets directory: only what load_settings() asks for.
        request = _LOAD_REQUEST.get()
        if request is None:
            return init_settings, env_settings
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            _MappingEnvSettingsSource(settings_cls, request.environ),
        ]
        if request.toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=request.toml_file))
        return tuple(sources)

    def require(self, *dotted_keys: str) -> None:
        """Raise ConfigError naming the first key that is not set (None or empty), e.g.
        ``settings.require("telegram.token", "stripe.api_key")`` before ``partnerbot run``."""
        for key in dotted_keys:
            value = self.get(key)
            if value is None or (isinstance(value, str | tuple | SecretStr) and not _len(value)):
                raise ConfigError(
                    f"config: {key}: field required (set it in the config file or "
                    f"{env_var_name(key)})",
                    keys=(key,),
                )

    def get(self, dotted_key: str) -> object:
        """The value at a dotted key such as ``billing.currency``; ValueError if no such key."""
        node: object = self
        for part in dotted_key.split("."):
            if not isinstance(node, BaseModel) or part not in type(node).model_fields:
                raise ValueError(f"no setting {dotted_key!r}")
            node = getattr(node, part)
        return node


def _len(value: str | tuple[object, ...] | SecretStr) -> int:
    return len(value.get_secret_value()) if isinstance(value, SecretStr) else len(value)


# ------------------------------------------------------------------------------- loading


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``environ`` (default ``os.environ``) over a TOML file.

    The file is ``path``, else ``$PARTNERBOT_CONFIG``, else ``./config.toml``. A file named
    by ``path`` or ``$PARTNERBOT_CONFIG`` must exist; the default one may be absent.
    Raises ConfigError (one line, no secrets) for any problem.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    explicit = True
    if path is None:
        from_env = env.get(CONFIG_ENV_VAR, "").strip()
        if from_env:
            path = Path(from_env)
        else:
            path, explicit = DEFAULT_CONFIG_PATH, False
    path = path.expanduser()
    if path.is_dir():
        raise ConfigError(f"config: {path} is a directory, not a TOML file")
    exists = path.is_file()
    if explicit and not exists:
        raise ConfigError(f"config: file not found: {path}")

    reset_token = _LOAD_REQUEST.set(_LoadRequest(toml_file=path if exists else None, environ=env))
    try:
        return Settings()
    except ValidationError as exc:
        raise _from_validation_error(exc) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: cannot parse {path}: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config: cannot parse {path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror or exc}") from None
    except SettingsError as exc:
        raise _from_settings_error(exc) from None
    finally:
        _LOAD_REQUEST.reset(reset_token)


# ------------------------------------------------------------------------- error messages


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _leaf_is_echo_safe(loc: tuple[int | str, ...]) -> bool:
    """True if the input at ``loc`` may be shown: a known scalar key that is not a secret
    and not a whole section (a section may hold secrets)."""
    model: type[BaseModel] | None = Settings
    annotation: Any = None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return False
        annotation = model.model_fields[part].annotation
        is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        model = annotation if is_section else None
    if model is not None or annotation is None:
        return False
    return not _mentions_secret(annotation)


def _mentions_secret(annotation: object) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, SecretStr | BaseModel):
        return True
    return any(_mentions_secret(arg) for arg in get_args(annotation))


# Clearer words for what a config file calls a list or a table.
_MESSAGES = {
    "missing": "field required",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "path_type": "must be a file path",
    "model_type": "must be a table (a [section] in TOML)",
    "model_attributes_type": "must be a table (a [section] in TOML)",
    "dict_type": "must be a table (a [section] in TOML)",
}


def _reason(error: Mapping[str, Any]) -> str:
    if error["type"] in _MESSAGES:
        return _MESSAGES[error["type"]]
    msg = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if msg.startswith("Input should be "):
        msg = "must be " + msg.removeprefix("Input should be ")
    elif msg.startswith("Input "):
        msg = msg.removeprefix("Input ")
    return msg[:1].lower() + msg[1:]


def _shown(value: object) -> str | None:
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return repr(text)
    return None


def _describe(error: Mapping[str, Any]) -> tuple[str, str]:
    loc: tuple[int | str, ...] = tuple(error["loc"])
    key = _dotted(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        return key, f"unknown key {key}"
    text = f"{key}: {_reason(error)}"
    if error["type"] != "missing" and _leaf_is_echo_safe(loc):
        shown = _shown(error.get("input"))
        if shown is not None:
            text += f" (got {shown})"
    return key, text


def _from_validation_error(exc: ValidationError) -> ConfigError:
    keys: list[str] = []
    parts: list[str] = []
    for error in exc.errors(include_url=False):
        key, text = _describe(error)
        if text not in parts:
            keys.append(key)
            parts.append(text)
    return ConfigError("config: " + "; ".join(parts), keys=keys)


def _from_settings_error(exc: SettingsError) -> ConfigError:
    # Raised when an environment variable holding a whole section is not valid JSON,
    # e.g. PARTNERBOT_TELEGRAM='{"token": '. The cause (a JSONDecodeError) names a
    # position, never the text.
    match = re.search(r'field "([^"]+)"', str(exc))
    section = match.group(1) if match else "?"
    cause = exc.__cause__
    detail = f": {cause}" if isinstance(cause, json.JSONDecodeError) else ""
    return ConfigError(
        f"config: {section}: cannot parse environment variable {env_var_name(section)} "
        f"as JSON{detail}",
        keys=(section,),
    )
