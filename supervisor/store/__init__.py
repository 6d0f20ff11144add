"""Persistence of jobs. Every state change is written here before anyone is told about it."""

from __future__ import annotations

from pathlib import Path

from supervisor.store.base import JobFilter, Store
from supervisor.store.sqlite import SqliteStore


def is_shared(url: str) -> bool:
    """A store URL several hosts share (PostgreSQL), as opposed to a host-local SQLite file."""
    return url.startswith(("postgres://", "postgresql://"))


def store_file(url: str) -> Path | None:
    """The SQLite file of a store URL (None for a shared store)."""
    return None if is_shared(url) else Path(url.removeprefix("sqlite://"))


def open_store(url: str) -> Store:
    if is_shared(url):
        try:
            from supervisor.store.postgres import PostgresStore
        except ImportError as exc:  # psycopg is the optional extra [postgres]
            raise RuntimeError(f"a PostgreSQL store needs psycopg: pip install 'runspace[postgres]' ({exc})") from exc
        return PostgresStore(url)
    return SqliteStore(url.removeprefix("sqlite://"))


__all__ = ["JobFilter", "Store", "is_shared", "open_store", "store_file"]
