"""Fault and abuse tests: fuzzed chat input and webhooks, SIGKILL under load, Telegram and
Stripe failing for a while, backups restored and verified.

Helpers shared by the modules here: the console script as a subprocess (with a clean
environment) and a free loopback port.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from pathlib import Path

from tests.e2e import clean_env, console_script


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


async def cli(*args: str, db: Path, within: float = 60.0, **env: str) -> CliResult:
    """Run `partnerbot ARGS...` on the database `db` (killed after `within` seconds);
    returns its exit status and output."""
    proc = await asyncio.create_subprocess_exec(
        *console_script(), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=db.parent, env=clean_env(PARTNERBOT_DATABASE__PATH=str(db), **env),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return CliResult(proc.returncode, out.decode(), err.decode())


async def ledger_verify(db: Path) -> str:
    """`partnerbot ledger verify` on `db` must exit 0; returns its summary."""
    done = await cli("ledger", "verify", db=db)
    assert done.code == 0, f"ledger verify exited {done.code}:\n{done.out}{done.err}"
    assert done.out.startswith("ledger ok"), done.out
    return done.out.strip()


__all__ = ["CliResult", "cli", "free_port", "ledger_verify"]
