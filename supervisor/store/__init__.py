"""Persistence of jobs. Every state change is written here before anyone is told about it."""

from __future__ import annotations

from supervisor.store.base import JobFilter, Store
from supervisor.store.sqlite import SqliteStore


def open_store(url: str) -> Store:
    if url.startswith(("postgres://", "postgresql://")):
        raise NotImplementedError("the PostgreSQL store is not available in this build")
    return SqliteStore(url.removeprefix("sqlite://"))


__all__ = ["JobFilter", "Store", "open_store"]
