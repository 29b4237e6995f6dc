"""Loading the settings: the TOML file and the environment, in their order of priority.

:func:`load_settings` chooses the file (the path given, else ``$PARTNERBOT_CONFIG``, else
``./config.toml``, which may be absent) and builds one frozen :class:`Settings`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from partnerbot.config.errors import (
    ENV_NESTED_DELIMITER,
    ENV_PREFIX,
    ConfigError,
    env_var_name,
    from_settings_error,
    from_validation_error,
)
from partnerbot.config.sections import (
    AccessSettings,
    BackupSettings,
    BillingSettings,
    ClusterSettings,
    DatabaseSettings,
    JobsSettings,
    LedgerSettings,
    LimitsSettings,
    LoggingSettings,
    MetricsSettings,
    ServerSettings,
    StripeSettings,
    TelegramSettings,
)

CONFIG_ENV_VAR = "PARTNERBOT_CONFIG"
DEFAULT_CONFIG_PATH = Path("config.toml")


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
        super().__init__(settings_cls)
        # Replaces what the base class read from os.environ (its public ``env_vars``),
        # filtered and cased the way the base class reads it.
        self.env_vars = {
            (key if self.case_sensitive else key.lower()): value
            for key, value in environ.items()
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
        default_factory=DatabaseSettings, description="Storage: SQLite, or PostgreSQL."
    )
    stripe: StripeSettings = Field(default_factory=StripeSettings, description="Stripe payments.")
    server: ServerSettings = Field(
        default_factory=ServerSettings, description="HTTP server for webhooks and health."
    )
    metrics: MetricsSettings = Field(
        default_factory=MetricsSettings, description="Metrics listener (GET /metrics)."
    )
    billing: BillingSettings = Field(
        default_factory=BillingSettings, description="Defaults of the billing rules."
    )
    logging: LoggingSettings = Field(default_factory=LoggingSettings, description="Logging.")
    ledger: LedgerSettings = Field(
        default_factory=LedgerSettings, description="The ledger's hash chain."
    )
    backup: BackupSettings = Field(
        default_factory=BackupSettings, description="Scheduled backups."
    )
    cluster: ClusterSettings = Field(
        default_factory=ClusterSettings, description="Several instances on one PostgreSQL."
    )
    jobs: JobsSettings = Field(
        default_factory=JobsSettings, description="Schedules of the scheduled jobs."
    )
    limits: LimitsSettings = Field(
        default_factory=LimitsSettings, description="Per-user flood limits."
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
        raise from_validation_error(exc, Settings) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: cannot parse {path}: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config: cannot parse {path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror or exc}") from None
    except SettingsError as exc:
        raise from_settings_error(exc) from None
    finally:
        _LOAD_REQUEST.reset(reset_token)
