"""Daemon death is not job death: kill -9, restart, re-adoption, exactly-once, lost jobs, pid reuse."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from supervisor.client import Client
from supervisor.errors import RunspaceError
from tests.conftest import wait_until
from tests.supervision import alive, alive_of, assert_tree_mode, db_exec, ledger_ids, read_pids, tree_env, writable_cgroup2

__all__ = ["tree_env"]


def running_ids(d) -> set[str]:
    return {item["id"] for item in d.client.list(state="running", limit=100)["items"]}


def test_kill9_with_3_running_and_5_queued_all_succeed_exactly_once(make_daemon, tmp_path: Path) -> None:
    d = make_daemon(RUNSPACE_MAX_CONCURRENCY="3")
    ledger = tmp_path / "ledger"
    jobs = [d.submit("ledger", {"ledger": str(ledger), "n": n, "seconds": 2.0}) for n in range(8)]
    wait_until(lambda: len(ledger_ids(ledger)) == 3, timeout=15, what="three jobs to start their code")
    running = [d.client.status(job_id) for job_id in running_ids(d)]
    assert len(running) == 3
    d.kill9()
    assert all(alive(s["pid"]) for s in running), "jobs must outlive the daemon"
    d.start()
    finals = {job["id"]: d.wait(job["id"], timeout=60) for job in jobs}
    for n, job in enumerate(jobs):
        final = finals[job["id"]]
        assert final["state"] == "succeeded", final
        assert final["result"] == {"n": n, "square": n * n} and final["exit_code"] == 0
        assert final["attempt"] == 1
    ids = ledger_ids(ledger)
    assert sorted(ids) == sorted(finals) and len(ids) == 8, "every job ran exactly once"
    for before in running:  # the three were re-adopted, not restarted
        assert finals[before["id"]]["pid"] == before["pid"]


def test_running_job_keeps_logging_while_daemon_is_down(make_daemon) -> None:
    d = make_daemon()
    job = d.submit("sleep", {"seconds": 4, "output_every": 0.2})
    wait_until(lambda: "tick" in d.client.log(job["id"]), timeout=15, what="first output")
    d.kill9()
    log = d.log_dir / "jobs" / f"{job['id']}.log"
    size = log.stat().st_size
    wait_until(lambda: log.stat().st_size > size + 20, timeout=5, what="the job to keep writing its log")
    d.start()
    final = d.wait(job["id"], timeout=20)
    assert final["state"] == "succeeded" and final["result"] == {"slept": 4}


def test_jobs_that_end_while_daemon_is_down_are_recorded(make_daemon, tmp_path: Path) -> None:
    d = make_daemon()
    ledger = tmp_path / "ledger"
    ok = d.submit("ledger", {"ledger": str(ledger), "n": 5, "seconds": 1.0, "pidfile": str(tmp_path / "ok")})
    bad = d.submit("ledger_fail", {"ledger": str(ledger), "n": 6, "seconds": 1.0, "pidfile": str(tmp_path / "bad")})
    pids = wait_until(lambda: read_pids(tmp_path / "ok") + read_pids(tmp_path / "bad") if len(ledger_ids(ledger)) == 2
                      else None, timeout=15, what="both jobs to start")
    d.kill9()
    wait_until(lambda: not alive_of(pids), timeout=10, what="both jobs to end while the daemon is down")
    restarted = datetime.now(UTC)
    d.start()
    good, failed = d.wait(ok["id"]), d.wait(bad["id"])
    for status in (good, failed):  # when they ended, not when the daemon came back
        assert datetime.fromisoformat(status["finished_at"]) < restarted, status
    assert good["state"] == "succeeded" and good["result"] == {"n": 5, "square": 25} and good["exit_code"] == 0
    assert failed["state"] == "failed" and failed["exit_code"] == 1
    assert failed["error"] == {"type": "RuntimeError", "message": "failed on purpose (6)"}
    assert good["reason"] is None and failed["reason"] is None
    assert sorted(ledger_ids(ledger)) == sorted([ok["id"], bad["id"]])


def test_job_killed_while_daemon_is_down_is_lost(make_daemon, tmp_path: Path) -> None:
    d = make_daemon()
    ledger = tmp_path / "ledger"
    job = d.submit("ledger", {"ledger": str(ledger), "seconds": 60, "pidfile": str(tmp_path / "pid")})
    pid = wait_until(lambda: read_pids(tmp_path / "pid"), timeout=15, what="the job to start")[0]
    d.kill9()
    psutil.Process(pid).kill()
    wait_until(lambda: not alive(pid), timeout=5)
    d.start()
    final = d.wait(job["id"])
    assert final["state"] == "lost" and final["reason"] == "daemon_lost"
    assert final["error"]["type"] == "Lost" and final["result"] is None
    assert ledger_ids(ledger) == [job["id"]], "a lost job is not silently run again"


@pytest.mark.parametrize("forge", ["pid", "pid_and_start_time"])
def test_pid_reuse_cannot_fool_readoption(make_daemon, tmp_path: Path, forge: str) -> None:
    d = make_daemon()
    job = d.submit("ledger", {"ledger": str(tmp_path / "ledger"), "seconds": 60, "pidfile": str(tmp_path / "pid")})
    pid = wait_until(lambda: read_pids(tmp_path / "pid"), timeout=15, what="the job to start")[0]
    d.kill9()
    psutil.Process(pid).kill()
    wait_until(lambda: not alive(pid), timeout=5)
    # An unrelated process now holds the recorded pid (as if the kernel recycled it).
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = psutil.Process(stranger.pid).create_time()
        if forge == "pid":
            db_exec(d, "UPDATE jobs SET pid = ? WHERE id = ?", stranger.pid, job["id"])
        else:
            db_exec(d, "UPDATE jobs SET pid = ?, pid_started = ? WHERE id = ?", stranger.pid, started, job["id"])
        d.start()
        final = d.wait(job["id"])
        assert final["state"] == "lost" and final["reason"] == "daemon_lost"
        assert stranger.poll() is None, "the daemon signalled a process that is not the job's"
        assert "re-adopted" not in d.log()
    finally:
        stranger.kill()
        stranger.wait()


def test_job_whose_pid_was_never_recorded_is_found_and_adopted(make_daemon, tmp_path: Path) -> None:
    """The daemon died right after spawning, before persisting the pid: the worker is found by its marker."""
    d = make_daemon()
    ledger = tmp_path / "ledger"
    release = tmp_path / "release"  # the job runs until the test says so, however slow the machine
    job = d.submit("ledger", {"ledger": str(ledger), "n": 3, "pidfile": str(tmp_path / "pid"), "release": str(release)})
    pid = wait_until(lambda: read_pids(tmp_path / "pid"), timeout=15, what="the job to start")[0]
    d.kill9()
    db_exec(d, "UPDATE jobs SET pid = NULL, pid_started = NULL WHERE id = ?", job["id"])
    d.start()
    wait_until(lambda: d.client.status(job["id"])["pid"] == pid, timeout=20, what="the job to be adopted")
    release.touch()
    final = d.wait(job["id"])
    assert final["state"] == "succeeded" and final["result"]["square"] == 9 and final["pid"] == pid
    assert ledger_ids(ledger) == [job["id"]]


def test_job_claimed_but_never_started_runs_once_after_restart(make_daemon, tmp_path: Path) -> None:
    """The daemon died between marking a job running and spawning it: the job code never ran, so it runs now."""
    d = make_daemon(RUNSPACE_MAX_CONCURRENCY="1")
    ledger = tmp_path / "ledger"
    blocker = d.submit("sleep", {"seconds": 30})
    wait_until(lambda: d.client.status(blocker["id"])["state"] == "running", what="the blocker to run")
    job = d.submit("ledger", {"ledger": str(ledger), "n": 4})
    d.kill9()
    db_exec(d, "UPDATE jobs SET state = 'running', attempt = 1, started_at = ? WHERE id = ?", time.time(), job["id"])
    d.start()
    d.client.cancel(blocker["id"])
    final = d.wait(job["id"])
    assert final["state"] == "succeeded" and final["result"]["square"] == 16 and final["attempt"] == 1
    assert ledger_ids(ledger) == [job["id"]]


def test_adopted_job_still_gets_its_timeout_and_tree_kill(make_daemon, tree_env, tmp_path: Path) -> None:
    d = make_daemon(**tree_env)
    assert_tree_mode(d, tree_env)
    pidfile = tmp_path / "pids"
    job = d.submit("spawn_tree", {"pidfile": str(pidfile)})  # timeout=2, kill_grace=1
    pids = wait_until(lambda: len(read_pids(pidfile)) == 3 and read_pids(pidfile), timeout=15,
                      what="the three descendants to start")
    leader = d.client.status(job["id"])["pid"]
    d.kill9()
    d.start()
    final = d.wait(job["id"], timeout=20)
    assert final["state"] == "timed_out" and final["reason"] == "timeout" and final["signal"] in (15, 9)
    wait_until(lambda: not alive_of([leader, *pids]), timeout=5, what="the adopted tree to be gone")


def test_kill_in_progress_when_daemon_dies_is_finished_after_restart(make_daemon, tmp_path: Path) -> None:
    """The cancel was decided (and persisted) before the crash; the next daemon carries it out."""
    d = make_daemon(RUNSPACE_KILL_GRACE="30")
    job = d.submit("stubborn", {"pidfile": str(tmp_path / "pid")})
    leader = wait_until(lambda: read_pids(tmp_path / "pid"), timeout=15, what="the job to ignore SIGTERM")[0]
    # cancel answers after the kill (up to kill_grace + 2 s): send it from a thread, crash meanwhile
    def cancel() -> None:
        with contextlib.suppress(RunspaceError), Client(d.socket) as own:
            own.cancel(job["id"])

    canceller = threading.Thread(target=cancel)
    canceller.start()
    wait_until(lambda: d.client.status(job["id"])["reason"] == "cancelled", what="the cancel to be recorded")
    d.kill9()
    canceller.join(10)
    assert alive(leader)
    d.stop()
    d.env["RUNSPACE_KILL_GRACE"] = "1"
    d.start()
    final = d.wait(job["id"], timeout=20)
    assert final["state"] == "cancelled" and final["reason"] == "cancelled" and final["signal"] == signal.SIGKILL
    assert not alive(leader)


def test_lost_job_that_declared_retries_runs_again(make_daemon, tmp_path: Path) -> None:
    d = make_daemon()
    ledger = tmp_path / "ledger"
    job = d.submit("retry_ledger", {"ledger": str(ledger), "n": 8, "seconds": 60, "pidfile": str(tmp_path / "pid")})
    pid = wait_until(lambda: read_pids(tmp_path / "pid"), timeout=15, what="attempt 1 to start")[0]
    d.kill9()
    psutil.Process(pid).kill()
    wait_until(lambda: not alive(pid), timeout=5)
    d.start()
    final = d.wait(job["id"], timeout=30)
    assert final["state"] == "succeeded" and final["attempt"] == 2 and final["result"] == {"n": 8}
    assert final["reason"] is None and final["error"] is None
    assert ledger_ids(ledger) == [job["id"], job["id"]]
    assert "attempt 1 lost" in (d.log_dir / "users" / f"{final['log_user']}.log").read_text()


def test_strays_of_a_job_that_ended_while_the_daemon_was_down_get_their_grace(make_daemon, tmp_path: Path) -> None:
    """The job's cgroup is found from the store, not from its (gone) leader: what the job left
    behind is killed as usual, SIGTERM first, instead of SIGKILLed as a stranger's leftovers."""
    if not writable_cgroup2():
        pytest.skip("no writable cgroup v2 with cgroup.kill on this machine (needs Delegate=yes or root)")
    d = make_daemon(RUNSPACE_CGROUPS="true")
    wait_until(lambda: d.client.request("GET", "/healthz").json()["fork_server"] == "ready",
               what="the fork server to warm up")  # so the job gets a spare's cgroup, not one named after it
    pidfile, termfile, gate = tmp_path / "child", tmp_path / "termed", tmp_path / "gate"
    job = d.submit("leave_behind", {"pidfile": str(pidfile), "termfile": str(termfile), "gate": str(gate)})
    child = wait_until(lambda: read_pids(pidfile), timeout=15, what="the job to start its child")[0]
    leader = d.client.status(job["id"])["pid"]
    d.kill9()
    gate.touch()
    wait_until(lambda: not alive(leader), timeout=10, what="the job to end while the daemon is down")
    assert alive(child)
    d.start()
    final = d.wait(job["id"])
    assert final["state"] == "succeeded" and final["result"] == {"child": child}, final
    wait_until(lambda: not alive(child), timeout=10, what="the job's leftover child to be killed")
    assert termfile.read_text() == "SIGTERM", "the leftover was SIGKILLed without its grace"
