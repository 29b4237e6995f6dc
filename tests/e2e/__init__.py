"""End-to-end tests: the real `partnerbot` console script and real processes.

Helpers shared by the modules here: how to start the console script, and an environment
without any PARTNERBOT_* variable of the developer's own shell.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def console_script() -> list[str]:
    """The installed `partnerbot` next to this interpreter, else `python -m partnerbot.cli`."""
    script = Path(sys.executable).parent / "partnerbot"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "partnerbot.cli"]


REPO = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without PARTNERBOT_* variables, metrics off, plus `extra`.

    The checkout comes first on PYTHONPATH, so the child runs this working tree's code
    even when the editable install's package map is older than it (a package added since
    `pip install -e .` would otherwise be missing in the child).
    """
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PARTNERBOT_")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), env.get("PYTHONPATH", "")) if p
    )
    # Metrics off unless a test asks for a port: bots started by tests running side by
    # side would all claim the default 9464.
    env["PARTNERBOT_METRICS__PORT"] = "0"
    env.update(extra)
    return env
