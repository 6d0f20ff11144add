"""PostgreSQL store: the same interface as SQLite, for several daemons sharing one queue.

Calls are short and synchronous on one autocommit connection, made from the daemon's
event loop like the SQLite ones. The queue claim, cancel forwarding and host leases
live in supervisor/shared_queue.py and supervisor/hosts.py and use `connection()`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from loguru import logger
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from supervisor.models import JobRecord, JobState
from supervisor.store.migrations import SchemaTooNew, latest_version, migrations
from supervisor.store.sql import INSERT_JOB, Cursor, SqlStore, job_record, set_clause

_MIGRATION_LOCK = 0x52530000  # advisory lock id: daemons starting together migrate one at a time
# A row in one of these states is settled: a late write from a host that was declared
# dead (its lease expired while it was only slow) must not overwrite it.
_SETTLED = tuple(str(s) for s in JobState if s.done and s != JobState.CANCELLED)
JOB_CHANNEL = "runspace_job"  # payload "<job id> <state>": wakes waiters and schedulers on every host


@functools.cache
def _pg(sql: str) -> str:
    """The shared statements' `?` placeholders as psycopg's `%s` (no statement contains a `%`)."""
    return sql.replace("?", "%s")


def record_from_row(row: Mapping[str, Any]) -> JobRecord:
    """A jobs row (also read by shared_queue.py and hosts.py); psycopg has decoded its JSON."""
    return job_record(row)


class PostgresStore(SqlStore):
    shared = True  # several daemons use this store at once
    after_ids_elements = "jsonb_array_elements_text(jobs.after_ids) AS v(value)"
    lock_row = " FOR UPDATE"

    def __init__(self, url: str) -> None:
        self.url = url
        # (host id, pid, started_at) of the lease this daemon holds, once it joined (supervisor/hosts.py)
        self.fence: tuple[str, int, float] | None = None
        self._db = self._connect()
        self._migrate()

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        # Bounded: store calls run on the daemon's event loop, and a host that is gone must not stall it.
        return psycopg.connect(self.url, autocommit=True, row_factory=dict_row, connect_timeout=5)

    def connection(self) -> psycopg.Connection[dict[str, Any]]:
        """The connection, reopened if the server dropped it (a restart, a failover)."""
        if self._db.closed or self._db.broken:
            logger.debug("reconnecting to PostgreSQL")  # the store guard logs the outage and its end
            self._db = self._connect()
        return self._db

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        db = self.connection()
        with db.transaction():
            yield db

    # -- schema -------------------------------------------------------------------------

    def _migrate(self) -> None:
        latest = latest_version("postgres")
        with self.transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT max(version) AS v FROM schema_version").fetchone()
            current = (row["v"] if row else None) or 0
            if current > latest:
                raise SchemaTooNew(
                    f"the PostgreSQL database has schema version {current}, this runspace knows up to {latest}; "
                    "upgrade runspace on this host (every host sharing a database must run the same or newer version)"
                )
            for migration in migrations("postgres")[current:]:
                logger.info("applying PostgreSQL migration {} ({})", migration.version, migration.name)
                db.execute(migration.sql)  # type: ignore[arg-type]  # trusted files shipped with the code
                db.execute("INSERT INTO schema_version (version) VALUES (%s)", (migration.version,))

    # -- SqlStore hooks, and what only a shared store does ------------------------------

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        return self.connection().execute(_pg(sql), args)  # type: ignore[arg-type]  # our own statements

    def _transaction(self) -> Any:
        return self.transaction()

    def _to_json(self, value: Any) -> Any:
        return Jsonb(value) if value is not None else None

    def _from_json(self, value: Any) -> Any:
        return value  # psycopg decodes JSONB itself

    def _insert_job(self, values: list[Any]) -> int:
        return self._execute(INSERT_JOB + " RETURNING seq", values).fetchone()["seq"]

    def insert(self, records: list[JobRecord]) -> None:
        with self.transaction():
            self._insert_rows(records)
            # Delivered at commit, once per transaction: every host's scheduler looks at the queue.
            self._execute("SELECT pg_notify(?, ?)", (JOB_CHANNEL, "- queued"))

    def update(self, rec: JobRecord, *fields: str) -> None:
        rec.updated_at = time.time()
        names = [*fields, "updated_at"]
        # Fenced: only the host that holds the job (processed_by) writes it, and never over a
        # settled state. A host declared dead while it was merely slow thus cannot undo the
        # survivors' decision (lost, or re-queued and claimed by another host).
        # And only while the daemon still holds its lease (hosts.py): once a survivor settled
        # this host, nothing it writes lands, whichever job it writes.
        sql = (f"UPDATE jobs SET {set_clause(names)} WHERE id = ? AND state <> ALL(?) "
               "AND processed_by IS NOT DISTINCT FROM ?")
        args = [*self._values(rec, names), rec.id, list(_SETTLED), rec.processed_by]
        if self.fence is not None:
            sql += " AND EXISTS (SELECT 1 FROM hosts WHERE host_id = ? AND pid = ? AND started_at = ?)"
            args += self.fence
        sql += " RETURNING id, state"
        if "state" in fields:
            sql = f"WITH changed AS ({sql}) SELECT pg_notify(?, id || ' ' || state) AS n FROM changed"
            args.append(JOB_CHANNEL)
        if self._execute(sql, args).fetchone() is None:
            logger.warning("job {}: not updated ({}); another host has taken it over or settled it",
                           rec.id, ", ".join(fields))

    def change_queue_control(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        with self.transaction():
            value = super().change_queue_control(change)
            self._execute("SELECT pg_notify(?, ?)", (JOB_CHANNEL, "- queue"))
        return value

    def compact(self) -> None:
        """Nothing to do: PostgreSQL's autovacuum reclaims the rows retention deletes."""

    def close(self) -> None:
        self._db.close()
