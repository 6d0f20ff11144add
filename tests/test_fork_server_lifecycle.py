"""Fork-server jobs through the daemon's lifecycle: a burst larger than the spares, a kill -9
and restart while they run (re-adopted, run once, cancellable as a whole tree), a SIGHUP
reload that replaces the fork server under a running job."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import psutil
import pytest

from supervisor.runner.files import ENV_MARKER, MARKER_PLACEHOLDER
from tests.conftest import DaemonProcess, wait_until
from tests.supervision import alive, alive_of, assert_tree_mode, ledger_ids, read_pids, tree_env, writable_cgroup2

__all__ = ["tree_env"]


def _warm(d: DaemonProcess) -> None:
    wait_until(lambda: d.client.request("GET", "/healthz").json()["fork_server"] == "ready",
               what="the fork server to warm up")


def _cgroup_env() -> dict[str, str]:
    """Per-job cgroups wherever this machine allows them, else the session/marker path."""
    return {"RUNSPACE_CGROUPS": "true" if writable_cgroup2() else "false"}


def _cgroup_root(d: DaemonProcess) -> str | None:
    root = re.search(r"\(cgroups: (\S+)\)", d.log()).group(1)
    return None if root == "off" else root


def _fork_server_pid(d: DaemonProcess) -> int:
    assert d.proc is not None
    # A forked job shows the fork server's command line too (fork without exec), and after a
    # reload it is the daemon's child; only the fork server keeps the unstamped marker.
    found = [child.pid for child in psutil.Process(d.proc.pid).children()
             if "supervisor.runner.forkserver_main" in child.cmdline()
             and child.environ().get(ENV_MARKER) == MARKER_PLACEHOLDER]
    assert len(found) == 1, f"expected one fork server under the daemon, found {found}"
    return found[0]


def _cgroup_of(pid: int, root: str) -> Path:
    """The cgroup directory a live process is in (under the daemon's cgroup root)."""
    line = next(line for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if line.startswith("0::"))
    return Path(root) / os.path.basename(line[3:].strip())


def _job_processes(job_id: str) -> list[int]:
    """Live processes carrying the job's marker: its leader and every descendant."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(ENV_MARKER) == job_id and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def _user_log_lines(d: DaemonProcess, user: str, job_id: str) -> list[str]:
    path = d.log_dir / "users" / f"{user}.log"
    return [line for line in path.read_text().splitlines() if f" {job_id} " in line] if path.exists() else []


# -- a burst larger than the spares -------------------------------------------------------


def test_batch_larger_than_the_spares_starts_every_job_in_a_process_session_and_cgroup_of_its_own(
        make_daemon, tmp_path: Path) -> None:
    env = _cgroup_env()
    d = make_daemon(RUNSPACE_MAX_CONCURRENCY="16", **env)
    assert_tree_mode(d, env)
    _warm(d)
    forkserver = _fork_server_pid(d)
    gate, ledger = tmp_path / "gate", tmp_path / "ledger"
    # One request: the daemon dispatches all 8 in one round, against 2 spares, so the fork server
    # forks most of them on the spot. The gate holds every job open until all 8 run side by side.
    status, created = d.client.submit_batch("gated", [{"gate": str(gate), "ledger": str(ledger)} for _ in range(8)])
    assert status == 202, created
    ids = created["job_ids"]
    wait_until(lambda: len(ledger_ids(ledger)) == 8, timeout=30, what="all 8 jobs to run their code at once")
    assert sorted(ledger_ids(ledger)) == sorted(ids)
    running = {item["id"] for item in d.client.list(state="running", limit=100)["items"]}
    assert running == set(ids), "all 8 run at the same time"
    gate.touch()
    finals = [d.wait(job_id, timeout=30) for job_id in ids]
    assert all(f["state"] == "succeeded" for f in finals), finals
    results = [f["result"] for f in finals]
    assert len({r["pid"] for r in results}) == 8, results  # distinct while all were alive
    assert all(f["pid"] == f["result"]["pid"] for f in finals)
    assert all(r["sid"] == r["pid"] for r in results), results  # each its own session leader
    assert all(r["ppid"] == forkserver for r in results), (forkserver, results)  # forked, not posix_spawned
    root = _cgroup_root(d)
    if env["RUNSPACE_CGROUPS"] == "true":
        assert root is not None
        cgroups = [r["cgroup"] for r in results]
        assert len(set(cgroups)) == 8, cgroups
        assert all(root.endswith(os.path.dirname(c)) for c in cgroups), (root, cgroups)
        paths = [os.path.join(root, os.path.basename(c)) for c in cgroups]
        wait_until(lambda: not any(os.path.exists(p) for p in paths), what="the ended jobs' cgroups to be removed")
    else:
        assert root is None


# -- kill -9 and restart while a forked job runs ------------------------------------------


def _start_gated_job_and_kill9(make_daemon, tree_env: dict[str, str], tmp_path: Path
                               ) -> tuple[DaemonProcess, dict, int, int, Path | None]:
    """A forked job with a child, both waiting on the gate; the daemon is killed -9 under them
    and a new one started on the same state. (new daemon, job, leader pid, child pid, cgroup)."""
    d = make_daemon(**tree_env)
    assert_tree_mode(d, tree_env)
    _warm(d)
    forkserver = _fork_server_pid(d)
    ledger = tmp_path / "ledger"
    job = d.submit("gated", {"gate": str(tmp_path / "gate"), "ledger": str(ledger), "child": True})
    child_file = Path(f"{ledger}.{job['id']}.child")
    wait_until(lambda: ledger_ids(ledger) and read_pids(child_file), timeout=15,
               what="the job's code and its child to start")
    leader = d.client.status(job["id"])["pid"]
    child = read_pids(child_file)[0]
    assert psutil.Process(leader).ppid() == forkserver, "the job must come from the fork server"
    assert set(_job_processes(job["id"])) == {leader, child}
    root = _cgroup_root(d)
    cgroup = _cgroup_of(leader, root) if root else None
    if cgroup is not None:
        assert cgroup.is_dir() and _cgroup_of(child, root) == cgroup
    d.kill9()
    wait_until(lambda: not alive(forkserver), timeout=5, what="the fork server to exit with its daemon")
    assert alive(leader) and alive(child), "a job must outlive its daemon and fork server"
    again = make_daemon(base=d.base, **tree_env)
    wait_until(lambda: any("re-adopted" in line for line in _user_log_lines(again, job["log_user"], job["id"])),
               timeout=15, what="the new daemon to re-adopt the job")
    return again, job, leader, child, cgroup


def test_forked_job_running_across_a_kill9_is_readopted_and_succeeds_exactly_once(
        make_daemon, tree_env: dict[str, str], tmp_path: Path) -> None:
    d, job, leader, child, cgroup = _start_gated_job_and_kill9(make_daemon, tree_env, tmp_path)
    assert d.client.status(job["id"])["state"] == "running"
    (tmp_path / "gate").touch()
    final = d.wait(job["id"], timeout=30)
    assert final["state"] == "succeeded" and final["attempt"] == 1, final
    assert final["pid"] == leader and final["result"]["pid"] == leader, "re-adopted, not started again"
    assert ledger_ids(tmp_path / "ledger") == [job["id"]], "the job's code ran exactly once"
    lines = _user_log_lines(d, final["log_user"], job["id"])
    assert sum(f"started (pid {leader}" in line for line in lines) == 1, lines
    assert sum("started (pid" in line for line in lines) == 1, lines
    assert sum("re-adopted after a daemon restart" in line for line in lines) == 1, lines
    job_log = (d.log_dir / "jobs" / f"{job['id']}.log").read_text()
    assert job_log.count("waiting") == 1, job_log
    wait_until(lambda: not alive_of([leader, child]), timeout=5, what="the job and its child to end")
    if cgroup is not None:
        wait_until(lambda: not cgroup.exists(), timeout=5, what="the job's cgroup to be removed")


def test_forked_job_readopted_after_a_kill9_can_be_cancelled_with_its_whole_tree(
        make_daemon, tree_env: dict[str, str], tmp_path: Path) -> None:
    d, job, leader, child, cgroup = _start_gated_job_and_kill9(make_daemon, tree_env, tmp_path)
    d.client.cancel(job["id"])
    final = d.wait(job["id"], timeout=20)
    assert final["state"] == "cancelled" and final["reason"] == "cancelled", final
    wait_until(lambda: not _job_processes(job["id"]), timeout=10, what="every process of the job to be gone")
    assert not alive_of([leader, child])
    assert ledger_ids(tmp_path / "ledger") == [job["id"]], "cancelling must not run it again"
    if cgroup is not None:
        wait_until(lambda: not cgroup.exists(), timeout=5, what="the job's cgroup to be removed")


# -- SIGHUP replaces the fork server under a running job ----------------------------------


def test_forked_job_killed_by_a_signal_after_a_reload_reports_it(make_daemon, tmp_path: Path) -> None:
    """After SIGHUP the old fork server exits and the job becomes the daemon's child (a
    subreaper): the daemon, not the fork server, must learn how the job ended."""
    d = make_daemon(**_cgroup_env())
    _warm(d)
    assert d.proc is not None
    old_forkserver = _fork_server_pid(d)
    cue, pidfile = tmp_path / "cue", tmp_path / "pid"
    job = d.submit("die_on_cue", {"cue": str(cue), "pidfile": str(pidfile)})
    pid = wait_until(lambda: read_pids(pidfile), timeout=15, what="the job to start")[0]
    assert psutil.Process(pid).ppid() == old_forkserver, "the job must come from the fork server"

    reloads = d.log().count("job definitions reloaded")
    d.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: d.log().count("job definitions reloaded") > reloads, timeout=10, what="the reload")
    wait_until(lambda: not alive(old_forkserver), timeout=5, what="the old fork server to exit")
    wait_until(lambda: psutil.Process(pid).ppid() == d.proc.pid, timeout=5,
               what="the job to be re-parented to the daemon")
    _warm(d)
    assert _fork_server_pid(d) != old_forkserver
    assert d.client.status(job["id"])["state"] == "running"

    cue.touch()
    final = d.wait(job["id"], timeout=20)
    assert final["state"] == "failed", final
    assert final["error"]["type"] == "ProcessDied" and final["signal"] == signal.SIGKILL, final
    assert final["pid"] == pid
