"""SQLite store (WAL). Calls are short and synchronous; the daemon makes them from its event loop."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supervisor.models import JobRecord, JobState
from supervisor.store.base import BatchRecord, JobFilter

SCHEMA_VERSION = 4
_FIELDS = [f.name for f in dataclasses.fields(JobRecord) if f.name != "seq"]
_JSON_FIELDS = {"params", "result", "after_ids"}

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    {", ".join(f"{name} {'TEXT' if name in _JSON_FIELDS else ''}" for name in _FIELDS)},
    UNIQUE (id)
);
CREATE INDEX IF NOT EXISTS jobs_requestor ON jobs (requestor, seq);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, seq);
CREATE INDEX IF NOT EXISTS jobs_batch ON jobs (batch_id, seq);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idem ON jobs (requestor, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_BATCHES = """
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    requestor TEXT NOT NULL,
    size INTEGER NOT NULL,
    request_hash TEXT NOT NULL,
    callback_job TEXT,
    created_at REAL NOT NULL
);
"""


def _add_cgroup_column(db: sqlite3.Connection) -> None:
    # A database created by this version has it already (version 1 makes every field).
    columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    if columns and "cgroup" not in columns:
        db.execute("ALTER TABLE jobs ADD COLUMN cgroup TEXT")


def _add_queue_operations(db: sqlite3.Connection) -> None:
    """CONTRACT §14: dependencies, restarts, retention's index and the queue control document
    (as supervisor/store/migrations/postgres/0004_queue_operations.sql)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    if columns and "after_ids" not in columns:
        db.execute("ALTER TABLE jobs ADD COLUMN after_ids TEXT NOT NULL DEFAULT '[]'")
    if columns and "restarted_from" not in columns:
        db.execute("ALTER TABLE jobs ADD COLUMN restarted_from TEXT")
    if columns:
        db.execute("CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL")
    db.execute("CREATE TABLE IF NOT EXISTS queue_control (name TEXT PRIMARY KEY, value TEXT NOT NULL)")


# Schema version reached -> the step that reaches it. Each can run again after being
# interrupted half-way (IF NOT EXISTS, or a check first).
_MIGRATIONS: dict[int, str | Callable[[sqlite3.Connection], None]] = {
    1: _SCHEMA, 2: _BATCHES, 3: _add_cgroup_column, 4: _add_queue_operations}
_DONE_STATES = tuple(str(s) for s in JobState if s.done)
CALLBACK_PREFIX = "callback/"  # supervisor.batches.CALLBACK_KEY_PREFIX (the daemon's module; not imported here)
# A callback job (`jobs` row) whose batch item is still stored (no LIKE: psycopg reads % as a placeholder).
CALLBACK_WITH_ITEM = (f"substr(idempotency_key, 1, {len(CALLBACK_PREFIX)}) = '{CALLBACK_PREFIX}' AND EXISTS (SELECT 1 FROM jobs item "
                       f"WHERE item.id = substr(jobs.idempotency_key, {len(CALLBACK_PREFIX) + 1}) "
                       "AND item.requestor = jobs.requestor)")
_BATCH_FIELDS = [f.name for f in dataclasses.fields(BatchRecord)]


class SchemaTooNew(RuntimeError):
    pass


def _to_row(rec: JobRecord) -> list[Any]:
    row = []
    for name in _FIELDS:
        value = getattr(rec, name)
        row.append(json.dumps(value) if name in _JSON_FIELDS else value)
    return row


def _from_row(row: sqlite3.Row) -> JobRecord:
    values = {name: row[name] for name in _FIELDS}
    for name in _JSON_FIELDS:
        values[name] = json.loads(values[name]) if values[name] is not None else None
    values["state"] = JobState(values["state"])
    return JobRecord(**values, seq=row["seq"])


