"""PostgreSQL store: the same interface as SQLite, for several daemons sharing one queue.

Calls are short and synchronous on one autocommit connection, made from the daemon's
event loop like the SQLite ones. The queue claim, cancel forwarding and host leases
live in supervisor/shared_queue.py and supervisor/hosts.py and use `connection()`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from loguru import logger
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from supervisor.models import JobRecord, JobState
from supervisor.store.base import BatchRecord, JobFilter
from supervisor.store.migrations import latest_version, migrations
from supervisor.store.sqlite import CALLBACK_PREFIX, CALLBACK_WITH_ITEM, SchemaTooNew

FIELDS = [f.name for f in dataclasses.fields(JobRecord) if f.name != "seq"]
_JSON_FIELDS = {"params", "result", "after_ids"}
_MIGRATION_LOCK = 0x52530000  # advisory lock id: daemons starting together migrate one at a time
# A row in one of these states is settled: a late write from a host that was declared
# dead (its lease expired while it was only slow) must not overwrite it.
_SETTLED = tuple(str(s) for s in JobState if s.done and s != JobState.CANCELLED)
_DONE = [str(s) for s in JobState if s.done]
_BATCH_FIELDS = [f.name for f in dataclasses.fields(BatchRecord)]
JOB_CHANNEL = "runspace_job"  # payload "<job id> <state>": wakes waiters and schedulers on every host


def _value(rec: JobRecord, name: str) -> Any:
    value = getattr(rec, name)
    if name in _JSON_FIELDS and value is not None:
        return Jsonb(value)
    return str(value) if name == "state" else value


def record_from_row(row: dict[str, Any]) -> JobRecord:
    values = {name: row[name] for name in FIELDS}
    values["state"] = JobState(values["state"])
    return JobRecord(**values, seq=row["seq"])


class PostgresStore:
    shared = True  # several daemons use this store at once

    def __init__(self, url: str) -> None:
        self.url = url
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

    # -- the Store interface -----------------------------------------------------------

    def insert(self, records: list[JobRecord]) -> None:
        cols = ", ".join(FIELDS)
        marks = ", ".join("%s" for _ in FIELDS)
        with self.transaction() as db:
            for rec in records:
                row = db.execute(f"INSERT INTO jobs ({cols}) VALUES ({marks}) RETURNING seq",
                                 [_value(rec, n) for n in FIELDS]).fetchone()
                assert row is not None
                rec.seq = row["seq"]
            # Delivered at commit, once per transaction: every host's scheduler looks at the queue.
            db.execute("SELECT pg_notify(%s, %s)", (JOB_CHANNEL, "- queued"))

    def get(self, job_id: str) -> JobRecord | None:
        row = self.connection().execute("SELECT * FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return record_from_row(row) if row else None

    def update(self, rec: JobRecord, *fields: str) -> None:
        rec.updated_at = time.time()
        names = [*fields, "updated_at"]
        sets = ", ".join(f"{n} = %s" for n in names)
        # Fenced: only the host that holds the job (processed_by) writes it, and never over a
        # settled state. A host declared dead while it was merely slow thus cannot undo the
        # survivors' decision (lost, or re-queued and claimed by another host).
        sql = (f"UPDATE jobs SET {sets} WHERE id = %s AND state <> ALL(%s) "
               "AND processed_by IS NOT DISTINCT FROM %s RETURNING id, state")
        args = [*(_value(rec, n) for n in names), rec.id, list(_SETTLED), rec.processed_by]
        if "state" in fields:
            sql = f"WITH changed AS ({sql}) SELECT pg_notify(%s, id || ' ' || state) AS n FROM changed"
            args.append(JOB_CHANNEL)
        if self.connection().execute(sql, args).fetchone() is None:
            logger.warning("job {}: not updated ({}); another host has taken it over or settled it",
                           rec.id, ", ".join(fields))

    def list(self, flt: JobFilter, limit: int, cursor: int | None) -> tuple[list[JobRecord], int | None]:
        where, args = [], []
        for column in ("requestor", "state", "job", "batch_id"):
            value = getattr(flt, column)
            if value is not None:
                where.append(f"{column} = %s")
                args.append(str(value))
        if cursor is not None:
            where.append("seq < %s")
            args.append(cursor)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self.connection().execute(sql + " ORDER BY seq DESC LIMIT %s", [*args, limit + 1]).fetchall()
        records = [record_from_row(r) for r in rows[:limit]]
        next_cursor = records[-1].seq if len(rows) > limit else None
        return records, next_cursor

    def in_states(self, *states: JobState) -> list[JobRecord]:
        rows = self.connection().execute("SELECT * FROM jobs WHERE state = ANY(%s) ORDER BY seq",
                                         ([str(s) for s in states],))
        return [record_from_row(r) for r in rows]

    def find_idempotent(self, requestor: str, key: str) -> JobRecord | None:
        row = self.connection().execute(
            "SELECT * FROM jobs WHERE requestor = %s AND idempotency_key = %s", (requestor, key)
        ).fetchone()
        return record_from_row(row) if row else None

    def count_by_state(self) -> dict[tuple[str, str], int]:
        rows = self.connection().execute("SELECT job, state, COUNT(*) AS n FROM jobs GROUP BY job, state")
        return {(r["job"], r["state"]): r["n"] for r in rows}

    def bump_counter(self, name: str) -> int:
        row = self.connection().execute(
            "INSERT INTO counters (name, value) VALUES (%s, 1) "
            "ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value",
            (name,),
        ).fetchone()
        assert row is not None
        return int(row["value"])

    # -- batches (same queries as supervisor/store/sqlite.py) ----------------------------

    def insert_batch(self, batch: BatchRecord) -> bool:
        marks = ", ".join("%s" for _ in _BATCH_FIELDS)
        row = self.connection().execute(
            f"INSERT INTO batches ({', '.join(_BATCH_FIELDS)}) VALUES ({marks}) ON CONFLICT (id) DO NOTHING "
            "RETURNING id", [getattr(batch, name) for name in _BATCH_FIELDS]).fetchone()
        return row is not None

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        row = self.connection().execute("SELECT * FROM batches WHERE id = %s", (batch_id,)).fetchone()
        return BatchRecord(**{name: row[name] for name in _BATCH_FIELDS}) if row else None

    def delete_batch(self, batch_id: str) -> None:
        self.connection().execute("DELETE FROM batches WHERE id = %s", (batch_id,))

    def delete_empty_batches(self, created_before: float | None = None) -> int:
        cur = self.connection().execute(
            "DELETE FROM batches WHERE created_at < %s AND NOT EXISTS "
            "(SELECT 1 FROM jobs WHERE jobs.batch_id = batches.id AND jobs.requestor = batches.requestor)",
            (created_before if created_before is not None else float("inf"),))
        return cur.rowcount

    # -- removal and queue control (as supervisor/store/sqlite.py) ------------------------

    def finished_ids(self, finished_before: float, states: list[JobState], requestor: str | None,
                     limit: int) -> list[str]:
        rows = self.connection().execute(
            "SELECT id FROM jobs WHERE finished_at < %s AND state = ANY(%s) AND (%s::text IS NULL OR requestor = %s) "
            f"AND NOT ({CALLBACK_WITH_ITEM}) ORDER BY finished_at LIMIT %s",
            (finished_before, [str(s) for s in states], requestor, requestor, limit))
        return [r["id"] for r in rows]

    def callback_item(self, rec: JobRecord) -> str | None:
        row = self.connection().execute(f"SELECT 1 FROM jobs WHERE id = %s AND {CALLBACK_WITH_ITEM}",
                                        (rec.id,)).fetchone()
        return (rec.idempotency_key or "").removeprefix(CALLBACK_PREFIX) if row else None

    def delete_jobs(self, ids: list[str]) -> None:
        self.connection().execute("DELETE FROM jobs WHERE id = ANY(%s)", (ids,))

    def queue_control(self) -> dict[str, Any]:
        row = self.connection().execute("SELECT value FROM queue_control WHERE name = 'queue'").fetchone()
        return dict(row["value"]) if row else {}

    def set_queue_control(self, value: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO queue_control (name, value) VALUES ('queue', %s) "
                       "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (Jsonb(value),))
            db.execute("SELECT pg_notify(%s, %s)", (JOB_CHANNEL, "- queue"))

    def batch_counts(self, batch: BatchRecord) -> dict[str, int]:
        rows = self.connection().execute(
            "SELECT state, COUNT(*) AS n FROM jobs WHERE batch_id = %s AND requestor = %s GROUP BY state",
            (batch.id, batch.requestor))
        return {r["state"]: r["n"] for r in rows}

    def batch_items(self, batch: BatchRecord, limit: int, cursor: int | None) -> tuple[list[JobRecord], int | None]:
        rows = self.connection().execute(
            "SELECT * FROM jobs WHERE batch_id = %s AND requestor = %s AND seq > %s ORDER BY seq LIMIT %s",
            (batch.id, batch.requestor, cursor or 0, limit + 1)).fetchall()
        records = [record_from_row(r) for r in rows[:limit]]
        next_cursor = records[-1].seq if len(rows) > limit and records else None
        return records, next_cursor

    def callback_counts(self, batch: BatchRecord, key_prefix: str) -> dict[str, int]:
        rows = self.connection().execute(
            "SELECT cb.state, COUNT(*) AS n FROM jobs item JOIN jobs cb "
            "ON cb.requestor = item.requestor AND cb.idempotency_key = %s || item.id "
            "WHERE item.batch_id = %s AND item.requestor = %s GROUP BY cb.state",
            (key_prefix, batch.id, batch.requestor))
        return {r["state"]: r["n"] for r in rows}

    def items_missing_callback(self, key_prefix: str) -> list[JobRecord]:
        rows = self.connection().execute(
            "SELECT item.* FROM batches b JOIN jobs item ON item.batch_id = b.id AND item.requestor = b.requestor "
            "WHERE b.callback_job IS NOT NULL AND item.state = ANY(%s) AND NOT EXISTS "
            "(SELECT 1 FROM jobs cb WHERE cb.requestor = item.requestor AND cb.idempotency_key = %s || item.id) "
            "ORDER BY item.seq", (_DONE, key_prefix))
        return [record_from_row(r) for r in rows]

    def close(self) -> None:
        self._db.close()
