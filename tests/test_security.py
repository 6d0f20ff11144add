"""Identity and multi-user security: who may call, who sees what, whom jobs run as, what is trusted.

The multi-user tests need root: they create throw-away users (tests/users.py) and act as
them from forked, setuid'd children that talk to the daemon's socket like any other client.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from supervisor.client import Client
from supervisor.errors import RunspaceError
from supervisor.runner.shim import native_shim
from tests.conftest import ROOT, TEST_JOBS, TEST_MARKER, DaemonProcess, wait_until
from tests.users import LocalUsers, as_user, multiuser, needs_root, shared_base, users, value  # noqa: F401


# -- identity and authorization --------------------------------------------------------


@needs_root
def test_each_user_sees_only_their_own_jobs(users: LocalUsers, multiuser) -> None:
    d = multiuser(RUNSPACE_ALLOWED_USERS=f"{users.alice.name},{users.bob.name}")
    a_job = value(as_user(users.alice, d, lambda c: c.submit("echo", {"value": "a"}, wait=30)[1]))
    b_job = value(as_user(users.bob, d, lambda c: c.submit("echo", {"value": "b"}, wait=30)[1]))
    assert a_job["requestor"] == users.alice.name and b_job["requestor"] == users.bob.name

    seen_by_alice = value(as_user(users.alice, d, lambda c: [j["id"] for j in c.list(limit=100)["items"]]))
    assert seen_by_alice == [a_job["id"]]
    for peek in (lambda c: c.status(b_job["id"]), lambda c: c.log(b_job["id"]),
                 lambda c: c.wait(b_job["id"], 1), lambda c: c.cancel(b_job["id"])):
        assert as_user(users.alice, d, peek)["error"] == "NotFound", "another user's job must look missing"

    admin_sees = {j["id"] for j in d.client.list(limit=100)["items"]}  # the test runs as root: an admin
    assert {a_job["id"], b_job["id"]} <= admin_sees


@needs_root
def test_cancel_own_running_job(users: LocalUsers, multiuser) -> None:
    d = multiuser(RUNSPACE_ALLOWED_USERS=users.alice.name)
    job = value(as_user(users.alice, d, lambda c: c.submit("sleep", {"seconds": 60})[1]))
    wait_until(lambda: d.client.status(job["id"])["state"] == "running", 20, what="job running")
    cancelled = value(as_user(users.alice, d, lambda c: c.cancel(job["id"])))
    final = d.wait(cancelled["id"])
    assert final["state"] == "cancelled"


@needs_root
def test_non_allowed_user_gets_403_and_allowed_user_reads_health_and_metrics(users: LocalUsers, multiuser) -> None:
    d = multiuser(RUNSPACE_ALLOWED_USERS=users.alice.name)
    for action in (lambda c: c.request("GET", "/healthz").json(), lambda c: c.request("GET", "/metrics").text,
                   lambda c: c.submit("echo", {}), lambda c: c.list()):
        reply = as_user(users.bob, d, action)
        assert reply["error"] == "NotAllowed", reply
        assert users.bob.name in reply["detail"]
    assert value(as_user(users.alice, d, lambda c: c.request("GET", "/healthz").json()))["status"] == "ok"
    assert "runspace_queue_depth" in value(as_user(users.alice, d, lambda c: c.request("GET", "/metrics").text))


@needs_root
def test_allowed_group_admits_its_members(users: LocalUsers, multiuser) -> None:
    d = multiuser(RUNSPACE_ALLOWED_GROUPS=users.group)
    for user in (users.alice, users.bob):
        assert value(as_user(user, d, lambda c: c.request("GET", "/healthz").status_code)) == 200


@needs_root
def test_admin_sees_every_job(users: LocalUsers, multiuser) -> None:
    d = multiuser(RUNSPACE_ALLOWED_USERS=users.bob.name, RUNSPACE_ADMINS=users.alice.name)
    b_job = value(as_user(users.bob, d, lambda c: c.submit("echo", {"value": 1}, wait=30)[1]))
    seen = value(as_user(users.alice, d, lambda c: c.status(b_job["id"])))
    assert seen["requestor"] == users.bob.name


def test_why_a_job_waits_and_the_queue_counts_show_no_other_users_jobs(users: LocalUsers, multiuser,
                                                                       shared_base: Path) -> None:
    """Keys are shared between users, the ids of the jobs that hold them are not: bob's job waiting
    on alice's key named her job's id. GET /v1/queue counted everyone's jobs for anyone."""
    d = multiuser(RUNSPACE_ALLOWED_USERS=f"{users.alice.name},{users.bob.name}")
    records = shared_base / "records"
    records.mkdir(mode=0o1777)
    records.chmod(0o1777)

    def keyed(who: str, seconds: float) -> Callable[[Client], Any]:
        return lambda c: c.submit("keyed", {"case": "shared", "record": str(records / who), "seconds": seconds})[1]

    holder = value(as_user(users.alice, d, keyed("alice", 60)))
    wait_until(lambda: d.client.status(holder["id"])["state"] == "running", what="alice's job to hold the key")
    alices_next = value(as_user(users.alice, d, keyed("alice", 0)))
    bobs = value(as_user(users.bob, d, keyed("bob", 0)))
    assert bobs["waiting_for"] == "key case=shared held by another user's job"
    seen_by_bob = value(as_user(users.bob, d, lambda c: c.status(bobs["id"])))
    assert holder["id"] not in json.dumps(seen_by_bob)
    assert seen_by_bob["waiting_for"] == "key case=shared held by another user's job"
    assert alices_next["waiting_for"] == f"key case=shared held by {holder['id']}"  # her own
    assert d.client.status(bobs["id"])["waiting_for"] == f"key case=shared held by {holder['id']}"  # an admin

    queue_for_bob = value(as_user(users.bob, d, lambda c: c.request("GET", "/v1/queue").json()))
    assert (queue_for_bob["running"], queue_for_bob["queued"]) == (0, 1)
    queue_for_admin = d.client.request("GET", "/v1/queue").json()
    assert (queue_for_admin["running"], queue_for_admin["queued"]) == (1, 2)


