"""The fork server and its spares: each job in a fresh process, session and cgroup; exit
statuses of jobs that die without a result; no fork server outlives its daemon."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid

import psutil
import pytest

from tests.conftest import TEST_MARKER, DaemonProcess, marked_processes, wait_until
from tests.supervision import writable_cgroup2


def _warm(d: DaemonProcess) -> None:
    wait_until(lambda: d.client.request("GET", "/healthz").json()["fork_server"] == "ready",
               what="the fork server to warm up")


def test_each_job_gets_a_process_session_and_cgroup_of_its_own(make_daemon) -> None:
    if not writable_cgroup2():
        pytest.skip("no writable cgroup v2 with cgroup.kill on this machine (needs Delegate=yes or root)")
    d = make_daemon(RUNSPACE_CGROUPS="true")
    _warm(d)
    root = re.search(r"\(cgroups: (\S+)\)", d.log()).group(1)
    results = [d.submit("whereami", {"value": n}, wait=20)["result"] for n in range(4)]  # more than the spares
    assert len({r["pid"] for r in results}) == 4
    assert all(r["sid"] == r["pid"] for r in results)  # each its own session leader
    cgroups = [r["cgroup"] for r in results]
    assert len(set(cgroups)) == 4, cgroups
    assert all(root.endswith(os.path.dirname(c)) for c in cgroups), (root, cgroups)  # ours, side by side
    paths = [os.path.join(root, os.path.basename(c)) for c in cgroups]
    wait_until(lambda: not any(os.path.exists(p) for p in paths), what="the ended jobs' cgroups to be removed")


def test_job_killed_by_a_signal_reports_it(daemon: DaemonProcess) -> None:
    _warm(daemon)
    for _ in range(3):  # the first from a spare, later ones maybe forked on the spot
        status = daemon.submit("die", {"value": 0}, wait=20)
        assert status["state"] == "failed", status
        assert status["error"]["type"] == "ProcessDied" and status["signal"] == signal.SIGKILL, status


def test_fork_server_whose_daemon_is_gone_exits_with_its_spares() -> None:
    """The daemon died while the fork server was starting: it must exit, not fork forever."""
    marker = f"fork-server-orphan-{uuid.uuid4().hex[:8]}"
    control, their_control = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    channel, their_channel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    fds = (their_control.fileno(), their_channel.fileno())
    proc = subprocess.Popen([sys.executable, "-m", "supervisor.runner.forkserver_main", *map(str, fds), "-"],
                            pass_fds=fds, env={**os.environ, TEST_MARKER: marker})
    for sock in (their_control, their_channel, control, channel):
        sock.close()
    try:
        assert proc.wait(timeout=20) == 0
        wait_until(lambda: not marked_processes(marker), timeout=5, what="its spares to exit")
    finally:
        for leftover in marked_processes(marker):
            leftover.kill()


def test_job_too_big_for_a_spare_pipe_starts_the_other_way(daemon: DaemonProcess) -> None:
    """Params beyond a pipe's capacity are never written into a spare (the daemon must not
    wait on one): such a job starts as a fresh interpreter; the spares serve the jobs after."""
    _warm(daemon)
    big = "x" * 1_200_000  # more than the 1 MiB pipe a spare asks for
    statuses = [daemon.submit("echo", {"value": big}, wait=30) for _ in range(2)]
    assert all(s["state"] == "succeeded" and s["result"]["value"] == big for s in statuses)
    assert all(s["result"]["ppid"] == daemon.proc.pid for s in statuses), "spawned by the daemon itself"
    small = daemon.submit("echo", {"value": 1}, wait=20)
    assert small["state"] == "succeeded" and small["result"]["ppid"] == _forkserver(daemon).pid


def test_the_fork_server_holds_none_of_the_daemons_environment(make_daemon) -> None:
    """Every forked job can read the fork server's original environment from its own memory,
    so it holds only what any job may see; the daemon's own user's jobs still get the rest."""
    d = make_daemon(RUNSPACE_TEST_SECRET="hunter2")
    _warm(d)
    env = _forkserver(d).environ()
    assert "RUNSPACE_TEST_SECRET" not in env and "RUNSPACE_STATE_DIR" not in env, sorted(env)
    assert env[TEST_MARKER] == d.marker  # RUNSPACE_JOB_ENV_PASSTHROUGH: every job sees it anyway
    status = d.submit("whoami", {}, wait=20)
    assert status["result"]["env"]["RUNSPACE_TEST_SECRET"] == "hunter2", "root's own job keeps the daemon's environment"


def test_a_module_the_fork_server_cannot_import_is_named_and_its_jobs_still_run(make_daemon) -> None:
    # The flag reaches the fork server (passed through), the daemon's other variables do not.
    d = make_daemon(RUNSPACE_TEST_IMPORT_NEEDS_DAEMON_ENV="1",
                    RUNSPACE_JOB_ENV_PASSTHROUGH="RUNSPACE_TEST_IMPORT_NEEDS_DAEMON_ENV")
    _warm(d)
    assert re.search(r"the fork server could not import \S+import_env_jobs\.py \(RuntimeError: imported without",
                     d.log()), d.log()[-3000:]
    status = d.submit("parent_of_job", {}, wait=30)
    assert status["state"] == "succeeded", status
    assert status["result"]["ppid"] == _forkserver(d).pid, "still forked: the job imported the module itself"


def test_a_burst_after_the_spares_died_gets_spares_forked_on_request(make_daemon) -> None:
    d = make_daemon(RUNSPACE_MAX_CONCURRENCY="8")
    _warm(d)
    forkserver = _forkserver(d)
    wait_until(lambda: len(forkserver.children()) == 2, what="the two spares")
    for spare in forkserver.children():  # ours: the fork server's children, no job yet
        spare.kill()
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(d.submit("echo", {"value": 1}, wait=30)))
               for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 12 and all(r["state"] == "succeeded" for r in results), results
    assert all(r["result"]["ppid"] == forkserver.pid for r in results), "every one forked, none spawned"


def _forkserver(d: DaemonProcess) -> psutil.Process:
    return next(p for p in psutil.Process(d.proc.pid).children() if "supervisor.runner.forkserver_main" in p.cmdline())
