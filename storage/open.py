"""Open the store the configuration asks for: PostgreSQL when `database.url` is set,
else the SQLite file at `database.path`."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from storage.base import OperatedStore
from storage.postgres import PostgresStore
from storage.sqlite import SqliteStore, Synchronous


class Secret(Protocol):
    def get_secret_value(self) -> str: ...


class DatabaseConfig(Protocol):
    """The `database` settings section (partnerbot/config/sections.py), as far as
    opening a store goes (storage does not import the composition root)."""

    @property
    def path(self) -> Path: ...

    @property
    def synchronous(self) -> Synchronous: ...

    @property
    def busy_timeout_ms(self) -> int: ...

    @property
    def url(self) -> Secret | None: ...


async def open_store(database: DatabaseConfig, *, chain_key: bytes | None) -> OperatedStore:
    if database.url is not None:
        return await PostgresStore.open(database.url.get_secret_value(), chain_key=chain_key)
    return await SqliteStore.open(
        database.path,
        synchronous=database.synchronous,
        busy_timeout_ms=database.busy_timeout_ms,
        chain_key=chain_key,
    )
