"""The scheduled backup: a consistent online copy, and pruning of old copies."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from pathlib import Path

from storage.base import OperatedStore
from storage.files import private_dir
from storage.sql import Engine

_NAME = re.compile(r"^partnerbot-(\d{8}-\d{6})\.db$")
STAMP = "%Y%m%d-%H%M%S"


def backup_name(at: datetime) -> str:
    return f"partnerbot-{at:{STAMP}}.db"


def prune(directory: Path, now: datetime, keep: timedelta) -> list[Path]:
    """Remove scheduled backups older than `keep`; other files are left alone."""
    removed = []
    for path in sorted(directory.iterdir()):
        match = _NAME.match(path.name)
        if not match:
            continue
        taken = datetime.strptime(match.group(1), STAMP).replace(tzinfo=now.tzinfo)
        if now - taken > keep:
            path.unlink()
            removed.append(path)
    return removed


async def scheduled_backup(
    store: OperatedStore, directory: Path, now: datetime, keep: timedelta
) -> str:
    if store.engine is Engine.POSTGRES:
        return "backup: skipped: the database is PostgreSQL; back it up with pg_dump"
    await asyncio.to_thread(private_dir, directory)  # 0700: backups are the whole ledger
    target = await store.backup(directory / backup_name(now))
    removed = await asyncio.to_thread(prune, directory, now, keep)
    return f"backup: wrote {target}, removed {len(removed)} older than {keep.days} days"
