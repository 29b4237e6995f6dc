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

The package in three parts: :mod:`.sections` (the pydantic model of each ``[section]``),
:mod:`.load` (the TOML file and the environment, and the root :class:`Settings`) and
:mod:`.errors` (the one-line error texts).
"""

from partnerbot.config.errors import ENV_PREFIX, ConfigError, env_var_name
from partnerbot.config.load import (
    CONFIG_ENV_VAR,
    DEFAULT_CONFIG_PATH,
    Settings,
    load_settings,
)
from partnerbot.config.sections import (
    AccessSettings,
    BackupSettings,
    BillingSettings,
    ClusterSettings,
    DatabaseSettings,
    JobsSettings,
    LimitsSettings,
    LoggingSettings,
    MetricsSettings,
    ServerSettings,
    StripeSettings,
    TelegramSettings,
)

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_PATH",
    "ENV_PREFIX",
    "AccessSettings",
    "BackupSettings",
    "BillingSettings",
    "ClusterSettings",
    "ConfigError",
    "DatabaseSettings",
    "JobsSettings",
    "LimitsSettings",
    "LoggingSettings",
    "MetricsSettings",
    "ServerSettings",
    "Settings",
    "StripeSettings",
    "TelegramSettings",
    "env_var_name",
    "load_settings",
]