# -- run-as ------------------------------------------------------------------------------


@needs_root
def test_job_runs_as_the_requestor_with_groups_home_and_clean_env(users: LocalUsers, multiuser) -> None:
    d = multiuser(RUNSPACE_ALLOWED_USERS=users.alice.name)
    alice = users.alice
    status = value(as_user(alice, d, lambda c: c.submit("whoami", {}, wait=30)[1]))
    assert status["state"] == "succeeded", d.client.log(status["id"])
    got = status["result"]
    assert (got["uid"], got["euid"], got["gid"]) == (alice.uid, alice.uid, alice.gid)
    assert users.group_gid in got["groups"] and 0 not in got["groups"]
    env = got["env"]
    assert env["HOME"] == alice.home and env["USER"] == env["LOGNAME"] == alice.name
    assert env["RUNSPACE_JOB_ID"] == status["id"] and env["TMPDIR"] == got["cwd"]
    assert Path(got["tmpdir"]) == Path(got["cwd"]) / "tmp"  # made on first use (issue 22), as alice
    assert set(env) <= {"HOME", "USER", "LOGNAME", "PATH", "LANG", "TMPDIR", "RUNSPACE_JOB_ID", TEST_MARKER,
                        "PWD", "LC_CTYPE"}, "nothing else of the daemon's environment may leak"
    assert "NOTIFY_SOCKET" not in env and "RUNSPACE_STATE_DIR" not in env
    assert status["message"] == "halfway" or status["progress"] is not None


@needs_root
def test_command_job_run_as_the_requestor_writes_to_its_user_log(users: LocalUsers, multiuser) -> None:
    """The native shim runs as the job's user and appends to the user log through the fd the
    job process opened while still root."""
    d = multiuser(RUNSPACE_ALLOWED_USERS=users.alice.name)
    assert d.client.request("GET", "/healthz").json()["command_shim"] == "native"
    shim = native_shim()
    assert shim is not None, "runspace-shim was not built"
    if not value(as_user(users.alice, d, lambda _c: os.access(shim, os.X_OK))):
        pytest.skip(f"{users.alice.name} cannot reach {shim} (a checkout under a private directory)")
    script = "id -u; echo '::log hello from the shim'"
    status = value(as_user(users.alice, d, lambda c: c.submit("sh_script", {"script": script}, wait=30)[1]))
    assert status["state"] == "succeeded", d.client.log(status["id"])
    log = d.client.log(status["id"])
    assert str(users.alice.uid) in log and "native shim" not in log, log
    user_log = (d.log_dir / "users" / f"{users.alice.name}.log").read_text()
    assert f"{status['id']} sh_script hello from the shim" in user_log