class SqliteStore:
    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        # WAL + NORMAL: a commit survives a crash of this process (kill -9), which is
        # what "persisted before reported" needs; fsync per commit would cap throughput.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"the database has schema version {version}, this runspace knows up to {SCHEMA_VERSION}; upgrade runspace"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            step = _MIGRATIONS[target]
            if callable(step):
                step(self._db)
            else:
                self._db.executescript(step)
            self._db.execute(f"PRAGMA user_version={target}")

    def insert(self, records: list[JobRecord]) -> None:
        cols = ", ".join(_FIELDS)
        marks = ", ".join("?" for _ in _FIELDS)
        with self._transaction():
            for rec in records:
                cur = self._db.execute(f"INSERT INTO jobs ({cols}) VALUES ({marks})", _to_row(rec))
                rec.seq = cur.lastrowid

    def get(self, job_id: str) -> JobRecord | None:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _from_row(row) if row else None

    def update(self, rec: JobRecord, *fields: str) -> None:
        rec.updated_at = time.time()
        names = [*fields, "updated_at"]
        values = [json.dumps(getattr(rec, n)) if n in _JSON_FIELDS else getattr(rec, n) for n in names]
        sets = ", ".join(f"{n} = ?" for n in names)
        self._db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", [*values, rec.id])

    def list(self, flt: JobFilter, limit: int, cursor: int | None) -> tuple[list[JobRecord], int | None]:
        where, args = [], []
        for column in ("requestor", "state", "job", "batch_id"):
            value = getattr(flt, column)
            if value is not None:
                where.append(f"{column} = ?")
                args.append(str(value))
        if cursor is not None:
            where.append("seq < ?")
            args.append(cursor)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._db.execute(sql + " ORDER BY seq DESC LIMIT ?", [*args, limit + 1]).fetchall()
        records = [_from_row(r) for r in rows[:limit]]
        next_cursor = records[-1].seq if len(rows) > limit else None
        return records, next_cursor

    def in_states(self, *states: JobState) -> list[JobRecord]:
        marks = ", ".join("?" for _ in states)
        rows = self._db.execute(f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY seq", [str(s) for s in states])
        return [_from_row(r) for r in rows]

    def find_idempotent(self, requestor: str, key: str) -> JobRecord | None:
        row = self._db.execute(
            "SELECT * FROM jobs WHERE requestor = ? AND idempotency_key = ?", (requestor, key)
        ).fetchone()
        return _from_row(row) if row else None

    def count_by_state(self) -> dict[tuple[str, str], int]:
        rows = self._db.execute("SELECT job, state, COUNT(*) FROM jobs GROUP BY job, state")
        return {(job, state): n for job, state, n in rows}

    def bump_counter(self, name: str) -> int:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET value = value + 1",
            (name,),
        )
        return self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0]

    # -- batches ----------------------------------------------------------------------

    def insert_batch(self, batch: BatchRecord) -> bool:
        values = [getattr(batch, name) for name in _BATCH_FIELDS]
        marks = ", ".join("?" for _ in _BATCH_FIELDS)
        try:
            self._db.execute(f"INSERT INTO batches ({', '.join(_BATCH_FIELDS)}) VALUES ({marks})", values)
        except sqlite3.IntegrityError:
            return False
        return True

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        row = self._db.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return BatchRecord(**{name: row[name] for name in _BATCH_FIELDS}) if row else None

    def delete_batch(self, batch_id: str) -> None:
        self._db.execute("DELETE FROM batches WHERE id = ?", (batch_id,))

    def delete_empty_batches(self, created_before: float | None = None) -> int:
        """A batch row is written just before its items; one without items is a request that died
        between, or one whose items were all removed (`created_before` spares batches being made)."""
        cur = self._db.execute(
            "DELETE FROM batches WHERE created_at < ? AND NOT EXISTS "
            "(SELECT 1 FROM jobs WHERE jobs.batch_id = batches.id AND jobs.requestor = batches.requestor)",
            (created_before if created_before is not None else float("inf"),)
        )
        return cur.rowcount

    # -- removal and queue control ------------------------------------------------------

    def finished_ids(self, finished_before: float, states: list[JobState], requestor: str | None,
                     limit: int) -> list[str]:
        """Ended jobs, oldest first. A batch callback stays while its item does: the start-up sweep
        would otherwise queue it again (supervisor/batches.py)."""
        marks = ", ".join("?" for _ in states)
        sql = (f"SELECT id FROM jobs WHERE finished_at < ? AND state IN ({marks}) "
               f"AND {'requestor = ?' if requestor is not None else '1'} AND NOT ({CALLBACK_WITH_ITEM}) "
               "ORDER BY finished_at LIMIT ?")
        args = [finished_before, *map(str, states), *([requestor] if requestor is not None else []), limit]
        return [row[0] for row in self._db.execute(sql, args)]

    def callback_item(self, rec: JobRecord) -> str | None:
        """The batch item whose callback `rec` is, if that item is still stored."""
        row = self._db.execute(f"SELECT 1 FROM jobs WHERE id = ? AND {CALLBACK_WITH_ITEM}", (rec.id,)).fetchone()
        return (rec.idempotency_key or "").removeprefix(CALLBACK_PREFIX) if row else None

    def delete_jobs(self, ids: list[str]) -> None:
        with self._transaction():
            self._db.executemany("DELETE FROM jobs WHERE id = ?", [(job_id,) for job_id in ids])

    def queue_control(self) -> dict[str, Any]:
        row = self._db.execute("SELECT value FROM queue_control WHERE name = 'queue'").fetchone()
        return json.loads(row[0]) if row else {}

    def set_queue_control(self, value: dict[str, Any]) -> None:
        self._db.execute("INSERT INTO queue_control (name, value) VALUES ('queue', ?) "
                         "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (json.dumps(value),))

    def batch_counts(self, batch: BatchRecord) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT state, COUNT(*) FROM jobs WHERE batch_id = ? AND requestor = ? GROUP BY state",
            (batch.id, batch.requestor),
        )
        return {state: n for state, n in rows}

    def batch_items(self, batch: BatchRecord, limit: int, cursor: int | None) -> tuple[list[JobRecord], int | None]:
        """Items in the order they were submitted (ascending seq); the cursor is the last seq seen."""
        rows = self._db.execute(
            "SELECT * FROM jobs WHERE batch_id = ? AND requestor = ? AND seq > ? ORDER BY seq LIMIT ?",
            (batch.id, batch.requestor, cursor or 0, limit + 1),
        ).fetchall()
        records = [_from_row(r) for r in rows[:limit]]
        next_cursor = records[-1].seq if len(rows) > limit and records else None
        return records, next_cursor

    def callback_counts(self, batch: BatchRecord, key_prefix: str) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT cb.state, COUNT(*) FROM jobs item JOIN jobs cb "
            "ON cb.requestor = item.requestor AND cb.idempotency_key = ? || item.id "
            "WHERE item.batch_id = ? AND item.requestor = ? GROUP BY cb.state",
            (key_prefix, batch.id, batch.requestor),
        )
        return {state: n for state, n in rows}

    def items_missing_callback(self, key_prefix: str) -> list[JobRecord]:
        """Ended items of batches with a callback whose callback job was never created."""
        marks = ", ".join("?" for _ in _DONE_STATES)
        rows = self._db.execute(
            "SELECT item.* FROM batches b JOIN jobs item "
            "ON item.batch_id = b.id AND item.requestor = b.requestor "
            f"WHERE b.callback_job IS NOT NULL AND item.state IN ({marks}) AND NOT EXISTS "
            "(SELECT 1 FROM jobs cb WHERE cb.requestor = item.requestor AND cb.idempotency_key = ? || item.id) "
            "ORDER BY item.seq",
            (*_DONE_STATES, key_prefix),
        )
        return [_from_row(r) for r in rows]

    def close(self) -> None:
        self._db.close()

    def _transaction(self):
        return _Tx(self._db)


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
