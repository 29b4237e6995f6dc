"""Shared builders of the settings tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from partnerbot.config import Settings

EXAMPLE = Path(__file__).resolve().parents[3] / "config.example.toml"

SECRET = "SUPERSECRET-7f3a9c-DO-NOT-LEAK"


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
