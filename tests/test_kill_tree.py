"""Cancel and clean-up: the whole tree goes, on both tree-tracking paths (cgroup v2 and pgid/marker sweep)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from supervisor.errors import Conflict
from tests.conftest import wait_until
from tests.supervision import alive, alive_of, assert_tree_mode, ledger_ids, read_pids, tree_env

__all__ = ["tree_env"]


def test_cancel_running_kills_the_whole_tree(make_daemon, tree_env, tmp_path: Path) -> None:
    d = make_daemon(**tree_env)
    assert_tree_mode(d, tree_env)
    pidfile = tmp_path / "pids"
    job = d.submit("tree_long", {"pidfile": str(pidfile)})  # timeout=60, kill_grace=1
    pids = wait_until(lambda: len(read_pids(pidfile)) == 3 and read_pids(pidfile), timeout=15,
                      what="the three descendants to start")
    leader = d.client.status(job["id"])["pid"]
    d.client.cancel(job["id"])
    status = d.wait(job["id"], timeout=15)
    assert status["state"] == "cancelled" and status["cancelled"] and status["reason"] == "cancelled"
    assert status["signal"] in (signal.SIGTERM, signal.SIGKILL) and status["killed_at"]
    wait_until(lambda: not alive_of([leader, *pids]), timeout=5, what="every process of the job to be gone")


def test_cancel_queued_job_never_starts(make_daemon, tmp_path: Path) -> None:
    d = make_daemon(RUNSPACE_MAX_CONCURRENCY="1")
    ledger = tmp_path / "ledger"
    blocker = d.submit("sleep", {"seconds": 1.5})
    wait_until(lambda: d.client.status(blocker["id"])["state"] == "running", what="the blocker to run")
    queued = d.submit("ledger", {"ledger": str(ledger), "n": 1})
    after = d.submit("ledger", {"ledger": str(ledger), "n": 2})
    cancelled = d.client.cancel(queued["id"])
    assert cancelled["state"] == "cancelled" and cancelled["reason"] == "cancelled"
    assert cancelled["started_at"] is None and cancelled["pid"] is None
    assert d.wait(after["id"], timeout=20)["state"] == "succeeded"  # FIFO: the cancelled one would have run first
    assert ledger_ids(ledger) == [after["id"]]
    assert d.client.status(queued["id"])["state"] == "cancelled"


def test_leftovers_of_a_normal_exit_are_killed_and_tmp_removed(make_daemon, tree_env, tmp_path: Path) -> None:
    d = make_daemon(**tree_env)
    assert_tree_mode(d, tree_env)
    pidfile = tmp_path / "child"
    job = d.submit("leave_behind", {"pidfile": str(pidfile)}, wait=20)
    assert job["state"] == "succeeded" and job["exit_code"] == 0
    child = job["result"]["child"]
    run_dir = d.state_dir / "run" / job["id"]
    # gone, not a zombie: the daemon is a subreaper and reaps the orphan it killed
    wait_until(lambda: not alive(child), timeout=5, what="the leftover child to be killed")
    wait_until(lambda: not run_dir.exists(), timeout=5, what="the run dir (with the private tmp dir) to be removed")


def test_tmp_dir_is_private_and_removed(daemon) -> None:
    status = daemon.submit("echo", {"value": 1}, wait=20)
    tmpdir = Path(status["result"]["tmpdir"])
    assert status["result"]["tmpdir_exists"] and tmpdir.name == "tmp"
    wait_until(lambda: not tmpdir.exists(), timeout=5, what="the tmp dir to be removed")


def test_tmp_dir_is_made_on_first_use_and_tempfile_stays_in_the_run_dir(daemon) -> None:
    # Issue 22: most jobs never use ctx.tmpdir, and each directory made and removed costs.
    running = daemon.submit("scratch", {"seconds": 30})
    run_dir = daemon.state_dir / "run" / running["id"]
    wait_until(lambda: run_dir.is_dir() and any(p.name.startswith("tmp") and p.is_file() for p in run_dir.iterdir()),
               timeout=20, what="the job's tempfile in its run dir")
    assert not (run_dir / "tmp").exists()
    daemon.client.cancel(running["id"])
    used = daemon.submit("scratch", {"use_tmpdir": True}, wait=20)["result"]
    cwd = Path(used["cwd"])
    assert Path(used["tmpdir"]) == cwd / "tmp" and cwd.parent == daemon.state_dir / "run"
    assert used["mode"] == "0o700" and Path(used["tempfile"]).parent == cwd == Path(used["tmpdir_env"])
    wait_until(lambda: not cwd.exists(), timeout=5, what="the run dir with the tempfile and tmp dir to be removed")


def test_cancel_of_a_finished_job_is_refused(daemon) -> None:
    status = daemon.submit("echo", {"value": 1}, wait=20)
    with pytest.raises(Conflict):
        daemon.client.cancel(status["id"])
    assert daemon.client.status(status["id"])["state"] == "succeeded"
