"""Private files: the database, its -wal and -shm, and backups hold the whole ledger and
every member's Telegram id, so they are 0600 and their folders 0700, whatever the umask.

The modes are set explicitly (a umask only removes bits, and a process started with a
loose one would otherwise leave the file readable by every local user). SQLite creates
-wal and -shm with the main file's permissions, so a private main file makes private
companions; they are checked as well, since older files may predate this.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("storage.files")

FILE_MODE = 0o600
DIR_MODE = 0o700
COMPANIONS = ("-wal", "-shm", "-journal")


def tighten(path: Path, mode: int = FILE_MODE) -> None:
    """Take away group and other permissions from an existing file or folder (a WARNING
    says so); owner bits stay as they are (a deliberately read-only file stays so)."""
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    loose = current & 0o077 & ~mode
    if loose:
        os.chmod(path, current & ~0o077)
        log.warning(
            "%s was readable by others (mode %04o): tightened to %04o",
            path, current, current & ~0o077,
        )


def create_private(path: Path) -> None:
    """Create `path` empty with mode 0600 unless it exists (then tighten it)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        tighten(path)
        return
    try:
        os.fchmod(fd, FILE_MODE)  # the umask may have taken owner bits too
    finally:
        os.close(fd)


def tighten_database(path: Path) -> None:
    """The database file and whatever companions SQLite made beside it."""
    tighten(path)
    for suffix in COMPANIONS:
        tighten(path.with_name(path.name + suffix))


def private_dir(directory: Path) -> None:
    """Create `directory` (and parents) if missing; the directory itself ends up 0700."""
    if directory.is_dir():
        tighten(directory, DIR_MODE)
        return
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(directory, DIR_MODE)
