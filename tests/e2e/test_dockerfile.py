"""The Dockerfile's build steps work: no Docker engine runs here, so CI runs the same
install the image runs (a clean virtual environment, `pip install -c constraints.txt .`,
a real non-editable install) and starts the installed console script from it.

This also proves the wheel carries what an editable install hides: the SQL migrations.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import REPO

pytestmark = pytest.mark.slow
DOCKERFILE = REPO / "Dockerfile"


def build_stage() -> list[str]:
    """The instructions of the first (build) stage."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    stages = re.split(r"(?m)^FROM ", text)
    return [line.strip() for line in stages[1].splitlines() if line.strip()]


def test_the_dockerfile_copies_only_files_that_exist() -> None:
    copies = [line.split()[1:-1] for line in build_stage() if line.startswith("COPY ")]
    sources = [src for srcs in copies for src in srcs]
    assert sources, "the build stage copies the project"
    for src in sources:
        assert (REPO / src).exists(), src
    packages = {"core", "storage", "bot", "payments", "partnerbot"}
    assert packages <= set(sources), "every package of the project is copied"


def test_the_image_installs_like_the_readme_and_runs(tmp_path: Path) -> None:
    runs = [line.removeprefix("RUN ") for line in build_stage() if line.startswith("RUN ")]
    assert len(runs) == 1 and "pip install -c constraints.txt ." in runs[0]
    # The same commands, with the image's /opt/partnerbot replaced by a temporary venv
    # and /src by a copy of the files the Dockerfile copies.
    src = tmp_path / "src"
    for line in build_stage():
        if line.startswith("COPY "):
            *sources, _dest = line.split()[1:]
            for name in sources:
                path = REPO / name
                if path.is_dir():
                    shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    src.mkdir(exist_ok=True)
                    shutil.copy2(path, src / name)
    venv = tmp_path / "venv"
    command = runs[0].replace("/opt/partnerbot", str(venv))
    command = command.replace("python -m venv", f"{sys.executable} -m venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARTNERBOT_", "PYTHON"))}
    subprocess.run(command, shell=True, cwd=src, env=env, check=True, timeout=600,
                   capture_output=True)
    bot = venv / "bin" / "partnerbot"
    help_text = subprocess.run([bot, "--help"], capture_output=True, text=True, check=True,
                               env=env, cwd=tmp_path).stdout
    assert "partner" in help_text and "ledger" in help_text
    added = subprocess.run(
        [bot, "partner", "add", "Acme", "--price", "10.00"], capture_output=True, text=True,
        env={**env, "PARTNERBOT_DATABASE__PATH": str(tmp_path / "image.db")}, cwd=tmp_path,
        check=True,
    )
    assert "invite code:" in added.stdout
    verify = subprocess.run(
        [bot, "ledger", "verify"], capture_output=True, text=True, cwd=tmp_path, check=True,
        env={**env, "PARTNERBOT_DATABASE__PATH": str(tmp_path / "image.db")},
    )
    assert verify.stdout.startswith("ledger ok")
