"""A throwaway PostgreSQL server for the tests, started from the machine's own binaries.

Debian's `postgresql` package puts them in /usr/lib/postgresql/<version>/bin. The server
lives in a temporary directory, listens on a free loopback port, trusts loopback
connections (nobody else can reach it) and skips fsync (a crash of the machine mid-test
loses nothing we need). PostgreSQL refuses to run as root, so as root `initdb` and
`postgres` run as the `postgres` user (the child process itself switches user: a wrapper
such as `runuser` would stand between our signals and the server).

`PARTNERBOT_TEST_DATABASE_URL` (a role that may CREATE DATABASE) replaces the throwaway
server: each test still gets a database of its own, made on that server.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ENV_URL = "PARTNERBOT_TEST_DATABASE_URL"
HOW_TO_RUN = (
    "PostgreSQL tests skipped: no PostgreSQL server binaries here. Install them "
    "(Debian: apt-get install postgresql) or set PARTNERBOT_TEST_DATABASE_URL="
    "postgresql://user:password@host:port/db (a role that may create databases)."
)
START_TIMEOUT = 60.0


class PgUnavailable(Exception):
    """No binaries and no URL: the PostgreSQL tests cannot run here."""


def find_bin_dir() -> Path | None:
    """The newest installed server's bin directory (Debian's layout), else PATH's."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for candidate in found:
        if (candidate / "postgres").is_file() and (candidate / "initdb").is_file():
            return candidate
    postgres = shutil.which("postgres")
    return Path(postgres).parent if postgres else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@dataclass
class PgServer:
    """A running server: `admin_url` reaches its `postgres` database as a superuser."""

    admin_url: str
    process: subprocess.Popen[bytes] | None = None
    directory: Path | None = None

    @classmethod
    def from_environment(cls) -> PgServer:
        url = os.environ.get(ENV_URL)
        if url:
            return cls(admin_url=url)
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise PgUnavailable(HOW_TO_RUN)
        return cls.start(bin_dir)

    @classmethod
    def start(cls, bin_dir: Path) -> PgServer:
        directory = Path(tempfile.mkdtemp(prefix="partnerbot-pg-"))
        data, sockets = directory / "data", directory / "sockets"
        sockets.mkdir()
        as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            for path in (directory, sockets):
                os.chown(path, account.pw_uid, account.pw_gid)
            as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
            check=True, capture_output=True, cwd=directory, **as_user,
        )
        port = free_port()
        log = (directory / "server.log").open("wb")
        process = subprocess.Popen(
            [str(bin_dir / "postgres"), "-D", str(data), "-k", str(sockets),
             "-h", "127.0.0.1", "-p", str(port),
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=400", "-c", "shared_buffers=64MB"],
            stdout=log, stderr=subprocess.STDOUT, cwd=directory, **as_user,
        )
        server = cls(f"postgresql://postgres@127.0.0.1:{port}/postgres", process, directory)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            ready = subprocess.run(
                [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)],
                check=False,
            )
            if ready.returncode == 0:
                return server
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                tail = (directory / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the test PostgreSQL server did not start:\n{tail}")
            time.sleep(0.1)

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg  # here: the suite imports this module even where psycopg is absent

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return with_database(self.admin_url, name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = urlsplit(url).path.lstrip("/")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # SIGINT: "fast" shutdown, which disconnects clients a test left behind (SIGTERM
            # would wait for them).
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
