"""What the composition root needs of a store beyond core.ports.Store: the runner's
health checks and probe, /metrics, the CLI's integrity check and backups. SqliteStore
(storage/sqlite.py) and PostgresStore (storage/postgres.py) both provide it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from core.ports import Ledger, LedgerSnapshot
from storage.health import HealthMonitor, StorageHealth
from storage.sql import Engine
from storage.stats import StoreStats

T = TypeVar("T")


class OperatedStore(Protocol):
    @property
    def engine(self) -> Engine: ...

    @property
    def health(self) -> HealthMonitor: ...

    async def write(self, work: Callable[[Ledger], T]) -> T: ...

    async def read(self, work: Callable[[Ledger], T]) -> T: ...

    async def lookup(self, work: Callable[[Ledger], T]) -> T: ...

    async def verify(self, work: Callable[[LedgerSnapshot], T]) -> T: ...

    async def ping(self) -> bool: ...

    async def probe(self, now_us: int, *, deep: bool) -> StorageHealth: ...

    async def integrity_check(self) -> tuple[str, ...]: ...

    async def stats(self, now_us: int) -> StoreStats: ...

    async def backup(self, destination: Path | str) -> Path:
        """A consistent copy of a SQLite file; a PostgreSQL store refuses (pg_dump's job)."""
        ...

    async def execute_raw(
        self, sql: str, args: tuple[Any, ...] = ()
    ) -> list[tuple[Any, ...]]: ...

    async def close(self) -> None: ...
