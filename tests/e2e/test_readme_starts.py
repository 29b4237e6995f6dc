"""Every way the README starts the bot works as written, on a fresh clone.

A newcomer copies the README's lines into a shell in a clean checkout: `make run` with a
config.toml, `make run` with only environment variables, `make run CONFIG=path`, and the
plain venv/pip line of "Deploying without Docker". Each runs here in a `git clone` of the
committed HEAD, against the loopback Bot API server (only the base URL and the HTTP port
differ from production, both set in the environment), until the bot answers a support
command; then SIGTERM to the bot, which must stop cleanly (exit 0, and `make` with it).

One clone and one .venv serve all four, as they would for that newcomer: `make`'s stamp
files skip the install the second time, and the pip line reinstalls into the same .venv.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e import REPO
from tests.fakes.telegram_api import FakeTelegram

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]
README = (REPO / "README.md").read_text(encoding="utf-8")
SUPPORT = 900_101

# The README's lines, verbatim (each test first checks the README still says it).
COPY_EXAMPLE = "cp config.example.toml config.toml"
MAKE_RUN = "make run"
EXPORT_TOKEN = "export PARTNERBOT_TELEGRAM__TOKEN="
EXPORT_SUPPORT = "export PARTNERBOT_ACCESS__SUPPORT_USER_IDS='[111111111]'"
MAKE_RUN_CONFIG = "make run CONFIG=/etc/partnerbot/config.toml"
VENV_LINE = (
    "python3 -m venv .venv &&",
    ".venv/bin/pip install -c constraints.txt . &&",
    ".venv/bin/partnerbot --config ... run",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shell_env(**extra: str) -> dict[str, str]:
    """The developer's environment as a fresh shell would have it: no PARTNERBOT_*
    variable, not inside this test run's virtual environment or `make`."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    env = {
        k: v for k, v in os.environ.items()
        if not k.upper().startswith("PARTNERBOT_") and k not in dropped
    }
    venv_bin = str(Path(os.environ["VIRTUAL_ENV"]) / "bin") if "VIRTUAL_ENV" in os.environ else ""
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh clone of the commit under test (what a newcomer gets from `git clone`)."""
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    dest = tmp_path_factory.mktemp("readme") / "partnerbot"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(dest)], check=True)
    subprocess.run(["git", "-C", str(dest), "checkout", "--quiet", "--detach", head], check=True)
    yield dest


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc; the field after the parenthesised name)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def bot_pid(root: int) -> int | None:
    """The `partnerbot ... run` process under ``root`` (make, or the shell of a line)."""
    pending = [root]
    while pending:
        pid = pending.pop()
        try:
            argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[-2:] == [b"run", b""] and any(a.endswith(b"partnerbot") for a in argv):
            return pid
        pending.extend(children(pid))
    return None


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def sh(command: str, cwd: Path) -> None:
    subprocess.run(command, shell=True, cwd=cwd, check=True)


async def run_until_answering(
    tg: FakeTelegram, command: str, cwd: Path, env: dict[str, str], log: Path
) -> None:
    """Run ``command`` in a shell as the README shows it, wait until the bot is healthy and
    answers support's /partners, then SIGTERM the bot and expect a clean exit of all."""
    port = env["PARTNERBOT_SERVER__PORT"]
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", command, cwd=cwd, env=env, stdout=sink, stderr=sink,
            start_new_session=True,
        )
    try:
        # The first start installs the project into .venv: minutes on a busy machine.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 600
        async with aiohttp.ClientSession() as http:
            while True:
                if proc.returncode is not None:
                    raise AssertionError(f"{command!r} exited: {tail(log)}")
                if loop.time() > deadline:
                    raise AssertionError(f"{command!r} never healthy: {tail(log)}")
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        support = tg.user(SUPPORT, "Sam")
        await support.send("/partners")
        # A support command: answered only because the support ids were read.
        assert (await support.wait_reply(15)).text.startswith("No partners yet")

        pid = bot_pid(proc.pid)
        assert pid is not None, "the bot runs under the README's command"
        os.kill(pid, signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0, tail(log)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


def config_file(path: Path, tg: FakeTelegram, example: Path) -> Path:
    """The clone's config.example.toml with telegram.token and access.support_user_ids
    set, as the README's comment says, written to ``path``."""
    text = example.read_text(encoding="utf-8")
    assert "\nsupport_user_ids = []\n" in text and "\n[telegram]\n" in text
    text = text.replace("\n[telegram]\n", f'\n[telegram]\ntoken = "{tg.token}"\n', 1)
    text = text.replace("\nsupport_user_ids = []\n", f"\nsupport_user_ids = [{SUPPORT}]\n", 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def loopback(tg: FakeTelegram, tmp_path: Path, **extra: str) -> dict[str, str]:
    return shell_env(
        PARTNERBOT_TELEGRAM__API_BASE_URL=tg.base_url,
        PARTNERBOT_SERVER__PORT=str(free_port()),
        PARTNERBOT_DATABASE__PATH=str(tmp_path / "bot.db"),
        **extra,
    )


def test_the_readme_shows_the_starts_tested_here() -> None:
    for line in (COPY_EXAMPLE, MAKE_RUN, EXPORT_TOKEN, EXPORT_SUPPORT, MAKE_RUN_CONFIG, *VENV_LINE):
        assert line in README, line


async def test_make_run_with_a_config_toml(clone: Path, tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        sh(COPY_EXAMPLE, clone)
        config_file(clone / "config.toml", tg, example=clone / "config.toml")
        try:
            await run_until_answering(tg, MAKE_RUN, clone, loopback(tg, tmp_path), tmp_path / "log")
        finally:
            (clone / "config.toml").unlink()
    assert (clone / ".venv" / ".runtime").is_file(), "make's stamp: the next start skips pip"


async def test_make_run_with_the_environment_only(clone: Path, tmp_path: Path) -> None:
    assert not (clone / "config.toml").exists()
    async with FakeTelegram() as tg:
        exports = f"export PARTNERBOT_TELEGRAM__TOKEN={tg.token}\n{EXPORT_SUPPORT}\n".replace(
            "[111111111]", f"[{SUPPORT}]"
        )
        env = loopback(tg, tmp_path)
        await run_until_answering(tg, exports + MAKE_RUN, clone, env, tmp_path / "log")


async def test_make_run_with_config_path(clone: Path, tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        path = config_file(
            tmp_path / "etc" / "partnerbot" / "config.toml", tg, clone / "config.example.toml"
        )
        command = MAKE_RUN_CONFIG.replace("/etc/partnerbot/config.toml", str(path))
        env = loopback(tg, tmp_path)
        await run_until_answering(tg, command, clone, env, tmp_path / "log")


async def test_the_plain_venv_and_pip_line(clone: Path, tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        path = config_file(tmp_path / "config.toml", tg, clone / "config.example.toml")
        command = " ".join(VENV_LINE).replace("--config ...", f"--config {path}")
        env = loopback(tg, tmp_path)
        await run_until_answering(tg, command, clone, env, tmp_path / "log")
