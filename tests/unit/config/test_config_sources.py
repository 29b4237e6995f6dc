"""Settings: defaults, TOML values, the order of sources, which file is read."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from pydantic import BaseModel

from partnerbot.config import (
    ConfigError,
    Settings,
    load_settings,
)
from tests.unit.config.helpers import SECRET, leaf_keys, write

# ------------------------------------------------------------------------------- defaults

DEFAULTS: list[tuple[str, object]] = [
    ("telegram.token", None),
    ("telegram.api_base_url", "https://api.telegram.org/bot"),
    ("telegram.bot_username", None),
    ("telegram.timezone", "UTC"),
    ("telegram.mode", "polling"),
    ("telegram.webhook_url", None),
    ("telegram.webhook_secret", None),
    ("access.support_user_ids", ()),
    ("database.path", Path("partnerbot.db")),
    ("database.synchronous", "FULL"),
    ("database.busy_timeout_ms", 5000),
    ("database.health_probe_seconds", 15.0),
    ("database.url", None),
    ("stripe.api_key", None),
    ("stripe.api_base", "https://api.stripe.com"),
    ("stripe.webhook_secret", None),
    ("stripe.success_url", None),
    ("stripe.session_expiry_minutes", 60),
    ("stripe.annual_discount_percent", 15),
    ("stripe.timeout_seconds", 20.0),
    ("server.host", "127.0.0.1"),
    ("server.port", 8080),
    ("server.max_connections", 256),
    ("server.header_timeout_seconds", 10.0),
    ("server.body_timeout_seconds", 30.0),
    ("server.keepalive_timeout_seconds", 15.0),
    ("metrics.host", "127.0.0.1"),
    ("metrics.port", 9464),
    ("billing.currency", "usd"),
    ("billing.monthly_price", 1000),
    ("billing.low_balance_days", 30),
    ("billing.max_topup_days", 36500),
    ("billing.billing_day", 1),
    ("billing.invite_ttl_hours", 72),
    ("logging.level", "INFO"),
    ("logging.format", "text"),
    ("ledger.chain_key", None),
    ("jobs.invoices", "15 6 * * *"),
    ("jobs.reminders", "0 10 * * *"),
    ("jobs.alerts", "*/15 * * * *"),
    ("jobs.expiry", "5 * * * *"),
    ("jobs.renew", "*/30 * * * *"),
    ("jobs.reconcile", "*/10 * * * *"),
    ("jobs.backup", "30 3 * * *"),
    ("backup.directory", Path("backups")),
    ("backup.keep_days", 14),
    ("cluster.failover_seconds", 10.0),
    ("jobs.reminder_after_days", 3),
    ("jobs.overdue_after_days", 14),
    ("jobs.renew_before_hours", 24),
    ("jobs.reconcile_after_minutes", 15),
    ("limits.member_per_minute", 30),
    ("limits.stranger_per_minute", 10),
    ("limits.group_per_minute", 15),
]


def test_defaults_cover_every_key() -> None:
    assert sorted(k for k, _ in DEFAULTS) == sorted(leaf_keys())


@pytest.mark.parametrize(("key", "expected"), DEFAULTS)
def test_defaults_without_file_or_env(key: str, expected: object) -> None:
    settings = load_settings(None, environ={})  # ./config.toml absent: allowed
    assert settings.get(key) == expected


def test_every_field_has_a_description() -> None:
    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            assert field.description, f"{prefix}{name} has no description"
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")

    walk(Settings, "")


def test_timezone_as_tzinfo() -> None:
    assert load_settings(None, {}).telegram.tzinfo is datetime.UTC
    berlin = load_settings(None, {"PARTNERBOT_TELEGRAM__TIMEZONE": "Europe/Berlin"})
    assert berlin.telegram.tzinfo.utcoffset(datetime.datetime(2025, 1, 15)) == datetime.timedelta(
        hours=1
    )


# ----------------------------------------------------------------------------- TOML values

FULL_TOML = f"""
[telegram]
token = "{SECRET}"
api_base_url = "http://127.0.0.1:8081/bot"
bot_username = "@acme_partner_bot"
timezone = "Europe/Berlin"

