"""Settings: bad values give one line naming the key; secrets never leak; the example file."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from partnerbot.config import (
    ConfigError,
    Settings,
    env_var_name,
    load_settings,
)
from tests.unit.config.helpers import EXAMPLE, SECRET, flatten, leaf_keys, write

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
    ("[limits]\nmember_per_minute = 0\n", "limits.member_per_minute", "(got 0)"),
    ("[limits]\nstranger_per_minute = -3\n", "limits.stranger_per_minute", "(got -3)"),
    ("[limits]\ngroup_per_minute = true\n", "limits.group_per_minute", "not true/false"),
    ("[limits]\nmember_per_minute = 6001\n", "limits.member_per_minute", "(got 6001)"),
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
    ("[database]\nhealth_probe_seconds = 0\n", "database.health_probe_seconds", "greater than 0"),
    ("[database]\nhealth_probe_seconds = 301\n", "database.health_probe_seconds", "300"),
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
    ('[telegram]\nmode = "push"\n', "telegram.mode", "'polling' or 'webhook'"),
    ('[telegram]\nwebhook_url = "http://bot.example.com/hook"\n', "telegram.webhook_url",
     "https://"),
    ('[telegram]\nwebhook_secret = "has space"\n', "telegram.webhook_secret", "A-Z"),
    (f'[telegram]\nwebhook_secret = "{"x" * 257}"\n', "telegram.webhook_secret", "1-256"),
    ('[database]\nurl = "mysql://u@h/db"\n', "database.url", "PostgreSQL URL"),
    ("[cluster]\nfailover_seconds = 1\n", "cluster.failover_seconds", "3"),
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
