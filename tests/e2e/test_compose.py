"""compose.yaml (PostgreSQL and two partnerbot instances) is coherent: no container engine
runs here, so this reads it as Docker Compose would (YAML with anchors and merge keys,
`${VAR}` interpolation) and checks it against the project itself: every PARTNERBOT_
variable is a real configuration key, the settings it makes load and validate, the
services, ports, health checks and dependencies fit together."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml  # type: ignore[import-untyped]  # no stubs installed; only read here

from partnerbot.config import ENV_PREFIX, Settings, env_var_name, load_settings
from tests.e2e import REPO

COMPOSE = REPO / "compose.yaml"
# What an operator exports before `docker compose up` (the file's own header says which).
SHELL = {
    "POSTGRES_PASSWORD": "pg-password",
    "PARTNERBOT_TELEGRAM__TOKEN": "123456:ABCdef",
    "PARTNERBOT_TELEGRAM__WEBHOOK_URL": "https://bot.example.com/telegram/webhook",
    "PARTNERBOT_TELEGRAM__WEBHOOK_SECRET": "s3cret_value-1",
}
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:\?|:-)(?P<arg>[^}]*))?\}")


def interpolate(value: str, shell: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` (empty counts as unset)."""

    def one(found: re.Match[str]) -> str:
        name, op, arg = found["name"], found["op"], found["arg"]
        if shell.get(name):
            return shell[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return _VARIABLE.sub(one, value)


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def bots(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in spec["services"].items() if s.get("build")}


def environment(service: dict[str, Any], shell: dict[str, str]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping"
    return {str(k): interpolate(str(v), shell) for k, v in env.items()}


def configuration_keys() -> set[str]:
    """Every leaf key of the settings, dotted (`telegram.webhook_secret`)."""
    return {
        f"{section}.{key}"
        for section, field in Settings.model_fields.items()
        for key in getattr(field.annotation, "model_fields", {})
    }


def test_every_partnerbot_variable_is_a_real_configuration_key() -> None:
    known = {env_var_name(key) for key in configuration_keys()}
    assert "PARTNERBOT_TELEGRAM__WEBHOOK_SECRET" in known  # the key list is the real one
    spec = compose()
    assert len(bots(spec)) == 2
    for name, service in bots(spec).items():
        names = [k for k in service["environment"] if str(k).startswith(ENV_PREFIX)]
        assert names, name
        unknown = sorted(set(names) - known)
        assert not unknown, f"{name}: not configuration keys: {unknown}"


def test_the_instances_settings_load_and_share_one_database_in_webhook_mode(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    spec = compose()
    loaded = {
        name: load_settings(empty, environment(service, SHELL))
        for name, service in bots(spec).items()
    }
    db = spec["services"]["db"]["environment"]
    for name, settings in loaded.items():
        assert settings.telegram.mode == "webhook", name
        assert settings.telegram.webhook_url == SHELL["PARTNERBOT_TELEGRAM__WEBHOOK_URL"]
        secret = settings.telegram.webhook_secret
        assert secret is not None
        assert secret.get_secret_value() == SHELL["PARTNERBOT_TELEGRAM__WEBHOOK_SECRET"]
        assert settings.database.url is not None
        url = urlsplit(settings.database.url.get_secret_value())
        assert url.scheme == "postgresql" and url.hostname == "db" and url.port == 5432, name
        assert url.username == db["POSTGRES_USER"] and url.path == f"/{db['POSTGRES_DB']}"
        assert url.password == SHELL["POSTGRES_PASSWORD"]
        assert settings.stripe.api_key is None  # empty ${VAR:-} means not set: payments off
    urls = {s.database.url.get_secret_value() for s in loaded.values() if s.database.url}
    assert len(urls) == 1, "both instances on one database"


def test_required_secrets_must_come_from_the_shell() -> None:
    """`docker compose up` stops with the file's message when one is not exported."""
    spec = compose()
    [bot, *_] = bots(spec).values()
    for missing in SHELL:
        shell = {k: v for k, v in SHELL.items() if k != missing}
        with pytest.raises(KeyError, match=missing):
            environment(bot, shell)
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        environment(spec["services"]["db"], {})
    text = COMPOSE.read_text()
    assert SHELL["POSTGRES_PASSWORD"] not in text and "whsec_" not in text


def test_postgres_keeps_its_data_on_a_volume_and_says_when_it_is_ready() -> None:
    spec = compose()
    db = spec["services"]["db"]
    assert re.fullmatch(r"postgres:15(\.\d+)?(-\w+)?", db["image"])
    [volume] = db["volumes"]
    name, mount = volume.split(":")[:2]
    assert mount == "/var/lib/postgresql/data" and name in spec["volumes"]
    check = " ".join(db["healthcheck"]["test"])
    assert "pg_isready" in check and db["environment"]["POSTGRES_USER"] in check


def test_each_instance_waits_for_the_database_and_is_checked_on_healthz() -> None:
    spec = compose()
    published: list[str] = []
    for name, service in bots(spec).items():
        assert (REPO / service["build"] / "Dockerfile").is_file(), name
        assert service["depends_on"]["db"]["condition"] == "service_healthy", name
        port = environment(service, SHELL)["PARTNERBOT_SERVER__PORT"]
        assert environment(service, SHELL)["PARTNERBOT_SERVER__HOST"] == "0.0.0.0"
        check = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/healthz" in check, name
        [mapping] = service["ports"]
        host_ip, host_port, container_port = mapping.split(":")
        assert container_port == port, name
        assert host_ip == "127.0.0.1", f"{name}: published on loopback, for the proxy in front"
        published.append(host_port)
    assert len(set(published)) == len(published), "each instance on its own host port"
