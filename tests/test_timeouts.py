"""Hard timeout, idle timeout (hung) and the memory limit: each kills the job's whole tree."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psutil

from tests.conftest import wait_until
from tests.supervision import alive_of, assert_tree_mode, read_pids, tree_env

__all__ = ["tree_env"]


def epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339).timestamp()


def test_timeout_kills_setsid_double_forked_and_term_ignoring(make_daemon, tree_env, tmp_path: Path) -> None:
    d = make_daemon(**tree_env)
    assert_tree_mode(d, tree_env)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # not the job's: never touched
    try:
        pidfile = tmp_path / "pids"
        job = d.submit("spawn_tree", {"pidfile": str(pidfile)})  # timeout=2, kill_grace=1
        pids = wait_until(lambda: len(read_pids(pidfile)) == 3 and read_pids(pidfile), timeout=15,
                          what="the three descendants to start")
        # the double-forked grandchild lost its parent: as a subreaper, the daemon inherited it
        assert d.proc is not None and d.proc.pid in {psutil.Process(p).ppid() for p in pids}
        status = d.wait(job["id"], timeout=20)
        gone_at = wait_until(lambda: not alive_of(pids) and time.time(), timeout=10, what="the tree to be gone")
        assert status["state"] == "timed_out" and status["reason"] == "timeout"
        assert status["signal"] in (signal.SIGTERM, signal.SIGKILL)
        assert status["killed_at"] and status["error"]["type"] == "Timeout"
        started = epoch(status["started_at"])
        assert gone_at - started <= 2 + 1 + 1, f"tree outlived timeout + grace + 1 s: {gone_at - started:.2f} s"
        assert epoch(status["killed_at"]) - started >= 2 - 0.05
        assert bystander.poll() is None, "a process outside the job was signalled"
    finally:
        bystander.kill()
        bystander.wait()


def test_idle_job_is_hung_and_killed(daemon) -> None:
    job = daemon.submit("hang", {})  # idle_timeout=1, kill_grace=0.5
    status = daemon.wait(job["id"], timeout=20)
    assert status["state"] == "hung" and status["reason"] == "hung"
    assert status["error"]["type"] == "Hung" and "no output or progress" in status["error"]["message"]
    assert status["signal"] == signal.SIGTERM
    assert alive_of([status["pid"]]) == []
    assert epoch(status["killed_at"]) - epoch(status["started_at"]) < 10


def test_job_with_steady_progress_is_not_hung(daemon) -> None:
    job = daemon.submit("sleep", {"seconds": 2.5, "output_every": 0.3})
    assert daemon.wait(job["id"], timeout=20)["state"] == "succeeded"


def test_memory_limit_fails_the_job_with_reason_memory(make_daemon, tree_env) -> None:
    daemon = make_daemon(**tree_env)  # the tree's RSS is summed over its cgroup, or over the swept tree
    job = daemon.submit("memory_hog", {"megabytes": 300})  # max_memory=100M
    status = daemon.wait(job["id"], timeout=30)
    assert status["state"] == "failed" and status["reason"] == "memory"
    assert status["error"]["type"] == "MemoryLimit" and "max_memory" in status["error"]["message"]
    assert status["signal"] in (signal.SIGTERM, signal.SIGKILL)