[access]
support_user_ids = [111, 222]

[database]
path = "/var/lib/partnerbot/db.sqlite"
synchronous = "normal"
busy_timeout_ms = 250

[stripe]
api_key = "sk_test_123"
api_base = "http://localhost:12111/"
webhook_secret = "whsec_abc"
success_url = "https://t.me/acme_partner_bot"
session_expiry_minutes = 30
annual_discount_percent = 0
timeout_seconds = 5

[server]
host = "0.0.0.0"
port = 9000

[billing]
currency = "EUR"
monthly_price = 1250
low_balance_days = 0
max_topup_days = 400
billing_day = 31
invite_ttl_hours = 1

[logging]
level = "debug"
format = "json"
"""

TOML_EXPECTED: list[tuple[str, object]] = [
    ("telegram.api_base_url", "http://127.0.0.1:8081/bot"),
    ("telegram.bot_username", "acme_partner_bot"),  # leading @ dropped
    ("telegram.timezone", "Europe/Berlin"),
    ("access.support_user_ids", (111, 222)),
    ("database.path", Path("/var/lib/partnerbot/db.sqlite")),
    ("database.synchronous", "NORMAL"),  # case normalised
    ("database.busy_timeout_ms", 250),
    ("stripe.api_base", "http://localhost:12111"),  # trailing slash dropped
    ("stripe.success_url", "https://t.me/acme_partner_bot"),
    ("stripe.session_expiry_minutes", 30),
    ("stripe.annual_discount_percent", 0),
    ("stripe.timeout_seconds", 5.0),
    ("server.host", "0.0.0.0"),
    ("server.port", 9000),
    ("billing.currency", "eur"),  # case normalised
    ("billing.monthly_price", 1250),
    ("billing.low_balance_days", 0),
    ("billing.max_topup_days", 400),
    ("billing.billing_day", 31),
    ("billing.invite_ttl_hours", 1),
    ("logging.level", "DEBUG"),
    ("logging.format", "json"),
]


@pytest.mark.parametrize(("key", "expected"), TOML_EXPECTED)
def test_toml_values(tmp_path: Path, key: str, expected: object) -> None:
    settings = load_settings(write(tmp_path, FULL_TOML, "full.toml"), environ={})
    assert settings.get(key) == expected


def test_toml_secrets_are_secretstr(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, FULL_TOML, "full.toml"), environ={})
    assert settings.telegram.token is not None
    assert settings.telegram.token.get_secret_value() == SECRET
    assert settings.stripe.api_key is not None
    assert settings.stripe.api_key.get_secret_value() == "sk_test_123"
    assert settings.stripe.webhook_secret is not None
    assert settings.stripe.webhook_secret.get_secret_value() == "whsec_abc"


def test_partial_toml_keeps_other_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[server]\nport = 9999\n"), environ={})
    assert settings.server.port == 9999
    assert settings.server.host == "127.0.0.1"
    assert settings.billing.monthly_price == 1000


# ------------------------------------------------------------------------ source priority

ENV_OVER_TOML: list[tuple[str, dict[str, str], str, object]] = [
    # toml, env, key, expected
    ("[server]\nport = 9000\n", {"PARTNERBOT_SERVER__PORT": "9100"}, "server.port", 9100),
    ("[server]\nport = 9000\n", {"PARTNERBOT_SERVER__HOST": "::1"}, "server.port", 9000),
    ("[server]\nport = 9000\n", {"PARTNERBOT_SERVER__HOST": "::1"}, "server.host", "::1"),
    ("[server]\nport = 9000\n", {"partnerbot_server__port": "9200"}, "server.port", 9200),
    ("[server]\nport = 9000\n", {"PARTNERBOT_SERVER__PORT": ""}, "server.port", 9000),
    (
        '[billing]\ncurrency = "usd"\nmonthly_price = 500\n',
        {"PARTNERBOT_BILLING__CURRENCY": "gbp"},
        "billing.currency",
        "gbp",
    ),
    (
        '[billing]\ncurrency = "usd"\nmonthly_price = 500\n',
        {"PARTNERBOT_BILLING__CURRENCY": "gbp"},
        "billing.monthly_price",
        500,
    ),
    (
        "[access]\nsupport_user_ids = [1]\n",
        {"PARTNERBOT_ACCESS__SUPPORT_USER_IDS": "[7, 8]"},
        "access.support_user_ids",
        (7, 8),
    ),
    (
        '[telegram]\ntimezone = "Asia/Tokyo"\n',
        {"PARTNERBOT_TELEGRAM": '{"timezone": "America/New_York"}'},
        "telegram.timezone",
        "America/New_York",
    ),
    (
        '[logging]\nlevel = "ERROR"\n',
        {"PARTNERBOT_LOGGING__LEVEL": "warning"},
        "logging.level",
        "WARNING",
    ),
]


@pytest.mark.parametrize(("toml", "env", "key", "expected"), ENV_OVER_TOML)
def test_env_overrides_toml(
    tmp_path: Path, toml: str, env: dict[str, str], key: str, expected: object
) -> None:
    settings = load_settings(write(tmp_path, toml), environ=env)
    assert settings.get(key) == expected


def test_env_secret_overrides_toml(tmp_path: Path) -> None:
    path = write(tmp_path, '[telegram]\ntoken = "from-file"\n')
    settings = load_settings(path, environ={"PARTNERBOT_TELEGRAM__TOKEN": " from-env\n"})
    assert settings.telegram.token is not None
    assert settings.telegram.token.get_secret_value() == "from-env"  # blanks stripped


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("[1,2]", (1, 2)),
        (" [ 1 , 2 ] ", (1, 2)),
        ("[]", ()),
        ("1,2", (1, 2)),
        ("1, 2, 3", (1, 2, 3)),
        ("1 2", (1, 2)),
        ("42", (42,)),
        ("[123456789012]", (123456789012,)),
    ],
)
def test_support_user_ids_from_env(value: str, expected: tuple[int, ...]) -> None:
    settings = load_settings(None, environ={"PARTNERBOT_ACCESS__SUPPORT_USER_IDS": value})
    assert settings.access.support_user_ids == expected


def test_init_kwargs_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTNERBOT_SERVER__PORT", "2222")
    monkeypatch.setenv("PARTNERBOT_SERVER__HOST", "10.0.0.1")
    settings = Settings(server={"port": 1111})  # type: ignore[arg-type]
    assert settings.server.port == 1111
    assert settings.server.host == "10.0.0.1"  # merged per key, not per section


def test_environ_argument_replaces_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTNERBOT_SERVER__PORT", "2222")
    assert load_settings(None, environ={}).server.port == 8080
    assert load_settings(None).server.port == 2222


def test_no_dotenv_file_is_read(tmp_path: Path) -> None:
    write(tmp_path, "PARTNERBOT_SERVER__PORT=3333\n", ".env")
    assert load_settings(None, environ={}).server.port == 8080


# --------------------------------------------------------------------------- file choice


def test_default_config_toml_in_working_directory(tmp_path: Path) -> None:
    write(tmp_path, "[server]\nport = 4444\n")
    assert load_settings(None, environ={}).server.port == 4444


def test_partnerbot_config_variable(tmp_path: Path) -> None:
    write(tmp_path, "[server]\nport = 4444\n")  # ./config.toml, must be ignored
    other = write(tmp_path, "[server]\nport = 5555\n", "other.toml")
    assert load_settings(None, environ={"PARTNERBOT_CONFIG": str(other)}).server.port == 5555


def test_explicit_path_beats_partnerbot_config(tmp_path: Path) -> None:
    one = write(tmp_path, "[server]\nport = 1001\n", "one.toml")
    two = write(tmp_path, "[server]\nport = 1002\n", "two.toml")
    settings = load_settings(one, environ={"PARTNERBOT_CONFIG": str(two)})
    assert settings.server.port == 1001


@pytest.mark.parametrize("how", ["argument", "variable"])
def test_missing_named_file_is_an_error(tmp_path: Path, how: str) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        if how == "argument":
            load_settings(missing, environ={})
        else:
            load_settings(None, environ={"PARTNERBOT_CONFIG": str(missing)})
    assert str(info.value) == f"config: file not found: {missing}"


def test_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_settings(tmp_path, environ={})