@needs_root
def test_job_log_readable_by_its_user_only_and_state_protected(users: LocalUsers, multiuser) -> None:
    d = multiuser(RUNSPACE_ALLOWED_USERS=f"{users.alice.name},{users.bob.name}")
    status = value(as_user(users.alice, d, lambda c: c.submit("whoami", {}, wait=30)[1]))
    log = d.log_dir / "jobs" / f"{status['id']}.log"
    st = log.stat()
    assert st.st_uid == users.alice.uid and stat.S_IMODE(st.st_mode) & 0o007 == 0

    def read(path: Path) -> Callable[[Client], str]:
        return lambda _client: path.read_text()

    assert "identity checked" in value(as_user(users.alice, d, read(log)))
    assert as_user(users.bob, d, read(log))["error"] == "PermissionError"
    assert as_user(users.alice, d, read(d.state_dir / "runspace.db"))["error"] == "PermissionError"
    listing = as_user(users.alice, d, lambda _c: os.listdir(d.log_dir / "jobs"))
    assert listing["error"] == "PermissionError", "job ids of others must not be listable"
    assert as_user(users.bob, d, read(d.log_dir / "users" / f"{users.alice.name}.log"))["error"] == "PermissionError"
    assert "identity checked" in d.client.request("GET", f"/v1/jobs/{status['id']}/log").text


@needs_root
def test_root_only_for_admins_of_types_that_allow_it(users: LocalUsers, multiuser) -> None:
    d = multiuser(RUNSPACE_ALLOWED_USERS=users.alice.name)
    refused = as_user(users.alice, d, lambda c: c.submit("whoami_root", {}))
    assert refused["error"] == "NotAllowed" and "admin" in refused["detail"]
    assert d.client.submit("whoami_root", {}, wait=30)[1]["result"]["uid"] == 0  # root is an admin
    with pytest.raises(RunspaceError, match="allow_root"):
        d.client.submit("whoami_root_undeclared", {})
    assert d.client.list(job="whoami_root_undeclared")["items"] == [], "refused before anything is queued"


@needs_root
def test_roots_own_jobs_run_as_the_configured_run_as_user(users: LocalUsers, multiuser) -> None:
    d = multiuser(RUNSPACE_RUN_AS=users.bob.name)
    got = d.client.submit("whoami", {}, wait=30)[1]["result"]
    assert got["uid"] == users.bob.uid and got["requestor"] == "root"


# -- trust -------------------------------------------------------------------------------

_MODULE = '''
from pydantic import BaseModel
from supervisor import JobContext, job

class P(BaseModel):
    pass

@job()
def {name}(params: P, ctx: JobContext) -> dict:
    return {{}}
'''


def _module_dir(tmp_path: Path, **modules: int) -> Path:
    jobs = tmp_path / "extra_jobs"
    jobs.mkdir()
    for name, mode in modules.items():
        path = jobs / f"{name}.py"
        path.write_text(_MODULE.format(name=name))
        os.chmod(path, mode)
    return jobs


def test_world_writable_job_module_is_refused_naming_file_and_reason(tmp_path: Path, make_daemon) -> None:
    jobs = _module_dir(tmp_path, open_to_all=0o666, trusted=0o644)
    d = make_daemon(RUNSPACE_JOBS_PATH=f"{TEST_JOBS}:{jobs}")
    listing = d.client.job_types()
    names = {t["name"] for t in listing["items"]}
    assert "trusted" in names and "open_to_all" not in names
    broken = {b["module"]: b["error"] for b in listing["broken"]}
    error = broken[str(jobs / "open_to_all.py")]
    assert "writable by every user" in error and "0666" in error
    assert [b["traceback"] for b in listing["broken"]] == [None]  # a refusal, not a crash: no traceback
    assert "open_to_all.py" in d.log() and "writable by every user" in d.log() and "Traceback" not in d.log()
    cli = d.cli("jobs")
    assert "open_to_all.py" in cli.stdout + cli.stderr


