"""The error texts of the settings: one line naming the key, never a secret value.

pydantic's and pydantic-settings' errors are translated here, at the boundary, into
:class:`ConfigError` (as httpx maps its driver's errors), so the CLI prints one line such as
``config: billing.monthly_price: must be greater than 0 (got -5)``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, get_args

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import SettingsError

ENV_PREFIX = "PARTNERBOT_"
ENV_NESTED_DELIMITER = "__"


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


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _leaf_is_echo_safe(loc: tuple[int | str, ...], root: type[BaseModel]) -> bool:
    """True if the input at ``loc`` may be shown: a known scalar key that is not a secret
    and not a whole section (a section may hold secrets)."""
    model: type[BaseModel] | None = root
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


def _describe(error: Mapping[str, Any], root: type[BaseModel]) -> tuple[str, str]:
    loc: tuple[int | str, ...] = tuple(error["loc"])
    key = _dotted(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        return key, f"unknown key {key}"
    text = f"{key}: {_reason(error)}"
    if error["type"] != "missing" and _leaf_is_echo_safe(loc, root):
        shown = _shown(error.get("input"))
        if shown is not None:
            text += f" (got {shown})"
    return key, text


def from_validation_error(exc: ValidationError, root: type[BaseModel]) -> ConfigError:
    """One ConfigError for every error pydantic found in the settings rooted at ``root``."""
    keys: list[str] = []
    parts: list[str] = []
    for error in exc.errors(include_url=False):
        key, text = _describe(error, root)
        if text not in parts:
            keys.append(key)
            parts.append(text)
    return ConfigError("config: " + "; ".join(parts), keys=keys)


def from_settings_error(exc: SettingsError) -> ConfigError:
    """The ConfigError for a section given whole in the environment that is not JSON."""
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
