"""Batches: whole-batch validation, item jobs, counts, callbacks exactly once (also across a restart)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from supervisor.api.openapi import BatchCreated, BatchStatus
from tests.conftest import DaemonProcess, marked_processes, wait_until


def raw(daemon: DaemonProcess, method: str, path: str, **kwargs) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)), base_url="http://x", timeout=60) as http:
        return http.request(method, path, **kwargs)


def callbacks(daemon: DaemonProcess) -> list[dict]:
    path = daemon.base / "demo" / "callbacks.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def batch_done(daemon: DaemonProcess, batch_id: str) -> dict:
    def done() -> dict | None:
        summary = daemon.client.batch(batch_id, limit=1000)
        callbacks_queued = sum(summary["callbacks"].values()) if summary["callbacks"] is not None else summary["size"]
        return summary if summary["done"] and callbacks_queued >= summary["size"] else None

    return wait_until(done, timeout=60, what=f"batch {batch_id} to end")


def test_batch_of_three_with_callback_runs_three_callbacks_with_payloads(daemon: DaemonProcess) -> None:
    items = [{"n": 2}, {"n": 3, "fail": True}, {"n": 4}]
    resp = raw(daemon, "POST", "/v1/batches",
               json={"job": "square", "items": items, "callback": {"job": "collect"}, "batch_id": "squares-1"})
    assert resp.status_code == 202, resp.text
    created = resp.json()
    assert created["batch_id"] == "squares-1" and len(created["job_ids"]) == 3
    assert resp.headers["location"] == "/v1/batches/squares-1"

    summary = batch_done(daemon, "squares-1")
    assert summary["counts"]["succeeded"] == 2 and summary["counts"]["failed"] == 1
    assert [item["id"] for item in summary["items"]] == created["job_ids"]  # submission order
    wait_until(lambda: summary_callbacks_ended(daemon), timeout=30, what="callbacks to end")

    runs = {run["job_id"]: run for run in callbacks(daemon)}
    assert len(callbacks(daemon)) == 3 and set(runs) == set(created["job_ids"])
    first, second, third = (runs[job_id] for job_id in created["job_ids"])
    assert first == {"success": True, "errors": [], "original_input": {"n": 2, "fail": False},
                     "output": {"square": 4}, "job_id": created["job_ids"][0], "batch_id": "squares-1"}
    assert second["success"] is False and second["output"] is None
    assert second["errors"] == [{"type": "ValueError", "message": "cannot square 3"}]
    assert third["output"] == {"square": 16} and third["original_input"]["n"] == 4


def summary_callbacks_ended(daemon: DaemonProcess) -> bool:
    summary = daemon.client.batch("squares-1", limit=0)
    return summary["callbacks"].get("succeeded", 0) == 3


def test_batch_with_one_invalid_item_queues_nothing(daemon: DaemonProcess) -> None:
    items = [{"n": 1}, {"n": "lots"}, {"n": 2}, {"n": -1}]
    resp = raw(daemon, "POST", "/v1/batches", json={"job": "square", "items": items, "batch_id": "bad-1"})
    assert resp.status_code == 400
    problem = resp.json()
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert ["items", 1, "n"] in [e["loc"] for e in problem["errors"]]
    assert ["items", 3, "n"] in [e["loc"] for e in problem["errors"]]
    assert "items 1, 3" in problem["detail"]
    assert daemon.client.list(limit=1000)["items"] == []
    assert raw(daemon, "GET", "/v1/batches/bad-1").status_code == 404
    mixed = raw(daemon, "POST", "/v1/batches", json={"job": "square", "items": [{"n": "x"}, 5, {"n": 2}]}).json()
    assert "items 0, 1" in mixed["detail"]  # an item that is no object does not hide the others
    assert {"loc": ["items", 1], "msg": "must be an object of params (got 5)"} in mixed["errors"]


def test_unknown_job_or_unfit_callback_is_rejected(daemon: DaemonProcess) -> None:
    assert raw(daemon, "POST", "/v1/batches", json={"job": "nope", "items": [{}]}).status_code == 404
    unfit = raw(daemon, "POST", "/v1/batches", json={"job": "square", "items": [{"n": 1}], "callback": {"job": "sleep"}})
    assert unfit.status_code == 400 and unfit.json()["errors"][0]["loc"] == ["callback", "job"]
    assert raw(daemon, "POST", "/v1/batches", json={"job": "square", "items": []}).status_code == 400
    assert daemon.client.list(limit=1000)["items"] == []


def test_resubmitted_batch_returns_the_original_and_other_body_conflicts(daemon: DaemonProcess) -> None:
    body = {"job": "square", "items": [{"n": 5}, {"n": 6}], "batch_id": "again"}
    first = raw(daemon, "POST", "/v1/batches", json=body)
    second = raw(daemon, "POST", "/v1/batches", json=body)
    assert first.status_code == 202 and second.status_code == 200
    assert first.json()["job_ids"] == second.json()["job_ids"]
    BatchCreated.model_validate(second.json())  # the shapes /openapi.json documents are the real ones
    BatchStatus.model_validate(raw(daemon, "GET", "/v1/batches/again").json())
    other = raw(daemon, "POST", "/v1/batches", json={**body, "items": [{"n": 7}]})
    assert other.status_code == 409
    assert len(daemon.client.list(limit=1000)["items"]) == 2


def test_a_batch_and_jobs_tagged_by_post_jobs_never_share_an_id(daemon: DaemonProcess) -> None:
    # A batch's size, counts and `done` are its own items; a job tagged later must not join them.
    raw(daemon, "POST", "/v1/batches", json={"job": "square", "items": [{"n": 2}], "batch_id": "fixed"})
    joined = raw(daemon, "POST", "/v1/jobs", json={"job": "square", "params": {"n": 3}, "batch_id": "fixed"})
    assert joined.status_code == 409 and "takes no more items" in joined.json()["detail"]
    tagged = raw(daemon, "POST", "/v1/jobs", json={"job": "square", "params": {"n": 4}, "batch_id": "adhoc"})
    assert tagged.status_code == 202
    as_batch = raw(daemon, "POST", "/v1/batches", json={"job": "square", "items": [{"n": 5}], "batch_id": "adhoc"})
    assert as_batch.status_code == 409 and "already tags 1 of your jobs" in as_batch.json()["detail"]
    missing = raw(daemon, "GET", "/v1/batches/adhoc")
    assert missing.status_code == 404 and "GET /v1/jobs?batch_id=adhoc" in missing.json()["detail"]
    assert [j["id"] for j in daemon.client.list(batch_id="adhoc")["items"]] == [tagged.json()["id"]]
    assert batch_done(daemon, "fixed")["size"] == 1


def test_generated_batch_id_items_page_and_jobs_filter(daemon: DaemonProcess) -> None:
    _, created = daemon.client.submit_batch("square", [{"n": n} for n in range(5)])
    batch_id = created["batch_id"]
    page = daemon.client.batch(batch_id, limit=2)
    ids = [item["id"] for item in page["items"]]
    while page["next_cursor"]:
        page = daemon.client.batch(batch_id, limit=2, cursor=page["next_cursor"])
        ids += [item["id"] for item in page["items"]]
    assert ids == created["job_ids"]
    listed = daemon.client.list(batch_id=batch_id, limit=100)["items"]
    assert {item["id"] for item in listed} == set(ids)
    assert all(item["batch_id"] == batch_id for item in listed)
    assert batch_done(daemon, batch_id)["counts"]["succeeded"] == 5


def test_callbacks_are_queued_exactly_once_across_a_restart(make_daemon) -> None:
    daemon = make_daemon()
    _, created = daemon.client.submit_batch("square", [{"n": n} for n in range(6)], callback="collect",
                                            batch_id="restart-1")
    ids = created["job_ids"]
    wait_until(lambda: daemon.client.batch("restart-1", limit=0)["callbacks"].get("succeeded") == 6, timeout=60,
               what="six callbacks to succeed")
    daemon.kill9()
    # Simulate a crash between two items' final commits and their callbacks' inserts.
    db = sqlite3.connect(daemon.state_dir / "runspace.db")
    with db:
        db.execute("DELETE FROM jobs WHERE idempotency_key IN (?, ?)", [f"callback/{ids[0]}", f"callback/{ids[1]}"])
    db.close()
    daemon.start()
    wait_until(lambda: daemon.client.batch("restart-1", limit=0)["callbacks"].get("succeeded") == 6, timeout=60,
               what="the two missed callbacks to run")
    daemon.stop()
    daemon.start()  # a second restart finds nothing missing
    assert len(daemon.client.list(job="collect", limit=1000)["items"]) == 6
    per_item: dict[str, int] = {}
    for run in callbacks(daemon):
        per_item[run["job_id"]] = per_item.get(run["job_id"], 0) + 1
    # the two erased callbacks ran once before the "crash" and once after; the rest exactly once
    assert per_item == {**{job_id: 1 for job_id in ids}, ids[0]: 2, ids[1]: 2}


def test_ten_thousand_items_in_one_request_stay_fast_and_do_not_block(make_daemon) -> None:
    # One job slot, so the 10,000 items wait in the queue instead of running during the test.
    daemon = make_daemon(RUNSPACE_MAX_CONCURRENCY="1")
    items = [{"seconds": 30 + n % 7} for n in range(10_000)]
    health_latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)), base_url="http://x") as http:
            while not stop.is_set():
                t0 = time.monotonic()
                http.get("/healthz")
                health_latencies.append(time.monotonic() - t0)
                time.sleep(0.01)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        started = time.monotonic()
        resp = raw(daemon, "POST", "/v1/batches", json={"job": "sleep", "items": items, "batch_id": "big"})
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        prober.join()
    assert resp.status_code == 202 and len(resp.json()["job_ids"]) == 10_000
    print(f"\n10,000-item batch: {elapsed:.3f} s round trip; /healthz during it: "
          f"{len(health_latencies)} answers, max {max(health_latencies):.3f} s")
    assert elapsed < 5.0  # generous for a noisy 2-core machine; see the printed measurement
    assert len(health_latencies) >= 3 and max(health_latencies) < 2.0  # others are still served
    summary = daemon.client.batch("big", limit=0)
    assert summary["size"] == 10_000 and sum(summary["counts"].values()) == 10_000
    _stop_without_running_the_rest(daemon)


def _stop_without_running_the_rest(daemon: DaemonProcess) -> None:
    """Cancelling 10,000 jobs one by one would take long: stop the daemon, end the one running job."""
    daemon.kill9()
    db = sqlite3.connect(daemon.state_dir / "runspace.db")
    pids = [pid for (pid,) in db.execute("SELECT pid FROM jobs WHERE state = 'running' AND pid IS NOT NULL")]
    db.close()
    for proc in marked_processes(daemon.marker):
        if proc.pid in pids:
            proc.kill()


def test_cli_batch_follows_to_the_end(daemon: DaemonProcess) -> None:
    items = daemon.base / "items.jsonl"
    items.write_text('{"n": 1}\n\n{"n": 2}\n{"n": 3, "fail": true}\n')
    out = daemon.cli("batch", "square", "--items", str(items), "--callback", "collect", "--batch-id", "cli-1")
    assert out.returncode == 1, out.stderr  # one item failed
    assert "batch cli-1: 2 succeeded, 1 failed" in out.stdout
    assert "batch cli-1" in out.stderr and "100.0% (3/3)" in out.stderr  # plain progress lines
    as_json = daemon.cli("batch", "square", "--items", str(items), "--batch-id", "cli-2", "--json")
    summary = json.loads(as_json.stdout)
    assert summary["done"] and len(summary["job_ids"]) == summary["size"] == 3 and "items" not in summary
    bad = daemon.base / "bad.jsonl"
    bad.write_text('{"n": 1}\n[1]\n')
    out = daemon.cli("batch", "square", "--items", str(bad))
    assert out.returncode == 2 and "line 2" in out.stderr
