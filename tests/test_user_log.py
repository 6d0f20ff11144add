"""The unified per-user log: lifecycle events and ctx.log lines, whole lines only, safe names, access."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from supervisor.api.users import line_filter
from supervisor.auth import Caller
from supervisor.models import JobRecord
from supervisor.store.sqlite import SqliteStore
from tests.conftest import ROOT, DaemonProcess, wait_until

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?P<id>[0-9a-f]{20}) (?P<job>\w+) (?P<text>.*)$")


def raw(daemon: DaemonProcess, method: str, path: str, **kwargs) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)), base_url="http://x") as http:
        return http.request(method, path, **kwargs)


def parsed(text: str) -> list[re.Match[str]]:
    matches = [LINE.match(line) for line in text.splitlines()]
    torn = [line for line, m in zip(text.splitlines(), matches, strict=True) if m is None]
    assert not torn, f"lines not in the `time id job text` format: {torn[:5]}"
    return matches  # type: ignore[return-value]


def user_log(daemon: DaemonProcess, user: str) -> str:
    text, _ = daemon.client.user_log(user)
    return text


def test_concurrent_jobs_of_one_user_land_whole_and_in_order(daemon: DaemonProcess) -> None:
    texts = [f"note-{n}-" + "x" * 300 for n in range(4)]
    ids = [daemon.submit("chatty", {"user": "carol", "text": text})["id"] for text in texts]
    for job_id in ids:
        assert daemon.wait(job_id)["state"] == "succeeded"
    lines = parsed(user_log(daemon, "carol"))
    for job_id, text in zip(ids, texts, strict=True):
        own = [m for m in lines if m["id"] == job_id]
        assert all(m["job"] == "chatty" for m in own)
        notes = [m["text"] for m in own if m["text"].startswith(text)]
        assert notes == [f"{text} {i}" for i in range(50)]  # all, in order, untorn
        assert own[0]["text"] == "queued" and own[1]["text"].startswith("started")
        assert own[-1]["text"] == "succeeded"
    switches = sum(1 for a, b in zip(lines, lines[1:]) if a["id"] != b["id"])
    assert switches > 8, "the jobs did not run concurrently, so the test proved nothing"
    # the same lines are in the file the contract names
    assert (daemon.log_dir / "users" / "carol.log").read_text() == user_log(daemon, "carol")


def test_lifecycle_events_progress_errors_and_kills(daemon: DaemonProcess) -> None:
    failed = daemon.submit("fail", {"message": "nope"})["id"]
    slow = daemon.submit("too_slow", {})["id"]
    stepped = daemon.submit("steps", {"steps": 2, "delay": 0.05})["id"]
    sleeping = daemon.submit("sleep", {"seconds": 60})["id"]
    wait_until(lambda: daemon.client.status(sleeping)["state"] == "running", what="sleep to start")
    daemon.client.cancel(sleeping)
    for job_id in (failed, slow, stepped, sleeping):
        daemon.wait(job_id)
    by_job: dict[str, list[str]] = {}
    for m in parsed(user_log(daemon, "root")):
        by_job.setdefault(m["id"], []).append(m["text"])
    # "started" is written by the job process itself, so it precedes the job's first line
    assert by_job[failed][:3] == ["queued", by_job[failed][1], "about to fail"], by_job[failed]
    assert re.fullmatch(r"started \(pid \d+, attempt 1\)", by_job[failed][1]), by_job[failed]
    assert by_job[failed][-1] == "failed: ValueError: nope"
    assert by_job[slow][-1].startswith("timed_out: Timeout: too_slow exceeded its timeout of 1 s (ended by SIG")
    assert "progress 1/2: step 1" in by_job[stepped] and by_job[stepped][-1] == "succeeded"
    assert by_job[sleeping][-1].startswith("cancelled") and "ended by SIG" in by_job[sleeping][-1]


def test_unsafe_log_user_is_rejected_with_400_naming_the_field(daemon: DaemonProcess) -> None:
    for bad in ("../etc", ".hidden", "a/b", "", "-rf"):
        resp = raw(daemon, "POST", "/v1/jobs", json={"job": "user_note", "params": {"user": bad}})
        assert resp.status_code == 400, bad
        assert ["params", "user"] in [e["loc"] for e in resp.json()["errors"]]
    assert daemon.client.list(limit=100)["items"] == []
    assert not list((daemon.log_dir / "users").glob("*etc*"))
    resp = raw(daemon, "GET", "/v1/users/%2E%2E/log")  # '..' once decoded
    assert resp.status_code == 400 and resp.json()["errors"][0]["loc"] == ["path", "user"]
    assert raw(daemon, "GET", "/v1/users/.hidden/log").status_code == 400


def test_follow_user_log_streams_new_lines(daemon: DaemonProcess) -> None:
    received: list[str] = []
    stop = threading.Event()

    def follow() -> None:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)), base_url="http://x",
                          timeout=httpx.Timeout(30, read=None)) as http:
            with http.stream("GET", "/v1/users/erin/log", params={"follow": "true"}) as resp:
                for chunk in resp.iter_text():
                    received.append(chunk)
                    if stop.is_set() or "succeeded" in "".join(received):
                        return

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    job_id = daemon.submit("user_note", {"user": "erin", "text": "live"})["id"]
    follower.join(timeout=30)
    stop.set()
    assert not follower.is_alive()
    texts = [m["text"] for m in parsed("".join(received))]
    assert texts[0] == "queued" and "live 19" in texts and texts[-1] == "succeeded"
    assert daemon.wait(job_id)["state"] == "succeeded"
    assert raw(daemon, "GET", "/healthz").status_code == 200


def test_rotation_by_settings_keeps_every_line_whole(make_daemon) -> None:
    daemon = make_daemon(RUNSPACE_LOG_ROTATION="4 KB", RUNSPACE_LOG_RETENTION="1 day")
    ids = [daemon.submit("user_note", {"user": "dave", "text": f"r{n}"})["id"] for n in range(8)]
    for job_id in ids:
        daemon.wait(job_id)
    files = sorted((daemon.log_dir / "users").glob("dave*.log"))
    assert len(files) >= 2, files  # rotated at least once
    lines = parsed("".join(f.read_text() for f in files))
    for n, job_id in enumerate(ids):
        notes = sorted(int(m["text"].split()[1]) for m in lines if m["id"] == job_id and m["text"].startswith("r"))
        assert notes == list(range(20)), f"job {n} lost lines across rotation"


def test_cli_user_log_prints_the_log_and_defaults_to_the_caller(daemon: DaemonProcess) -> None:
    job_id = daemon.submit("user_note", {"user": "frank", "text": "cli"}, wait=20)["id"]
    out = daemon.cli("user-log", "frank")
    assert out.returncode == 0, out.stderr
    assert f"{job_id} user_note cli 19" in out.stdout
    daemon.submit("echo", {"value": 1}, wait=20)
    mine = daemon.cli("user-log")  # the caller (root in this suite)
    assert mine.returncode == 0 and " echo succeeded" in mine.stdout
    traversal = daemon.cli("user-log", "../etc")
    assert traversal.returncode == 2 and "log user '../etc' is not a safe name" in traversal.stderr


def test_cli_user_log_follow_json_prints_one_object_per_line(daemon: DaemonProcess) -> None:
    follower = subprocess.Popen([sys.executable, "-m", "supervisor", "user-log", "grace", "-f", "--json"],
                                env=daemon.env, stdout=subprocess.PIPE, text=True)
    seen: list[dict] = []
    reader = threading.Thread(target=lambda: seen.extend(json.loads(line) for line in follower.stdout or []),
                              daemon=True)
    reader.start()
    try:
        job_id = daemon.submit("user_note", {"user": "grace", "text": "json"})["id"]
        wait_until(lambda: seen and " succeeded" in seen[-1]["line"], timeout=30, what="the job's last line")
    finally:
        follower.terminate()
        follower.wait(timeout=10)
    reader.join(timeout=10)
    assert all(obj["user"] == "grace" and "\n" not in obj["line"] for obj in seen)
    assert any(f"{job_id} user_note json 19" in obj["line"] for obj in seen)  # user_note's last ctx.log line


def test_non_admins_see_only_lines_of_their_own_jobs(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    mine = JobRecord(id="0" * 19 + "1", job="user_note", params={}, requestor="bob", log_user="alice")
    theirs = JobRecord(id="0" * 19 + "2", job="user_note", params={}, requestor="carl", log_user="alice")
    store.insert([mine, theirs])
    chunk = (f"2024-01-01T00:00:00.000Z {mine.id} user_note hello\n"
             f"2024-01-01T00:00:00.000Z {theirs.id} user_note secret\n").encode()
    bob, alice, admin = Caller(1001, "bob", False), Caller(1002, "alice", False), Caller(0, "root", True)
    assert line_filter(store, bob, "alice")(chunk) == chunk.splitlines(keepends=True)[0]
    assert line_filter(store, alice, "alice")(chunk) == chunk  # the log named after you is yours
    assert line_filter(store, admin, "alice")(chunk) == chunk
    store.close()


def test_a_rotation_or_retention_loguru_cannot_parse_is_refused_at_start(tmp_path: Path) -> None:
    # Parsed only at a user's first log line, it used to fail submissions after their jobs were stored.
    for name in ("RUNSPACE_LOG_RETENTION", "RUNSPACE_LOG_ROTATION"):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RUNSPACE_SOCKET": str(tmp_path / "rs.sock"),
               "RUNSPACE_STATE_DIR": str(tmp_path / name), name: "2 fortnights"}
        out = subprocess.run([sys.executable, "-m", "supervisor", "daemon"], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 2, out.stderr
        assert f"{name}='2 fortnights': loguru cannot use it" in out.stderr and "Traceback" not in out.stderr
        assert not (tmp_path / "rs.sock").exists()