@needs_root
def test_module_owned_or_writable_by_a_non_admin_is_refused(users: LocalUsers, tmp_path: Path, make_daemon) -> None:
    jobs = _module_dir(tmp_path, owned_by_alice=0o644, group_writable=0o664, trusted=0o644)
    os.chown(jobs / "owned_by_alice.py", users.alice.uid, users.alice.gid)
    os.chown(jobs / "group_writable.py", 0, users.group_gid)
    d = make_daemon(RUNSPACE_JOBS_PATH=f"{TEST_JOBS}:{jobs}")
    broken = {Path(b["module"]).stem: b["error"] for b in d.client.job_types()["broken"]}
    assert f"owned by {users.alice.name}" in broken["owned_by_alice"]
    assert f"group {users.group}" in broken["group_writable"] and "non-admin" in broken["group_writable"]
    assert "trusted" not in broken
    # an admin may own job code
    d2 = make_daemon(RUNSPACE_JOBS_PATH=f"{TEST_JOBS}:{jobs}", RUNSPACE_ADMINS=users.alice.name)
    assert "owned_by_alice" in {t["name"] for t in d2.client.job_types()["items"]}


@needs_root
def test_a_broken_modules_traceback_is_shown_to_admins_only(users: LocalUsers, multiuser, tmp_path: Path) -> None:
    jobs = _module_dir(tmp_path, trusted=0o644)
    (jobs / "crashes.py").write_text("raise ImportError('no such thing')\n")
    d = multiuser(RUNSPACE_JOBS_PATH=f"{TEST_JOBS}:{jobs}", RUNSPACE_ALLOWED_USERS=users.alice.name)

    def tracebacks(listing: dict[str, Any]) -> dict[str, Any]:
        return {Path(b["module"]).stem: b["traceback"] for b in listing["broken"]}

    assert "Traceback" in tracebacks(d.client.job_types())["crashes"]
    by_alice = value(as_user(users.alice, d, lambda c: c.job_types()))
    assert tracebacks(by_alice) == {"crashes": None}
    assert "ImportError: no such thing" in by_alice["broken"][0]["error"]


def test_config_writable_by_others_stops_the_daemon(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("max_concurrency = 2\n")
    os.chmod(config, 0o666)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RUNSPACE_CONFIG": str(config),
           "RUNSPACE_SOCKET": str(tmp_path / "s.sock"), "RUNSPACE_STATE_DIR": str(tmp_path / "state")}
    out = subprocess.run([sys.executable, "-m", "supervisor", "daemon"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0
    assert str(config) in out.stderr and "writable by every user" in out.stderr
    assert not (tmp_path / "s.sock").exists()


# -- the socket ----------------------------------------------------------------------------


@needs_root
def test_socket_is_0660_with_the_configured_group(users: LocalUsers, multiuser) -> None:
    d = multiuser(RUNSPACE_ALLOWED_USERS=users.alice.name)
    st = d.socket.stat()
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == users.group_gid


def test_stale_socket_file_is_replaced(tmp_path: Path, make_daemon) -> None:
    base = tmp_path / "stale"
    base.mkdir()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(base / "runspace.sock"))
    dead.close()  # the file stays, nobody listens: what a crashed daemon leaves behind
    d = make_daemon(base)
    assert d.client.request("GET", "/healthz").json()["status"] == "ok"
    assert stat.S_IMODE(d.socket.stat().st_mode) == 0o660


def test_second_daemon_on_a_live_socket_fails_clearly(daemon: DaemonProcess) -> None:
    env = {**daemon.env, "RUNSPACE_STATE_DIR": str(daemon.base / "other-state")}
    out = subprocess.run([sys.executable, "-m", "supervisor", "daemon"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0
    assert "already listening" in out.stderr and str(daemon.socket) in out.stderr
    assert daemon.client.request("GET", "/healthz").status_code == 200, "the first daemon keeps its socket"


@needs_root
@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_hostile_job_cannot_make_the_daemon_read_through_its_run_dir(users: LocalUsers, multiuser, shared_base: Path,
                                                                     kind: str) -> None:
    secret = shared_base / "secret.json"
    secret.write_text(json.dumps({"state": "succeeded", "result": {"secret": "root only"}}))
    os.chmod(secret, 0o600)
    d = multiuser(RUNSPACE_ALLOWED_USERS=users.alice.name)
    status = value(as_user(users.alice, d, lambda c: c.submit("plant_result", {"kind": kind, "target": str(secret)},
                                                              wait=30)[1]))
    assert status["done"] and status["state"] != "succeeded" and "root only" not in json.dumps(status)
    assert d.client.request("GET", "/healthz").json()["status"] == "ok", "a FIFO must not hang the daemon"
