"""The SQL both stores run (daemon process), written once with `?` placeholders.

`SqlStore` implements the Store interface over a DB-API connection. A backend adds how it
connects, how it migrates (supervisor/store/migrations/<backend>/) and how a value is
encoded; PostgreSQL also turns `?` into psycopg's `%s` and adds what only a shared store
needs (fenced updates, notifications). Every statement here runs on SQLite ≥ 3.35
(RETURNING) and PostgreSQL ≥ 12, and tests/test_store.py runs each one on both.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from supervisor.models import JobRecord, JobState
from supervisor.store.base import BatchRecord, JobFilter

# A column per JobRecord field (seq is the table's own key): a new field needs a migration
# file for each backend, which tests/test_store.py checks.
JOB_FIELDS = [f.name for f in dataclasses.fields(JobRecord) if f.name != "seq"]
JSON_FIELDS = frozenset({"params", "result", "after_ids"})
BATCH_FIELDS = [f.name for f in dataclasses.fields(BatchRecord)]
DONE_STATES = [str(s) for s in JobState if s.done]
# A batch callback's idempotency key: this + its item's id. '/' is outside the names a client
# may send (supervisor/submit.py NAME_PATTERN), so no client key collides with it.
CALLBACK_PREFIX = "callback/"


def marks(count: int) -> str:
    return ", ".join("?" for _ in range(count))


def set_clause(names: Iterable[str]) -> str:
    return ", ".join(f"{name} = ?" for name in names)


INSERT_JOB = f"INSERT INTO jobs ({', '.join(JOB_FIELDS)}) VALUES ({marks(len(JOB_FIELDS))})"
GET_JOB = "SELECT * FROM jobs WHERE id = ?"
FIND_IDEMPOTENT = "SELECT * FROM jobs WHERE requestor = ? AND idempotency_key = ?"
COUNT_BY_STATE = "SELECT job, state, COUNT(*) AS n FROM jobs GROUP BY job, state"
BUMP_COUNTER = ("INSERT INTO counters (name, value) VALUES (?, 1) "
                "ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value")

INSERT_BATCH = (f"INSERT INTO batches ({', '.join(BATCH_FIELDS)}) VALUES ({marks(len(BATCH_FIELDS))}) "
                "ON CONFLICT (requestor, id) DO NOTHING RETURNING id")
# Batch ids are per requestor: another user's "nightly" is another batch.
GET_BATCH = "SELECT * FROM batches WHERE id = ? AND requestor = ?"
DELETE_BATCH = "DELETE FROM batches WHERE id = ? AND requestor = ?"
# A batch row is written just before its items; one without items is a request that died
# between, or one whose items were all removed (`created_at < ?` spares batches being made).
DELETE_EMPTY_BATCHES = ("DELETE FROM batches WHERE created_at < ? AND NOT EXISTS "
                        "(SELECT 1 FROM jobs WHERE jobs.batch_id = batches.id AND jobs.requestor = batches.requestor)")
BATCH_COUNTS = "SELECT state, COUNT(*) AS n FROM jobs WHERE batch_id = ? AND requestor = ? GROUP BY state"
BATCH_ITEMS = "SELECT * FROM jobs WHERE batch_id = ? AND requestor = ? AND seq > ? ORDER BY seq LIMIT ?"
# A callback job's idempotency key is key_prefix + the item's id (supervisor/batches.py).
CALLBACK_COUNTS = ("SELECT cb.state, COUNT(*) AS n FROM jobs item JOIN jobs cb "
                   "ON cb.requestor = item.requestor AND cb.idempotency_key = ? || item.id "
                   "WHERE item.batch_id = ? AND item.requestor = ? GROUP BY cb.state")
ITEMS_MISSING_CALLBACK = (
    "SELECT item.* FROM batches b JOIN jobs item ON item.batch_id = b.id AND item.requestor = b.requestor "
    f"WHERE b.callback_job IS NOT NULL AND item.state IN ({marks(len(DONE_STATES))}) AND NOT EXISTS "
    "(SELECT 1 FROM jobs cb WHERE cb.requestor = item.requestor AND cb.idempotency_key = ? || item.id) "
    "ORDER BY item.seq")


# A callback job (`jobs` row) whose batch item is still stored (no LIKE: psycopg reads % as a placeholder).
CALLBACK_WITH_ITEM = (f"substr(idempotency_key, 1, {len(CALLBACK_PREFIX)}) = '{CALLBACK_PREFIX}' "
                      "AND EXISTS (SELECT 1 FROM jobs item "
                      f"WHERE item.id = substr(jobs.idempotency_key, {len(CALLBACK_PREFIX) + 1}) "
                      "AND item.requestor = jobs.requestor)")
IS_CALLBACK_WITH_ITEM = f"SELECT 1 FROM jobs WHERE id = ? AND {CALLBACK_WITH_ITEM}"
GET_QUEUE_CONTROL = "SELECT value FROM queue_control WHERE name = 'queue'"
# So that the row a change locks exists: a first change on each of two hosts would both read none.
ADD_QUEUE_CONTROL = "INSERT INTO queue_control (name, value) VALUES ('queue', ?) ON CONFLICT (name) DO NOTHING"
SET_QUEUE_CONTROL = "UPDATE queue_control SET value = ? WHERE name = 'queue'"
# Why a queued job waits (supervisor/waiting.py) and which jobs wait for another (dependencies.py).
RUNNING_OF_TYPE = "SELECT count(*) AS n FROM jobs WHERE state = 'running' AND job = ?"
KEY_HOLDER = "SELECT id FROM jobs WHERE state = 'running' AND job = ? AND concurrency_key = ? LIMIT 1"
QUEUE_AHEAD = ("SELECT count(*) AS n FROM jobs WHERE state = 'queued' "
               "AND (priority > ? OR (priority = ? AND seq < ?))")
_DELETE_CHUNK = 500  # ids per DELETE: far below SQLite's limit on ? parameters


def finished_ids(finished_before: float, states: list[JobState], requestor: str | None,
                 limit: int) -> tuple[str, list[Any]]:
    """Ended jobs, oldest first. A batch callback stays while its item does: the start-up sweep
    would otherwise queue it again (supervisor/batches.py)."""
    mine = " AND requestor = ?" if requestor is not None else ""
    sql = (f"SELECT id FROM jobs WHERE finished_at < ? AND state IN ({marks(len(states))}){mine} "
           f"AND NOT ({CALLBACK_WITH_ITEM}) ORDER BY finished_at LIMIT ?")
    return sql, [finished_before, *map(str, states), *([requestor] if requestor is not None else []), limit]


def in_states(count: int) -> str:
    return f"SELECT * FROM jobs WHERE state IN ({marks(count)}) ORDER BY seq"


def list_jobs(flt: JobFilter, limit: int, cursor: int | None) -> tuple[str, list[Any]]:
    """Newest first; the cursor is the last seq seen. One row more than asked tells whether
    there is a next page."""
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
    return sql + " ORDER BY seq DESC LIMIT ?", [*args, limit + 1]


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


def job_record(row: Mapping[str, Any], from_json: Callable[[Any], Any] | None = None) -> JobRecord:
    """A jobs row as a JobRecord; `from_json` for a driver that returns JSON columns as text."""
    values = {name: row[name] for name in JOB_FIELDS}
    if from_json is not None:
        for name in JSON_FIELDS:
            values[name] = from_json(values[name])
    values["state"] = JobState(values["state"])
    return JobRecord(**values, seq=row["seq"])


def _page(records: list[JobRecord], rows: int, limit: int) -> tuple[list[JobRecord], int | None]:
    return records, records[-1].seq if rows > limit and records else None


class SqlStore:
    """The Store methods both backends share; subclasses supply the hooks below."""

    # The elements of a JSON array of strings as rows with a column `value` (backends name it differently).
    after_ids_elements = "json_each(jobs.after_ids) AS v"
    # What a SELECT adds to hold its rows until the transaction ends (SQLite's BEGIN IMMEDIATE
    # already holds the whole database).
    lock_row = ""

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[object]:
        raise NotImplementedError

    def _to_json(self, value: Any) -> Any:
        """A value for a JSON column, as the driver takes it."""
        raise NotImplementedError

    def _from_json(self, value: Any) -> Any:
        """A JSON column's value as the driver returns it, decoded."""
        raise NotImplementedError

    def _insert_job(self, values: list[Any]) -> int:
        """Run INSERT_JOB; the new row's seq."""
        raise NotImplementedError

    def _values(self, rec: JobRecord, names: Iterable[str]) -> list[Any]:
        values = []
        for name in names:
            value = getattr(rec, name)
            values.append(self._to_json(value) if name in JSON_FIELDS else str(value) if name == "state" else value)
        return values

    def _record(self, row: Mapping[str, Any]) -> JobRecord:
        return job_record(row, self._from_json)

    def _insert_rows(self, records: list[JobRecord]) -> None:
        for rec in records:
            rec.seq = self._insert_job(self._values(rec, JOB_FIELDS))

    # -- jobs ------------------------------------------------------------------------------

    def insert(self, records: list[JobRecord]) -> None:
        with self._transaction():
            self._insert_rows(records)

    def get(self, job_id: str) -> JobRecord | None:
        row = self._execute(GET_JOB, (job_id,)).fetchone()
        return self._record(row) if row else None

    def update(self, rec: JobRecord, *fields: str) -> None:
        rec.updated_at = time.time()
        names = [*fields, "updated_at"]
        self._execute(f"UPDATE jobs SET {set_clause(names)} WHERE id = ?", [*self._values(rec, names), rec.id])

    def list(self, flt: JobFilter, limit: int, cursor: int | None) -> tuple[list[JobRecord], int | None]:
        rows = self._execute(*list_jobs(flt, limit, cursor)).fetchall()
        return _page([self._record(r) for r in rows[:limit]], len(rows), limit)

    def in_states(self, *states: JobState) -> list[JobRecord]:
        return [self._record(r) for r in self._execute(in_states(len(states)), [str(s) for s in states])]

    def find_idempotent(self, requestor: str, key: str) -> JobRecord | None:
        row = self._execute(FIND_IDEMPOTENT, (requestor, key)).fetchone()
        return self._record(row) if row else None

    def count_by_state(self) -> dict[tuple[str, str], int]:
        return {(r["job"], r["state"]): r["n"] for r in self._execute(COUNT_BY_STATE)}

    def bump_counter(self, name: str) -> int:
        return int(self._execute(BUMP_COUNTER, (name,)).fetchone()["value"])

    # -- batches (the items themselves are ordinary jobs) -----------------------------------

    def insert_batch(self, batch: BatchRecord) -> bool:
        """False: the requestor has a batch of this id already."""
        row = self._execute(INSERT_BATCH, [getattr(batch, name) for name in BATCH_FIELDS]).fetchone()
        return row is not None

    def get_batch(self, batch_id: str, requestor: str) -> BatchRecord | None:
        row = self._execute(GET_BATCH, (batch_id, requestor)).fetchone()
        return BatchRecord(**{name: row[name] for name in BATCH_FIELDS}) if row else None

    def delete_batch(self, batch_id: str, requestor: str) -> None:
        self._execute(DELETE_BATCH, (batch_id, requestor))

    def delete_empty_batches(self, created_before: float | None = None) -> int:
        return self._execute(DELETE_EMPTY_BATCHES, (created_before if created_before is not None else float("inf"),)).rowcount

    def batch_counts(self, batch: BatchRecord) -> dict[str, int]:
        return {r["state"]: r["n"] for r in self._execute(BATCH_COUNTS, (batch.id, batch.requestor))}

    def batch_items(self, batch: BatchRecord, limit: int, cursor: int | None) -> tuple[list[JobRecord], int | None]:
        """Items in the order they were submitted (ascending seq); the cursor is the last seq seen."""
        rows = self._execute(BATCH_ITEMS, (batch.id, batch.requestor, cursor or 0, limit + 1)).fetchall()
        return _page([self._record(r) for r in rows[:limit]], len(rows), limit)

    def callback_counts(self, batch: BatchRecord, key_prefix: str) -> dict[str, int]:
        rows = self._execute(CALLBACK_COUNTS, (key_prefix, batch.id, batch.requestor))
        return {r["state"]: r["n"] for r in rows}

    def items_missing_callback(self, key_prefix: str) -> list[JobRecord]:
        """Ended items of batches with a callback whose callback job was never created."""
        return [self._record(r) for r in self._execute(ITEMS_MISSING_CALLBACK, (*DONE_STATES, key_prefix))]

    # -- removal and queue control ----------------------------------------------------------

    def finished_ids(self, finished_before: float, states: list[JobState], requestor: str | None,
                     limit: int) -> list[str]:
        return [row["id"] for row in self._execute(*finished_ids(finished_before, states, requestor, limit))]

    def callback_item(self, rec: JobRecord) -> str | None:
        """The batch item whose callback `rec` is, if that item is still stored."""
        row = self._execute(IS_CALLBACK_WITH_ITEM, (rec.id,)).fetchone()
        return (rec.idempotency_key or "").removeprefix(CALLBACK_PREFIX) if row else None

    def states_of(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        """(state, requestor) of each job found."""
        found: dict[str, tuple[str, str]] = {}
        for start in range(0, len(ids), _DELETE_CHUNK):
            chunk = ids[start:start + _DELETE_CHUNK]
            rows = self._execute(f"SELECT id, state, requestor FROM jobs WHERE id IN ({marks(len(chunk))})", chunk)
            found.update({r["id"]: (r["state"], r["requestor"]) for r in rows})
        return found

    def dependents_of(self, job_id: str) -> list[JobRecord]:
        """Queued jobs that wait for `job_id` (their after_ids name it)."""
        rows = self._execute("SELECT * FROM jobs WHERE state = 'queued' AND EXISTS "
                             f"(SELECT 1 FROM {self.after_ids_elements} WHERE v.value = ?) ORDER BY seq", (job_id,))
        return [self._record(r) for r in rows]

    def running_like(self, job: str, key: str | None) -> tuple[int, str | None]:
        """How many jobs of this type run, and which one holds this concurrency key (if any)."""
        count = int(self._execute(RUNNING_OF_TYPE, (job,)).fetchone()["n"])
        holder = self._execute(KEY_HOLDER, (job, key)).fetchone() if key is not None else None
        return count, holder["id"] if holder else None

    def queue_position(self, rec: JobRecord) -> int:
        """1 + the queued jobs ahead of `rec`: higher priority, or the same and submitted earlier."""
        return int(self._execute(QUEUE_AHEAD, (rec.priority, rec.priority, rec.seq)).fetchone()["n"]) + 1

    def delete_jobs(self, ids: list[str]) -> None:
        with self._transaction():
            for start in range(0, len(ids), _DELETE_CHUNK):
                chunk = ids[start:start + _DELETE_CHUNK]
                self._execute(f"DELETE FROM jobs WHERE id IN ({marks(len(chunk))})", chunk)

    def queue_control(self) -> dict[str, Any]:
        row = self._execute(GET_QUEUE_CONTROL).fetchone()
        return dict(self._from_json(row["value"])) if row else {}

    def change_queue_control(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """Read, change and write the queue settings in one transaction that holds the row, so a
        change made at the same time (another host's) is applied after this one, never lost."""
        with self._transaction():
            self._execute(ADD_QUEUE_CONTROL, (self._to_json({}),))
            row = self._execute(GET_QUEUE_CONTROL + self.lock_row).fetchone()
            value = change(dict(self._from_json(row["value"])))
            self._execute(SET_QUEUE_CONTROL, (self._to_json(value),))
        return value
