"""SQLite store (WAL). Calls are short and synchronous; the daemon makes them from its event loop."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from supervisor.store.migrations import SchemaTooNew, latest_version, migrations
from supervisor.store.sql import INSERT_JOB, Cursor, SqlStore

_ADD_COLUMN = re.compile(r"\s*ALTER\s+TABLE\s+(\w+)\s+ADD\s+COLUMN\s+(\w+)", re.IGNORECASE)


def _statements(script: str) -> Iterator[str]:
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        yield pending  # a last statement without its semicolon, or a trailing comment


class SqliteStore(SqlStore):
    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        # WAL + NORMAL: a commit survives a crash of this process (kill -9), which is
        # what "persisted before reported" needs; fsync per commit would cap throughput.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        # Pages freed by retention go back to the file system (compact()); only takes effect
        # before the first table is made, so an older database is converted by its first compact().
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        latest = latest_version("sqlite")
        if version > latest:
            raise SchemaTooNew(
                f"the database has schema version {version}, this runspace knows up to {latest}; upgrade runspace"
            )
        for migration in migrations("sqlite")[version:]:
            with self._transaction():
                for statement in _statements(migration.sql):
                    if not self._adds_existing_column(statement):
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={migration.version}")

    def _adds_existing_column(self, statement: str) -> bool:
        """SQLite has no ADD COLUMN IF NOT EXISTS, and runspace 0.1 made version 1 with every
        field of its JobRecord (so `cgroup` may be there already): such a step is done."""
        found = _ADD_COLUMN.match(re.sub(r"^\s*--.*$", "", statement, flags=re.MULTILINE))
        if not found:
            return False
        table, column = found.groups()
        return column in {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}

    # -- SqlStore hooks -------------------------------------------------------------------

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        return self._db.execute(sql, args)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _to_json(self, value: Any) -> Any:
        return json.dumps(value)

    def _from_json(self, value: Any) -> Any:
        return json.loads(value) if value is not None else None

    def _insert_job(self, values: list[Any]) -> int:
        # lastrowid, not RETURNING: a 10,000-item batch is inserted while the event loop waits.
        return self._db.execute(INSERT_JOB, values).lastrowid or 0

    def compact(self) -> None:
        """After removing many jobs: give the freed pages back and empty the WAL, so disk use and
        reads return to those of a store that never held them."""
        if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # made before INCREMENTAL: once
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._db.execute("VACUUM")
        self._db.execute("PRAGMA incremental_vacuum")
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self._db.close()
