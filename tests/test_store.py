"""One store suite, run against both backends: SQLite, and the private PostgreSQL of tests/pg.py."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.models import JobRecord, JobState
from supervisor.store import open_store
from supervisor.store.base import BatchRecord, JobFilter, Store
from supervisor.store.migrations import SchemaTooNew, latest_version, migrations
from supervisor.store.sql import CALLBACK_PREFIX, JOB_FIELDS
from supervisor.store.sqlite import SqliteStore

CALLBACK = CALLBACK_PREFIX  # a callback job's idempotency key is this prefix + its item's id


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "runspace.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def _job(n: int, **fields: object) -> JobRecord:
    values: dict[str, object] = {"job": "echo", "params": {"n": n, "nested": {"a": [1, 2]}}, "requestor": "alice",
                                 "log_user": "alice", "requested_at": 1000.0 + n, "updated_at": 1000.0 + n}
    return JobRecord(id=f"{n:032x}", **{**values, **fields})  # type: ignore[arg-type]


def test_a_job_round_trips_and_updates(store: Store) -> None:
    rec = _job(1, concurrency_key="k", priority=5)
    store.insert([rec])
    assert rec.seq is not None
    got = store.get(rec.id)
    assert got == rec and got.state is JobState.QUEUED and got.params == {"n": 1, "nested": {"a": [1, 2]}}

    rec.state, rec.result, rec.exit_code, rec.cgroup = JobState.SUCCEEDED, {"ok": [True, None]}, 0, "/sys/x"
    store.update(rec, "state", "result", "exit_code", "cgroup")
    got = store.get(rec.id)
    assert got is not None and (got.state, got.result, got.exit_code, got.cgroup) == (
        JobState.SUCCEEDED, {"ok": [True, None]}, 0, "/sys/x")
    assert got.updated_at > 1001.0, "update stamps updated_at"
    assert store.get("0" * 32) is None


def test_list_filters_and_pages_newest_first(store: Store) -> None:
    records = [_job(n, requestor="bob" if n % 2 else "alice") for n in range(1, 8)]
    records[0].state = JobState.FAILED
    store.insert(records)
    page, cursor = store.list(JobFilter(), 3, None)
    assert [r.id for r in page] == [r.id for r in reversed(records)][:3] and cursor == page[-1].seq
    rest, end = store.list(JobFilter(), 10, cursor)
    assert len(rest) == 4 and end is None
    assert {r.requestor for r in store.list(JobFilter(requestor="bob"), 10, None)[0]} == {"bob"}
    assert [r.id for r in store.list(JobFilter(state=JobState.FAILED), 10, None)[0]] == [records[0].id]
    assert store.list(JobFilter(job="other"), 10, None) == ([], None)
    assert [r.id for r in store.in_states(JobState.FAILED, JobState.QUEUED)] == [r.id for r in records]


def test_idempotency_counts_and_counters(store: Store) -> None:
    store.insert([_job(1, idempotency_key="k1"), _job(2, state=JobState.RUNNING)])
    found = store.find_idempotent("alice", "k1")
    assert found is not None and found.id == _job(1).id
    assert store.find_idempotent("bob", "k1") is None
    assert store.count_by_state() == {("echo", "queued"): 1, ("echo", "running"): 1}
    assert [store.bump_counter("starts") for _ in range(3)] == [1, 2, 3]
    assert store.bump_counter("other") == 1


def test_batches_and_their_callback_queries(store: Store) -> None:
    batch = BatchRecord(id="b1", job="echo", requestor="alice", size=3, request_hash="h", callback_job="notify",
                        created_at=5.0)
    assert store.insert_batch(batch) is True
    assert store.insert_batch(batch) is False, "the id is taken"
    assert store.get_batch("b1", "alice") == batch
    theirs = BatchRecord(id="b1", job="echo", requestor="mallory", size=1, request_hash="h", created_at=5.0)
    assert store.insert_batch(theirs) is True, "batch ids are per requestor"
    assert store.get_batch("b1", "mallory") == theirs
    items = [_job(n, batch_id="b1") for n in range(1, 4)]
    items[0].state = items[1].state = JobState.SUCCEEDED
    store.insert([*items, _job(9, batch_id="b1", requestor="mallory")])  # same batch id, not this batch

    assert store.batch_counts(batch) == {"succeeded": 2, "queued": 1}
    first, cursor = store.batch_items(batch, 2, None)
    assert [r.id for r in first] == [items[0].id, items[1].id]
    second, end = store.batch_items(batch, 2, cursor)
    assert [r.id for r in second] == [items[2].id] and end is None

    assert [r.id for r in store.items_missing_callback(CALLBACK)] == [items[0].id, items[1].id]
    store.insert([_job(20, job="notify", idempotency_key=CALLBACK + items[0].id, state=JobState.SUCCEEDED)])
    assert [r.id for r in store.items_missing_callback(CALLBACK)] == [items[1].id]
    assert store.callback_counts(batch, CALLBACK) == {"succeeded": 1}

    empty = BatchRecord(id="b2", job="echo", requestor="alice", size=1, request_hash="h", created_at=6.0)
    store.insert_batch(empty)
    assert store.delete_empty_batches() == 1 and store.get_batch("b2", "alice") is None
    assert store.get_batch("b1", "alice") and store.get_batch("b1", "mallory")  # mallory's has an item
    store.delete_batch("b1", "alice")
    assert store.get_batch("b1", "alice") is None and store.get_batch("b1", "mallory") == theirs


def test_removal_and_queue_control(store: Store) -> None:
    item, other = _job(1, batch_id="b1", state=JobState.SUCCEEDED, finished_at=10.0), _job(2, finished_at=20.0)
    other.state = JobState.FAILED
    callback = _job(3, job="notify", idempotency_key=CALLBACK + item.id, state=JobState.SUCCEEDED, finished_at=5.0)
    store.insert([item, other, callback, _job(4, requestor="bob", state=JobState.FAILED, finished_at=1.0),
                  _job(5, after_ids=[item.id], restarted_from=other.id)])
    got = store.get(_job(5).id)
    assert got is not None and got.after_ids == [item.id] and got.restarted_from == other.id
    ended = [JobState.SUCCEEDED, JobState.FAILED]
    # oldest first; the callback stays while its item does
    assert store.finished_ids(100.0, ended, None, 10) == [_job(4).id, item.id, other.id]
    assert store.finished_ids(100.0, ended, "alice", 1) == [item.id]
    assert store.finished_ids(15.0, [JobState.FAILED], None, 10) == [_job(4).id]
    assert store.callback_item(callback) == item.id and store.callback_item(item) is None
    store.delete_jobs([item.id, _job(4).id])
    assert store.get(item.id) is None and store.get(other.id) is not None
    assert store.callback_item(callback) is None, "its item is gone"
    assert store.finished_ids(100.0, ended, None, 10) == [callback.id, other.id]
    store.delete_jobs([f"{n:032x}" for n in range(100, 1700)])  # more ids than one statement takes

    assert store.queue_control() == {}
    assert store.change_queue_control(lambda value: {**value, "paused": True}) == {"paused": True}
    store.change_queue_control(lambda value: {**value, "parallel": {"echo": 2}})
    assert store.queue_control() == {"paused": True, "parallel": {"echo": 2}}


def test_queue_control_changes_made_at_once_all_hold(store_url: str) -> None:
    """Two daemons (two connections) change the settings at the same instant: the second reads
    what the first wrote, instead of the value both saw before, which would undo the first."""
    first, second = open_store(store_url), open_store(store_url)
    reading = threading.Event()

    def slow_change(value: dict[str, Any]) -> dict[str, Any]:
        reading.set()
        time.sleep(0.5)  # the other connection tries its change meanwhile
        return {**value, "paused": True}

    try:
        slow = threading.Thread(target=first.change_queue_control, args=(slow_change,))
        slow.start()
        assert reading.wait(10)
        second.change_queue_control(lambda value: {**value, "parallel": 3})
        slow.join(10)
        assert first.queue_control() == {"paused": True, "parallel": 3}
    finally:
        first.close()
        second.close()


def _columns(store: Store) -> set[str]:
    if isinstance(store, SqliteStore):
        return {row["name"] for row in store._execute("PRAGMA table_info(jobs)")}
    rows = store._execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'jobs'")  # type: ignore[attr-defined]
    return {row["column_name"] for row in rows}


def test_the_schema_has_a_column_for_every_job_field(store: Store) -> None:
    """A JobRecord field added without a migration file fails here, not on an existing install."""
    assert {*JOB_FIELDS, "seq"} <= _columns(store)


def test_both_backends_have_the_same_migrations() -> None:
    names = {backend: [(m.version, m.name) for m in migrations(backend)] for backend in ("sqlite", "postgres")}
    assert names["sqlite"] == names["postgres"], "add each migration to both supervisor/store/migrations/*/"


# The jobs table as runspace 0.1 created it at version 1 (its schema was generated from the
# JobRecord of the day); a later 0.1 also made `cgroup` at version 1.
_V1_COLUMNS = ("id job params requestor log_user state priority concurrency_key batch_id idempotency_key request_hash "
               "attempt max_attempts result error_type error_message exit_code signal reason killed_at progress "
               "total message pid pid_started processed_by requested_at started_at finished_at updated_at "
               "not_before").split()


@pytest.mark.parametrize("with_cgroup", [False, True], ids=["v1", "v1-with-cgroup"])
def test_an_existing_version_1_sqlite_database_upgrades(tmp_path: Path, with_cgroup: bool) -> None:
    path = tmp_path / "old.db"
    columns = [*_V1_COLUMNS, "cgroup"] if with_cgroup else _V1_COLUMNS
    old = sqlite3.connect(path)
    old.executescript(f"""
        CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT,
            {", ".join(f"{n} {'TEXT' if n in ('params', 'result') else ''}" for n in columns)}, UNIQUE (id));
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO counters VALUES ('daemon_starts', 4);
        PRAGMA user_version=1;
    """)
    old.execute("INSERT INTO jobs (id, job, params, requestor, log_user, state, attempt, max_attempts, requested_at, "
                "updated_at, not_before) VALUES (?, 'echo', '{\"n\": 1}', 'alice', 'alice', 'succeeded', 1, 1, 1.0, 1.0, 0)",
                (_job(1).id,))
    old.commit()
    old.close()

    store = SqliteStore(path)
    assert store._execute("PRAGMA user_version").fetchone()[0] == latest_version("sqlite")
    assert {*JOB_FIELDS, "seq"} <= _columns(store)
    rec = store.get(_job(1).id)
    assert rec is not None and rec.params == {"n": 1} and rec.state is JobState.SUCCEEDED and rec.cgroup is None
    assert rec.after_ids == [] and rec.restarted_from is None
    rec.cgroup = "/sys/fs/cgroup/x"
    store.update(rec, "cgroup")
    assert store.bump_counter("daemon_starts") == 5
    assert store.insert_batch(BatchRecord(id="b", job="echo", requestor="alice", size=1, request_hash="h"))
    store.close()
    SqliteStore(path).close()  # opening again applies nothing


def test_a_sqlite_database_from_a_newer_runspace_is_refused(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "db").close()
    db = sqlite3.connect(tmp_path / "db")
    db.execute(f"PRAGMA user_version={latest_version('sqlite') + 1}")
    db.close()
    with pytest.raises(SchemaTooNew, match="upgrade runspace"):
        SqliteStore(tmp_path / "db")
