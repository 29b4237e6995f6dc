"""Settings: sources and their order, validation, one-line errors, secrets."""

from __future__ import annotations

import datetime
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from partnerbot.config import (
    ConfigError,
    Settings,
    env_var_name,
    load_settings,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"

SECRET = "SUPERSECRET-7f3a9c-DO-NOT-LEAK"


@pytest.fixture(autouse=True)
def _no_stray_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test in an empty directory with no PARTNERBOT_* variables."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.upper().startswith("PARTNERBOT_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def leaf_keys(model: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    keys: list[str] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += leaf_keys(ann, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def flatten(data: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, value in data.items():
        if isinstance(value, dict):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out.add(prefix + key)
    return out


# ------------------------------------------------------------------------------- defaults

DEFAULTS: list[tuple[str, object]] = [
    ("telegram.token", None),
    ("telegram.api_base_url", "https://api.telegram.org/bot"),
    ("telegram.bot_username", None),
    ("telegram.timezone", "UTC"),
    ("access.support_user_ids", ()),
    ("database.path", Path("partnerbot.db")),
    ("database.synchronous", "FULL"),
    ("database.busy_timeout_ms", 5000),
    ("stripe.api_key", None),
    ("stripe.api_base", "https://api.stripe.com"),
    ("stripe.webhook_secret", None),
    ("stripe.success_url", None),
    ("stripe.session_expiry_minutes", 60),
    ("stripe.annual_discount_percent", 15),
    ("stripe.timeout_seconds", 20.0),
    ("server.host", "127.0.0.1"),
    ("server.port", 8080),
    ("billing.currency", "usd"),
    ("billing.monthly_price", 1000),
    ("billing.low_balance_days", 30),
    ("billing.max_topup_days", 36500),
    ("billing.billing_day", 1),
    ("billing.invite_ttl_hours", 72),
    ("logging.level", "INFO"),
    ("logging.format", "text"),
    ("jobs.invoices", "15 6 * * *"),
    ("jobs.reminders", "0 10 * * *"),
    ("jobs.alerts", "*/15 * * * *"),
    ("jobs.expiry", "5 * * * *"),
    ("jobs.renew", "*/30 * * * *"),
    ("jobs.reconcile", "*/10 * * * *"),
    ("jobs.backup", "30 3 * * *"),
    ("backup.directory", Path("backups")),
    ("backup.keep_days", 14),
    ("jobs.reminder_after_days", 3),
    ("jobs.overdue_after_days", 14),
    ("jobs.renew_before_hours", 24),
    ("jobs.reconcile_after_minutes", 15),
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


# ---------------------------------------------------------------------------- bad values

# (toml text, dotted key in the error, fragment of the one-line message)
BAD_TOML: list[tuple[str, str, str]] = [
    (
        "[billing]\nmonthly_price = -5\n",
        "billing.monthly_price",
        "config: billing.monthly_price: must be greater than 0 (got -5)",
    ),
    ("[billing]\nmonthly_price = 0\n", "billing.monthly_price", "greater than 0 (got 0)"),
    ("[billing]\nmonthly_price = 10.5\n", "billing.monthly_price", "integer"),
    ("[billing]\nmonthly_price = true\n", "billing.monthly_price", "not true/false"),
    ('[billing]\nmonthly_price = "ten"\n', "billing.monthly_price", "(got 'ten')"),
    ('[billing]\ncurrency = "dollars"\n', "billing.currency", "3-letter"),
    ('[billing]\ncurrency = "us"\n', "billing.currency", "3-letter"),
    ('[billing]\ncurrency = "u$d"\n', "billing.currency", "3-letter"),
    (
        '[billing]\ncurrency = "xyz"\n',
        "billing.currency",
        "currency partnerbot supports, e.g. 'usd' or 'eur' (got 'xyz')",
    ),
    ("[billing]\ncurrency = 840\n", "billing.currency", "billing.currency"),
    (
        "[billing]\nlow_balance_days = -1\n",
        "billing.low_balance_days",
        "greater than or equal to 0 (got -1)",
    ),
    ("[billing]\nmax_topup_days = 0\n", "billing.max_topup_days", "greater than 0"),
    ("[billing]\nbilling_day = 0\n", "billing.billing_day", "(got 0)"),
    ("[billing]\nbilling_day = 32\n", "billing.billing_day", "(got 32)"),
    ("[billing]\ninvite_ttl_hours = 0\n", "billing.invite_ttl_hours", "greater than 0"),
    (
        "[billing]\nmontly_price = 5\n",
        "billing.montly_price",
        "config: unknown key billing.montly_price",
    ),
    ("[payments]\nx = 1\n", "payments", "config: unknown key payments"),
    ('token = "x"\n', "token", "config: unknown key token"),
    ("[server]\nport = 0\n", "server.port", "config: server.port: must be greater than or equal"),
    ("[server]\nport = 65536\n", "server.port", "(got 65536)"),
    ('[server]\nport = "http"\n', "server.port", "config: server.port: must be a valid integer"),
    ('[server]\nhost = ""\n', "server.host", "server.host"),
    ('[telegram]\ntimezone = "Mars/Olympus_Mons"\n', "telegram.timezone", "IANA time zone"),
    ('[telegram]\ntimezone = "Europe"\n', "telegram.timezone", "IANA time zone"),
    ('[telegram]\ntimezone = "../../etc/passwd"\n', "telegram.timezone", "IANA time zone"),
    ('[telegram]\ntimezone = ""\n', "telegram.timezone", "IANA time zone"),
    ('[telegram]\napi_base_url = "ftp://example.com/bot"\n', "telegram.api_base_url", "http"),
    ('[telegram]\napi_base_url = "api.telegram.org/bot"\n', "telegram.api_base_url", "URL"),
    ('[telegram]\napi_base_url = "https://"\n', "telegram.api_base_url", "URL"),
    ('[telegram]\napi_base_url = "https://x y/bot"\n', "telegram.api_base_url", "URL"),
    ('[telegram]\napi_base_url = "https://h:99999/bot"\n', "telegram.api_base_url", "URL"),
    ('[telegram]\nbot_username = "no spaces"\n', "telegram.bot_username", "username"),
    ('[telegram]\nbot_username = "ab"\n', "telegram.bot_username", "username"),
    ('[stripe]\napi_base = "stripe.com"\n', "stripe.api_base", "URL"),
    ('[stripe]\nsuccess_url = "javascript:alert(1)"\n', "stripe.success_url", "URL"),
    ("[stripe]\nsession_expiry_minutes = 29\n", "stripe.session_expiry_minutes", "(got 29)"),
    ("[stripe]\nsession_expiry_minutes = 1441\n", "stripe.session_expiry_minutes", "(got 1441)"),
    ("[stripe]\nannual_discount_percent = 101\n", "stripe.annual_discount_percent", "100"),
    ("[stripe]\nannual_discount_percent = -1\n", "stripe.annual_discount_percent", "0"),
    ("[stripe]\ntimeout_seconds = 0\n", "stripe.timeout_seconds", "greater than 0"),
    ('[database]\nsynchronous = "OFF"\n', "database.synchronous", "'FULL' or 'NORMAL'"),
    ("[database]\nbusy_timeout_ms = 0\n", "database.busy_timeout_ms", "greater than 0"),
    ('[database]\npath = ""\n', "database.path", "database.path"),
    ('[logging]\nlevel = "TRACE"\n', "logging.level", "logging.level"),
    ('[logging]\nformat = "xml"\n', "logging.format", "'text' or 'json'"),
    ('[access]\nsupport_user_ids = "abc"\n', "access.support_user_ids[0]", "integer"),
    ("[access]\nsupport_user_ids = [0]\n", "access.support_user_ids[0]", "greater than 0"),
    ("[access]\nsupport_user_ids = [1, 2.5]\n", "access.support_user_ids[1]", "integer"),
    ("[access]\nsupport_user_ids = {a = 1}\n", "access.support_user_ids", "must be a list"),
    ("[database]\npath = 5\n", "database.path", "must be a file path (got 5)"),
    ('[stripe]\nsuccess_url = ["https://x"]\n', "stripe.success_url", "stripe.success_url"),
    ("[stripe]\ntimeout_seconds = nan\n", "stripe.timeout_seconds", "(got NaN)"),
    ("[telegram]\nbot_username = 5\n", "telegram.bot_username", "(got 5)"),
    ('server = "localhost"\n', "server", "config: server: must be a table"),
    ("[server\nport = 1\n", "", "config: cannot parse "),
    ("[server]\nport = \n", "", "config: cannot parse "),
    ("[server]\nport = 1\nport = 2\n", "", "config: cannot parse "),
]


@pytest.mark.parametrize(("toml", "key", "fragment"), BAD_TOML)
def test_invalid_toml_value_gives_one_line_naming_the_key(
    tmp_path: Path, toml: str, key: str, fragment: str
) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("config: ")
    assert fragment in message
    if key:
        assert key in info.value.keys
        assert key in message
    else:
        assert str(path) in message


BAD_ENV: list[tuple[dict[str, str], str, str]] = [
    ({"PARTNERBOT_SERVER__PORT": "0"}, "server.port", "(got '0')"),
    ({"PARTNERBOT_SERVER__PORT": "eighty"}, "server.port", "(got 'eighty')"),
    ({"PARTNERBOT_BILLING__MONTHLY_PRICE": "-5"}, "billing.monthly_price", "(got '-5')"),
    ({"PARTNERBOT_BILLING__MONTLY_PRICE": "5"}, "billing.montly_price", "unknown key"),
    ({"PARTNERBOT_BILLING__CURRENCY": "euro"}, "billing.currency", "3-letter"),
    ({"PARTNERBOT_TELEGRAM__TIMEZONE": "Nowhere/City"}, "telegram.timezone", "IANA"),
    ({"PARTNERBOT_ACCESS__SUPPORT_USER_IDS": "[1,"}, "access.support_user_ids", "list"),
    ({"PARTNERBOT_ACCESS__SUPPORT_USER_IDS": "1,x"}, "access.support_user_ids[1]", "integer"),
    ({"PARTNERBOT_TELEGRAM": '{"timezone": '}, "telegram", "PARTNERBOT_TELEGRAM"),
    ({"PARTNERBOT_LOGGING": "loud"}, "logging", "config: logging:"),
]


@pytest.mark.parametrize(("env", "key", "fragment"), BAD_ENV)
def test_invalid_env_value_gives_one_line_naming_the_key(
    env: dict[str, str], key: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ=env)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"config: {key}") or message.startswith(f"config: unknown key {key}")
    assert fragment in message
    assert key in info.value.keys


def test_all_errors_are_reported_on_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 0\n[billing]\nmonthly_price = -1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert "\n" not in str(info.value)
    assert set(info.value.keys) == {"server.port", "billing.monthly_price"}


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[server]\nhost = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"^config: cannot parse .*latin1\.toml"):
        load_settings(path, environ={})


# ------------------------------------------------------------------------------- secrets


def test_secrets_not_in_repr_str_or_json(tmp_path: Path) -> None:
    text = f'[telegram]\ntoken = "{SECRET}"\n[stripe]\napi_key = "{SECRET}"\n'
    settings = load_settings(
        write(tmp_path, text), environ={"PARTNERBOT_STRIPE__WEBHOOK_SECRET": SECRET}
    )
    assert settings.stripe.webhook_secret is not None
    assert settings.stripe.webhook_secret.get_secret_value() == SECRET
    for shown in (
        repr(settings),
        str(settings),
        repr(settings.telegram),
        str(settings.stripe),
        settings.model_dump_json(),
        str(settings.model_dump()),
        str(settings.telegram.token),
    ):
        assert SECRET not in shown


# Inputs that fail validation while a secret is in them (or next to them).
LEAKY: list[tuple[str, dict[str, str]]] = [
    (f'[telegram]\ntoken = ["{SECRET}"]\n', {}),  # wrong type on a secret field
    (f'[telegram]\ntoken = {{ value = "{SECRET}" }}\n', {}),
    (f'telegram = "{SECRET}"\n', {}),  # whole section given as a string
    (f'[telegram]\ntokn = "{SECRET}"\n', {}),  # misspelt secret key
    (f'[stripe]\napi_key = "{SECRET}"\nwebhook_secret = 5\n', {}),
    (f'[stripe]\napi_key = "{SECRET}"\n[server]\nport = 0\n', {}),  # error elsewhere
    ("", {"PARTNERBOT_TELEGRAM": f'{{"token": "{SECRET}", '}),  # broken JSON section
    ("", {"PARTNERBOT_TELEGRAM": f'{{"token": "{SECRET}", "timezone": "X/Y"}}'}),
    ("", {"PARTNERBOT_TELEGRAM": f'"{SECRET}"'}),
    ("", {"PARTNERBOT_STRIPE__API_KEYS": SECRET}),
    ("", {"PARTNERBOT_STRIPE__WEBHOOK_SECRET": SECRET, "PARTNERBOT_STRIPE": "[1]"}),
    (f'[telegram]\ntoken = "{SECRET}\n', {}),  # TOML syntax error on the secret's line
]


@pytest.mark.parametrize(("toml", "env"), LEAKY)
def test_secrets_never_in_error_messages(tmp_path: Path, toml: str, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, toml), environ=env)
    error = info.value
    assert "\n" not in str(error)
    assert SECRET not in str(error)
    assert SECRET not in repr(error)
    assert error.__cause__ is None
    assert error.__suppress_context__
    # Even the suppressed original, should a logger print it anyway.
    assert SECRET not in str(error.__context__)


def test_direct_validation_error_hides_input() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(telegram={"token": [SECRET]})  # type: ignore[arg-type]
    assert SECRET not in str(info.value)


# -------------------------------------------------------------------------------- frozen


def test_frozen(tmp_path: Path) -> None:
    settings = load_settings(None, environ={})
    with pytest.raises(ValidationError):
        settings.server.port = 1
    with pytest.raises(ValidationError):
        settings.billing = settings.billing
    with pytest.raises(AttributeError):
        settings.access.support_user_ids.append(1)  # type: ignore[attr-defined]
    assert hash(settings.server) == hash(load_settings(None, environ={}).server)


# ------------------------------------------------------------------------------- require

REQUIRE: list[tuple[dict[str, str], tuple[str, ...], str | None]] = [
    ({}, ("telegram.token",), "telegram.token"),
    ({"PARTNERBOT_TELEGRAM__TOKEN": SECRET}, ("telegram.token",), None),
    ({"PARTNERBOT_TELEGRAM__TOKEN": "   "}, ("telegram.token",), "telegram.token"),
    (
        {"PARTNERBOT_TELEGRAM__TOKEN": SECRET},
        ("telegram.token", "stripe.api_key", "stripe.webhook_secret"),
        "stripe.api_key",
    ),
    (
        {"PARTNERBOT_TELEGRAM__TOKEN": SECRET, "PARTNERBOT_STRIPE__API_KEY": SECRET},
        ("telegram.token", "stripe.api_key", "stripe.webhook_secret"),
        "stripe.webhook_secret",
    ),
    ({}, ("access.support_user_ids",), "access.support_user_ids"),
    ({"PARTNERBOT_ACCESS__SUPPORT_USER_IDS": "[5]"}, ("access.support_user_ids",), None),
    ({}, ("telegram.bot_username",), "telegram.bot_username"),
    ({}, ("server.port", "billing.currency"), None),  # defaults count as set
    ({}, (), None),
]


@pytest.mark.parametrize(("env", "keys", "missing"), REQUIRE)
def test_require(env: dict[str, str], keys: tuple[str, ...], missing: str | None) -> None:
    settings = load_settings(None, environ=env)
    if missing is None:
        settings.require(*keys)
        return
    with pytest.raises(ConfigError) as info:
        settings.require(*keys)
    assert str(info.value) == (
        f"config: {missing}: field required (set it in the config file or {env_var_name(missing)})"
    )
    assert info.value.keys == (missing,)
    assert SECRET not in str(info.value)


def test_require_unknown_key_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match=r"no setting 'telegram\.tokn'"):
        load_settings(None, environ={}).require("telegram.tokn")


@pytest.mark.parametrize(
    ("key", "var"),
    [
        ("telegram.token", "PARTNERBOT_TELEGRAM__TOKEN"),
        ("access.support_user_ids", "PARTNERBOT_ACCESS__SUPPORT_USER_IDS"),
        ("billing.monthly_price", "PARTNERBOT_BILLING__MONTHLY_PRICE"),
    ],
)
def test_env_var_name(key: str, var: str) -> None:
    assert env_var_name(key) == var


# --------------------------------------------------------------------- the example file


def test_example_as_shipped_gives_the_defaults() -> None:
    assert load_settings(EXAMPLE, environ={}) == load_settings(None, environ={})


def _uncommented_example() -> str:
    # "# key = value" lines are the optional keys (secrets); make them live.
    return re.sub(r"(?m)^# (\w+ = )", r"\1", EXAMPLE.read_text(encoding="utf-8"))


def test_example_names_every_key(tmp_path: Path) -> None:
    text = _uncommented_example()
    assert flatten(tomllib.loads(text)) == set(leaf_keys())
    settings = load_settings(write(tmp_path, text), environ={})  # placeholders are valid
    settings.require("telegram.token", "stripe.api_key", "stripe.webhook_secret")


@pytest.mark.parametrize("key", leaf_keys())
def test_example_documents_env_var_and_default(key: str) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert f"Env: {env_var_name(key)}" in text
    # The comment block right above the key says its default.
    section, name = key.split(".")
    block = text.split(f"[{section}]\n", 1)[1]
    before = re.split(rf"(?m)^(?:# )?{name} = ", block, maxsplit=1)[0]
    assert "Default:" in before.rsplit("\n\n", 1)[-1], key
