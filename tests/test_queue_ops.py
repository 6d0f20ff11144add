"""Queue operations of CONTRACT §14 through a real daemon, on SQLite and on a private PostgreSQL:
restart, rm, clean, retention."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from supervisor.errors import Conflict, InvalidParams, NotFound

from tests.conftest import DaemonProcess, wait_until
from tests.pg import find_pg_bin, fresh_database, private_postgres
from tests.users import LocalUsers, as_user, multiuser, needs_root, shared_base, users  # noqa: F401

STORES = ["sqlite", "postgres"]


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str | None]:
    bin_dir = find_pg_bin()
    try:
        import psycopg  # noqa: F401
    except ImportError:
        bin_dir = None
    if bin_dir is None:
        yield None
        return
    with private_postgres(bin_dir) as server:
        yield server.url


@pytest.fixture(params=STORES)
def start(request: pytest.FixtureRequest, make_daemon: Callable[..., DaemonProcess],
          pg_server: str | None) -> Callable[..., DaemonProcess]:
    """Start a daemon on this test's store (the same store for every daemon the test starts)."""
    env: dict[str, str] = {}
    if request.param == "postgres":
        if pg_server is None:
            pytest.skip("no PostgreSQL (initdb and psycopg): `bash scripts/setup test` as root installs them")
        env = {"RUNSPACE_STORE": fresh_database(pg_server), "RUNSPACE_CGROUPS": "false"}

    def start_daemon(base: Path | None = None, **more: str) -> DaemonProcess:
        return make_daemon(base, **env, **more)

    return start_daemon


def _gone(d: DaemonProcess, job_id: str) -> bool:
    try:
        d.client.status(job_id)
    except NotFound:
        return True
    return False


# -- restart ---------------------------------------------------------------------------------


def test_restart_makes_a_new_job_with_the_same_type_and_params(start) -> None:
    d = start()
    first = d.wait(d.submit("echo", {"value": "a"}, priority=3)["id"])
    out = d.cli("restart", first["id"])
    assert out.returncode == 0, out.stderr
    again = d.wait(out.stdout.strip())
    assert again["id"] != first["id"] and again["restarted_from"] == first["id"]
    assert (again["job"], again["params"], again["priority"], again["state"]) == ("echo", first["params"], 3,
                                                                                  "succeeded")
    assert d.cli("restart", "0" * 20).returncode == 2  # unknown id: not found


# -- rm ----------------------------------------------------------------------------------------


def test_rm_removes_an_ended_job_its_log_and_result_and_refuses_a_running_one(start) -> None:
    d = start()
    running = d.submit("sleep", {"seconds": 30})["id"]
    with pytest.raises(Conflict, match="only ended jobs"):
        d.client.remove(running)
    out = d.cli("rm", running)
    assert out.returncode == 2 and "only ended jobs" in out.stderr
    ended = d.wait(d.submit("echo", {"value": "b"})["id"])
    log = d.log_dir / "jobs" / f"{ended['id']}.log"
    assert log.exists()
    out = d.cli("rm", ended["id"])
    assert out.returncode == 0, out.stderr
    assert _gone(d, ended["id"]) and not log.exists()
    assert d.cli("rm", ended["id"]).returncode == 2  # not found any more
    assert not d.client.status(running)["done"]


def test_a_batch_callback_is_removed_only_after_its_item(start) -> None:
    d = start()
    created = d.client.request("POST", "/v1/batches", json={"job": "square", "items": [{"n": 2}],
                                                            "callback": {"job": "collect"}}).json()
    item = created["job_ids"][0]

    def callback_ended() -> str | None:
        cbs = [j for j in d.client.list(job="collect")["items"] if j["done"]]
        return cbs[0]["id"] if cbs else None

    callback = wait_until(callback_ended, timeout=30, what="the callback to end")
    with pytest.raises(Conflict, match=item):
        d.client.remove(callback)
    d.client.remove(item)
    d.client.remove(callback)
    assert _gone(d, item) and _gone(d, callback)


# -- clean -------------------------------------------------------------------------------------


