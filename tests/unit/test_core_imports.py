"""core/ is the domain: it imports the standard library and itself, nothing else.

No Telegram, SQLite driver, Stripe, pydantic or scheduler; not `bot`, `storage` or
`partnerbot` either. The checker reads the source with `ast`, so an import hidden in a
function or under `if TYPE_CHECKING:` is caught as well as one at the top.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "core"
ALLOWED = frozenset(sys.stdlib_module_names) | {"core"}
_DYNAMIC = frozenset({"__import__", "import_module"})


def foreign_imports(source: str, filename: str = "<string>") -> list[str]:
    """Every import in `source` of a module that is neither stdlib nor core, as 'line: name'."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            # A relative import (`from . import x`) stays inside core.
            if node.level == 0 and node.module:
                names = [node.module]
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0] if node.args else None
            if (
                called in _DYNAMIC
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                names = [first.value]
        found.extend(
            f"{line}: {name}" for name in names if name.split(".")[0] not in ALLOWED
        )
    return found


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_the_walk_sees_every_module_of_core() -> None:
    names = {path.name for path in core_modules()}
    assert {"money.py", "days.py", "ledger.py", "invariants.py", "ports.py"} <= names


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(CORE)))
def test_core_imports_only_the_standard_library_and_itself(path: Path) -> None:
    assert foreign_imports(path.read_text(encoding="utf-8"), str(path)) == []


@pytest.mark.parametrize(
    ("source", "reported"),
    [
        ("import telegram", ["1: telegram"]),
        ("import telegram.ext", ["1: telegram.ext"]),
        ("from telegram import Bot", ["1: telegram"]),
        ("import os, aiosqlite", ["1: aiosqlite"]),
        ("import stripe as s", ["1: stripe"]),
        ("from pydantic import BaseModel", ["1: pydantic"]),
        ("from apscheduler.schedulers.asyncio import X", ["1: apscheduler.schedulers.asyncio"]),
        ("from bot.texts import HELP", ["1: bot.texts"]),
        ("import storage.sqlite", ["1: storage.sqlite"]),
        ("from partnerbot.config import Settings", ["1: partnerbot.config"]),
        ("def f():\n    import telegram\n", ["2: telegram"]),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import stripe\n",
         ["3: stripe"]),
        ("import importlib\nimportlib.import_module('telegram')", ["2: telegram"]),
        ("__import__('aiosqlite')", ["1: aiosqlite"]),
        # Allowed: the standard library, core itself, relative imports.
        ("from __future__ import annotations", []),
        ("import os, sys, json", []),
        ("from datetime import UTC, datetime", []),
        ("from collections.abc import Iterator", []),
        ("import core.money", []),
        ("from core.days import utc", []),
        ("from . import days", []),
        ("from .money import amount_for_days", []),
        ("import importlib\nimportlib.import_module('decimal')", []),
    ],
)
def test_the_checker_reports_exactly_the_foreign_imports(source: str, reported: list[str]) -> None:
    assert foreign_imports(source) == reported


def test_the_checker_would_fail_core_if_it_imported_telegram() -> None:
    money = (CORE / "money.py").read_text(encoding="utf-8")
    assert foreign_imports(money) == []
    tainted = foreign_imports(money + "\nimport telegram\n")
    assert [entry.split(": ")[1] for entry in tainted] == ["telegram"]