def test_clean_by_state_and_age(start) -> None:
    d = start()
    ok = d.wait(d.submit("echo", {"value": "c"})["id"])["id"]
    bad = d.wait(d.submit("fail", {"message": "no"})["id"])["id"]
    running = d.submit("sleep", {"seconds": 30})["id"]
    out = d.cli("clean", "--older-than", "1h")
    assert out.returncode == 0 and out.stdout.strip() == "removed 0 jobs", out.stderr
    out = d.cli("clean", "--state", "failed", "--state", "lost")
    assert out.stdout.strip() == "removed 1 jobs", out.stderr
    assert _gone(d, bad) and not _gone(d, ok)
    assert d.cli("clean").stdout.strip() == "removed 1 jobs"
    assert _gone(d, ok) and not d.client.status(running)["done"]
    bad_age = d.cli("clean", "--older-than", "soon")
    assert bad_age.returncode == 2 and "'soon' is not a duration" in bad_age.stderr
    assert d.cli("clean", "--state", "running").returncode == 2
    with pytest.raises(InvalidParams, match="ended"):
        d.client.request("DELETE", "/v1/jobs", params={"state": "running"})


def test_clean_over_http_takes_older_than_as_a_duration(start) -> None:
    """`DELETE /v1/jobs?older_than=` reads durations as the CLI writes them (7d, 1h30m), not only seconds."""
    d = start()
    ended = d.wait(d.submit("echo", {"value": "c"})["id"])["id"]
    for age in ("1h", "1h30m", "7d", "30 days", "3600"):
        resp = d.raw("DELETE", "/v1/jobs", params={"older_than": age})
        assert resp.status_code == 200 and resp.json() == {"removed": 0}, (age, resp.text)
    bad = d.raw("DELETE", "/v1/jobs", params={"older_than": "soon"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["loc"] == ["query", "older_than"], bad.text
    assert "'soon' is not a duration" in bad.json()["errors"][0]["msg"]
    assert d.raw("DELETE", "/v1/jobs", params={"older_than": "0s"}).json() == {"removed": 1}
    assert _gone(d, ended)


# -- retention --------------------------------------------------------------------------------


def test_retention_purges_at_start_and_periodically_with_logs_and_empty_batches(start, tmp_path: Path) -> None:
    d = start(tmp_path / "d")
    old = d.wait(d.submit("echo", {"value": "old"})["id"])["id"]
    created = d.client.submit_batch("square", [{"n": 1}, {"n": 2}])[1]
    for job_id in created["job_ids"]:
        d.wait(job_id)
    assert d.stop() == 0
    d = start(tmp_path / "d", RUNSPACE_KEEP_FINISHED="3s")  # at start: all of those ended > 3 s ago soon
    wait_until(lambda: _gone(d, old) and all(_gone(d, j) for j in created["job_ids"]), timeout=20,
               what="retention at start")
    assert not (d.log_dir / "jobs" / f"{old}.log").exists()

    def batch_gone() -> bool:
        try:
            d.client.batch(created["batch_id"])
        except NotFound:
            return True
        return False

    wait_until(batch_gone, timeout=30, what="the batch whose items are all gone to go")
    fresh = d.wait(d.submit("echo", {"value": "new"})["id"])["id"]
    queued_long = d.submit("sleep", {"seconds": 30})["id"]
    assert not _gone(d, fresh)  # kept for its 3 s
    wait_until(lambda: _gone(d, fresh), timeout=20, what="periodic retention")
    assert not _gone(d, queued_long)  # only ended jobs go


def test_keep_finished_that_is_no_duration_stops_the_daemon_in_one_line(make_daemon, tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path, "x", {"RUNSPACE_KEEP_FINISHED": "a while"})
    out = d.cli("daemon")
    assert out.returncode == 2 and "RUNSPACE_KEEP_FINISHED='a while'" in out.stderr and "Traceback" not in out.stderr


def test_a_version_3_sqlite_database_gains_the_new_columns_and_keeps_its_jobs(tmp_path: Path) -> None:
    import sqlite3

    from supervisor.models import JobRecord
    from supervisor.store.migrations import latest_version
    from supervisor.store.sqlite import SqliteStore

    path = tmp_path / "v3.db"
    store = SqliteStore(path)
    store.insert([JobRecord(id="0" * 20, job="echo", params={}, requestor="u", log_user="u")])
    store.close()
    db = sqlite3.connect(path)
    for column in ("after_ids", "restarted_from"):
        db.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
    db.execute("DROP TABLE queue_control")
    db.execute("PRAGMA user_version=3")
    db.commit()
    db.close()
    store = SqliteStore(path)
    rec = store.get("0" * 20)
    assert rec is not None and rec.after_ids == [] and rec.restarted_from is None
    assert store.queue_control() == {}
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == latest_version("sqlite")
    store.close()


# -- queue control ------------------------------------------------------------------------------


def _still_queued(d: DaemonProcess, job_id: str, seconds: float = 1.0) -> bool:
    return d.client.wait(job_id, timeout=seconds)["state"] == "queued"


def test_pause_and_resume_the_whole_queue_survive_a_restart(start, tmp_path: Path) -> None:
    d = start(tmp_path / "d")
    out = d.cli("pause")
    assert out.returncode == 0 and out.stdout.startswith("queue: paused"), out.stderr
    running = d.submit("sleep", {"seconds": 30})["id"]  # submitted while paused: waits
    assert _still_queued(d, running)
    assert d.client.queue()["paused"] is True
    assert d.stop() == 0
    d = start(tmp_path / "d")
    assert d.client.queue()["paused"] is True and _still_queued(d, running)
    assert d.cli("resume").returncode == 0
    wait_until(lambda: d.client.status(running)["state"] == "running", timeout=20, what="the job to start")
    d.cli("pause")  # running jobs go on
    assert d.client.wait(running, timeout=0.5)["state"] == "running"


def test_pause_one_type_leaves_the_others_running(start) -> None:
    d = start()
    assert d.cli("pause", "sleep").returncode == 0
    held = d.submit("sleep", {"seconds": 0.1})["id"]
    assert d.wait(d.submit("echo", {"value": "x"})["id"])["state"] == "succeeded"
    assert _still_queued(d, held)
    state = d.client.queue()
    assert state["paused"] is False and state["paused_types"] == ["sleep"] and state["queued"] == 1
    assert d.cli("resume", "sleep").returncode == 0
    assert d.wait(held)["state"] == "succeeded"
    not_paused = d.cli("resume", "sleep")
    assert not_paused.returncode == 2 and "not paused" in not_paused.stderr
    typo = d.cli("pause", "slep")
    assert typo.returncode == 2 and "no job type 'slep'" in typo.stderr
    resp = d.raw("PUT", "/v1/queue", json={"paused_types": ["echo", "slep"], "parallel_types": {"slep": 1}})
    assert resp.status_code == 400 and [e["loc"] for e in resp.json()["errors"]] == \
        [["paused_types", 1], ["parallel_types", "slep"]], resp.text
    resp = d.raw("PATCH", "/v1/queue", json={"pause_types": ["slep"], "parallel_types": {"slep": 1}})
    assert [e["loc"] for e in resp.json()["errors"]] == [["pause_types", 0], ["parallel_types", "slep"]], resp.text
    resp = d.raw("PATCH", "/v1/queue", json={"resume_types": ["sleep"]})
    assert [e["loc"] for e in resp.json()["errors"]] == [["resume_types", 0]], resp.text


def test_parallel_changes_global_and_per_type_concurrency_at_run_time(start) -> None:
    d = start()
    assert d.cli("parallel", "1").returncode == 0
    first, second = (d.submit("sleep", {"seconds": 30})["id"] for _ in range(2))
    wait_until(lambda: d.client.status(first)["state"] == "running", timeout=20, what="the first job to start")
    assert _still_queued(d, second)
    out = d.cli("parallel", "2", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["max_concurrency"] == 2
    wait_until(lambda: d.client.status(second)["state"] == "running", timeout=20, what="the second job to start")
    assert d.cli("parallel", "1", "--job", "sleep").returncode == 0
    third = d.submit("sleep", {"seconds": 30})["id"]
    assert d.cli("parallel", "3").returncode == 0
    assert _still_queued(d, third)  # two of its type run, one allowed
    assert d.client.queue()["parallel_types"] == {"sleep": 1}
    assert d.cli("parallel", "0").returncode == 2
    with pytest.raises(InvalidParams, match="parallel"):
        d.client.put_queue({"parallel": "many"})


def test_queue_changes_made_at_once_all_hold(start) -> None:
    """`runspace pause`, `resume` and `parallel` by several admins at the same instant: each
    changes only what it names. They used to read the whole settings, change one field and write
    them all back, so one admin's change could silently undo another's made at the same time."""
    d = start()
    paused = ["echo", "die", "fail", "hang", "steps", "flaky"]
    limits = {"whereami": 2, "sleep": 3, "keyed": 4, "record_order": 5, "user_note": 6, "memory_hog": 7}

    def at_once(*commands: tuple[str, ...]) -> None:
        with ThreadPoolExecutor(len(commands)) as pool:
            for out in pool.map(lambda args: d.cli(*args), commands):
                assert out.returncode == 0, out.stderr

    for _ in range(2):  # a lost update needs two changes to meet: give them two chances
        at_once(("pause",), ("parallel", "5"), *(("pause", name) for name in paused),
                *(("parallel", str(n), "--job", name) for name, n in limits.items()))
        state = d.client.queue()
        assert state["paused"] is True and state["parallel"] == 5
        assert sorted(state["paused_types"]) == sorted(paused) and state["parallel_types"] == limits
        at_once(("resume",), *(("resume", name) for name in paused))
        state = d.client.queue()
        assert state["paused"] is False and state["paused_types"] == [] and state["parallel_types"] == limits


def test_put_sets_the_fields_it_names_and_keeps_the_others(start) -> None:
    """A PUT of one field (several admins' scripts at once) no longer resets the fields it does
    not name; a whole document still replaces them all."""
    d = start()
    bodies = [{"paused": True}, {"parallel": 4}, {"paused_types": ["sleep"]}, {"parallel_types": {"echo": 2}}]
    ready = threading.Barrier(len(bodies))

    def put(body: dict[str, Any]) -> dict[str, Any]:
        ready.wait(10)
        return d.client.put_queue(body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        list(pool.map(put, bodies))
    expected = {"paused": True, "parallel": 4, "paused_types": ["sleep"], "parallel_types": {"echo": 2}}
    assert {k: v for k, v in d.client.queue().items() if k in expected} == expected
    whole = {"paused": False, "parallel": None, "paused_types": [], "parallel_types": {}}
    assert {k: v for k, v in d.client.put_queue(whole).items() if k in whole} == whole
    with pytest.raises(InvalidParams, match="unknown job type"):
        d.client.change_queue({"pause_types": ["slep"]})


@needs_root
def test_only_admins_change_the_queue_everyone_reads_it(users: LocalUsers, multiuser) -> None:
    d = multiuser(RUNSPACE_ALLOWED_USERS=users.alice.name)
    denied = as_user(users.alice, d, lambda c: c.put_queue({"paused": True}))
    assert denied["error"] == "NotAllowed" and "only admins" in denied["detail"]
    denied = as_user(users.alice, d, lambda c: c.change_queue({"pause_types": ["echo"]}))
    assert denied["error"] == "NotAllowed" and "only admins" in denied["detail"]
    seen = as_user(users.alice, d, lambda c: c.queue())
    assert seen["value"]["paused"] is False and d.client.queue()["paused"] is False


# -- after and not_before -------------------------------------------------------------------


def _epoch(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def test_after_starts_a_job_once_its_dependency_succeeded(start) -> None:
    d = start()
    first = d.submit("sleep", {"seconds": 3})["id"]
    then = d.submit("echo", {"value": "then"}, after=[first])["id"]
    status = d.client.status(then)
    assert status["state"] == "queued" and status["after"] == [first]
    out = d.cli("submit", "echo", "value=too", "--after", first, "--after", then, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["after"] == [first, then], out.stderr
    done = d.wait(then)
    assert done["state"] == "succeeded"
    assert _epoch(done["started_at"]) >= _epoch(d.client.status(first)["finished_at"])


def test_a_dependency_that_fails_cancels_its_dependents_in_a_chain(start) -> None:
    d = start()
    first = d.submit("sleep", {"seconds": 30})["id"]
    second = d.submit("echo", {"value": "2"}, after=[first])["id"]
    third = d.submit("echo", {"value": "3"}, after=[second])["id"]
    items = d.client.submit_batch("square", [{"n": 1}, {"n": 2}], after=[first])[1]["job_ids"]
    assert _still_queued(d, second, 0.5)
    d.client.cancel(first)
    for job_id in (second, third, *items):
        status = d.wait(job_id)
        assert (status["state"], status["reason"], status["error"]["type"]) == \
            ("cancelled", "dependency_failed", "DependencyFailed"), status
    assert first in d.client.status(second)["error"]["message"]
    late = d.submit("echo", {"value": "late"}, after=[first])  # its dependency ended already
    assert d.wait(late["id"])["reason"] == "dependency_failed"


def test_after_names_jobs_that_exist(start) -> None:
    d = start()
    with pytest.raises(InvalidParams, match="does not exist") as err:
        d.submit("echo", {}, after=["0" * 20])
    assert err.value.errors[0].loc == ["after", 0]  # as a malformed id's: the body's fields, no "body" prefix
    malformed = d.raw("POST", "/v1/jobs", json={"job": "echo", "params": {}, "after": ["xyz"]})
    assert [e["loc"] for e in malformed.json()["errors"]] == [["after", 0]], malformed.text
    out = d.cli("submit", "echo", "--after", "nope")
    assert out.returncode == 2 and "not a job id" in out.stderr
    with pytest.raises(InvalidParams):
        d.client.submit_batch("square", [{"n": 1}], after=["0" * 20])


def test_not_before_delays_the_start_and_is_shown(start) -> None:
    d = start()
    out = d.cli("submit", "echo", "value=later", "--in", "2s", "--json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["state"] == "queued" and status["not_before"] is not None
    done = d.wait(status["id"])
    assert done["state"] == "succeeded" and done["not_before"] is None
    assert _epoch(done["started_at"]) >= _epoch(status["not_before"]) - 0.01
    at = d.cli("submit", "echo", "--at", "23:59:59", "--json")
    assert at.returncode == 0 and json.loads(at.stdout)["state"] == "queued", at.stderr
    both = d.cli("submit", "echo", "--in", "1m", "--at", "14:30")
    assert both.returncode == 2 and "not both" in both.stderr
    bad = d.cli("submit", "echo", "--at", "teatime")
    assert bad.returncode == 2 and "'teatime'" in bad.stderr and "Traceback" not in bad.stderr
    with pytest.raises(InvalidParams, match="not_before"):
        d.submit("echo", {}, not_before="tomorrow")
    with pytest.raises(InvalidParams, match="not_before"):
        d.submit("echo", {}, not_before="2030-01-01T10:00:00")  # no zone: ambiguous


def test_a_not_before_no_status_can_show_is_refused(start) -> None:
    """9999-12-31T23:59:59-14:00 is year 10000 in UTC: the job was queued, then its status and
    every list showing it answered 500, so one user's submission broke every admin's
    `runspace list` (and the dashboard's jobs page) for as long as the job stayed queued."""
    d = start()
    assert d.cli("pause").returncode == 0
    for when in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"):
        with pytest.raises(InvalidParams, match="not_before") as refused:
            d.client.submit("echo", {"value": 1}, not_before=when)
        assert "between the years 1 and 9999" in str(refused.value.errors)
        with pytest.raises(InvalidParams, match="not_before"):
            d.client.submit_batch("echo", [{"value": 1}], not_before=when)
    for option in (["--in", "100000000d"], ["--at", "9999-12-31T23:59:59-14:00"]):  # the CLI's own words
        typo = d.cli("submit", "echo", "value=1", *option)
        assert typo.returncode == 2 and "9999" in typo.stderr and "Traceback" not in typo.stderr, typo.stderr
    edge = d.submit("echo", {"value": 1}, not_before="9999-12-31T23:59:59Z")
    assert edge["not_before"] == "9999-12-31T23:59:59.000Z"
    out = d.cli("list")
    assert out.returncode == 0 and edge["id"] in out.stdout, out.stderr


def test_after_and_not_before_survive_a_restart(start, tmp_path: Path) -> None:
    d = start(tmp_path / "d")
    first = d.submit("sleep", {"seconds": 30})["id"]
    waiting = d.submit("echo", {"value": "w"}, after=[first])["id"]
    delayed = d.submit("echo", {"value": "d"}, not_before="2099-01-01T00:00:00Z")["id"]
    wait_until(lambda: d.client.status(first)["state"] == "running", timeout=20, what="the first job to start")
    assert d.stop() == 0
    d = start(tmp_path / "d")
    assert d.client.status(waiting)["after"] == [first] and _still_queued(d, waiting)
    assert d.client.status(delayed)["not_before"].startswith("2099-01-01") and _still_queued(d, delayed, 0.2)
    d.client.cancel(first)
    assert d.wait(waiting)["reason"] == "dependency_failed"


# -- why a job waits, and the list table ----------------------------------------------------


def test_a_queued_job_says_why_it_waits_and_where_it_stands(start, tmp_path: Path) -> None:
    d = start()
    record = str(tmp_path / "keyed.log")
    holder = d.submit("keyed", {"case": "alice", "record": record, "seconds": 30})["id"]
    wait_until(lambda: d.client.status(holder)["state"] == "running", timeout=20, what="the key holder to start")
    keyed = d.client.status(d.submit("keyed", {"case": "alice", "record": record})["id"])
    assert keyed["waiting_for"] == f"key case=alice held by {holder}"
    first = d.submit("sleep", {"seconds": 30})["id"]
    wait_until(lambda: d.client.status(first)["state"] == "running", timeout=20, what="the sleep to start")
    d.cli("parallel", "1", "--job", "sleep")
    typed = d.client.status(d.submit("sleep", {"seconds": 30})["id"])
    assert typed["waiting_for"] == "type concurrency 1/1"
    after = d.client.status(d.submit("echo", {"value": "a"}, after=[first])["id"])
    assert after["waiting_for"] == f"after {first}"
    later = d.client.status(d.submit("echo", {"value": "l"}, not_before="2099-01-01T00:00:00Z")["id"])
    assert later["waiting_for"] == "not before 2099-01-01T00:00:00.000Z"
    d.cli("parallel", "2")  # two run: keyed holder and the first sleep
    slot = d.client.status(d.submit("echo", {"value": "s"})["id"])
    assert slot["waiting_for"] == "slot"
    positions = [d.client.status(j["id"])["queue_position"] for j in reversed(d.client.list(state="queued")["items"])]
    assert positions == list(range(1, len(positions) + 1)) and len(positions) == 5
    d.cli("pause", "echo")
    assert d.client.status(slot["id"])["waiting_for"] == "paused"
    shown = d.cli("status", slot["id"])
    assert "waiting_for: paused" in shown.stdout and "queue_position: 5" in shown.stdout
    assert d.client.status(holder)["waiting_for"] is None  # running: no reason to give


def test_list_is_a_table_with_progress_started_duration_and_a_summary(start) -> None:
    d = start()
    done = d.wait(d.submit("echo", {"value": "hello"})["id"])
    running = d.submit("sleep", {"seconds": 30})["id"]
    wait_until(lambda: d.client.status(running)["state"] == "running", timeout=20, what="the sleep to start")
    out = d.cli("list")
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert header.split() == ["ID", "TYPE", "STATE", "PROGRESS", "STARTED", "DURATION", "LABEL", "/", "PARAMS"]
    by_id = {row.split()[0]: row for row in rows}
    assert "succeeded" in by_id[done["id"]] and "value=hello" in by_id[done["id"]]
    assert "running" in by_id[running] and "seconds=30" in by_id[running]
    assert by_id[running].split()[3].count(":") == 2  # started HH:MM:SS, then a duration m:ss


@pytest.mark.parametrize("made_before_incremental_vacuum", [False, True])
def test_a_purged_sqlite_store_gives_its_disk_space_back(tmp_path: Path, made_before_incremental_vacuum: bool) -> None:
    from supervisor.models import JobRecord, JobState
    from supervisor.store.sqlite import SqliteStore

    path = tmp_path / "jobs.db"
    store = SqliteStore(path)
    if made_before_incremental_vacuum:  # as runspace 0.1 made it
        store._db.execute("PRAGMA auto_vacuum=NONE")
        store._db.execute("VACUUM")

    def size() -> int:
        return sum(p.stat().st_size for p in tmp_path.iterdir())

    empty = size()
    records = [JobRecord(id=f"{i:020x}", job="echo", params={"blob": "x" * 2000}, requestor="u", log_user="u",
                         state=JobState.SUCCEEDED, finished_at=1.0) for i in range(3000)]
    store.insert(records)
    assert size() > empty + 6_000_000
    store.delete_jobs([r.id for r in records])
    store.compact()
    assert size() < empty + 200_000 and store._db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    store.close()
