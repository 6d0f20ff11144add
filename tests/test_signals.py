"""Daemon signals: SIGTERM drains and exits 0 leaving jobs running; SIGHUP reloads job definitions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path


from supervisor.client import Client
from tests.conftest import TEST_JOBS, DaemonProcess, wait_until
from tests.supervision import alive, ledger_ids, read_pids


def test_sigterm_exits_0_quickly_and_jobs_survive_to_be_readopted(make_daemon, tmp_path: Path) -> None:
    d = make_daemon()
    ledger = tmp_path / "ledger"
    job = d.submit("ledger", {"ledger": str(ledger), "n": 7, "seconds": 8, "pidfile": str(tmp_path / "pid")})
    pid = wait_until(lambda: read_pids(tmp_path / "pid"), timeout=15, what="the job to start")[0]
    assert d.proc is not None
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    code = d.proc.wait(timeout=10)
    took = time.monotonic() - t0
    assert code == 0 and took < 2.0, f"exit code {code} after {took:.2f} s"
    assert "draining" in d.log()
    assert alive(pid), "SIGTERM of the daemon must leave jobs running"
    d.start()
    final = d.wait(job["id"], timeout=30)
    assert final["state"] == "succeeded" and final["result"] == {"n": 7, "square": 49} and final["pid"] == pid
    assert ledger_ids(ledger) == [job["id"]]
    assert "re-adopted" in (d.log_dir / "users" / f"{final['log_user']}.log").read_text()


def _socket_inodes(pid: int) -> set[str]:
    """The daemon's open sockets, as `socket:[INODE]`: an inode is never reused while open."""
    links = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            links.add(os.readlink(fd))
        except FileNotFoundError:  # closed while we looked
            continue
    return {link for link in links if link.startswith("socket:")}


def test_sigterm_with_a_waiting_client_still_exits_promptly(daemon) -> None:
    job = daemon.submit("sleep", {"seconds": 5})

    assert daemon.proc is not None
    before = _socket_inodes(daemon.proc.pid)  # not a count: the submit's connection may close meanwhile

    def long_poll() -> None:
        try:
            Client(daemon.socket).wait(job["id"], timeout=60)  # a connection of its own
        except Exception:
            pass

    poller = threading.Thread(target=long_poll, daemon=True)
    poller.start()
    wait_until(lambda: _socket_inodes(daemon.proc.pid) - before, what="the long-poll's connection to reach the daemon")
    t0 = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=10) == 0
    assert time.monotonic() - t0 < 2.0
    daemon.start()
    assert daemon.wait(job["id"], timeout=30)["state"] == "succeeded"


_V1 = '''
from pydantic import BaseModel
from supervisor import job

class P(BaseModel):
    x: int = 1

@job()
def hup_a(params: P, ctx) -> dict:
    return {"version": 1, "x": params.x}
'''

_V2 = _V1.replace('"version": 1', '"version": 2') + '''

@job()
def hup_b(params: P, ctx) -> dict:
    """Added by the reload."""
    return {"b": params.x}
'''

_BROKEN = _V2 + "\nthis is not python (\n"


def type_names(d) -> set[str]:
    return {t["name"] for t in d.client.job_types()["items"]}


def test_sighup_reloads_job_definitions_and_survives_a_broken_module(make_daemon, tmp_path: Path) -> None:
    extra = tmp_path / "extra_jobs"
    extra.mkdir()
    module = extra / "hup_jobs.py"
    module.write_text(_V1)
    d = make_daemon(RUNSPACE_JOBS_PATH=f"{TEST_JOBS}:{extra}")
    assert "hup_a" in type_names(d) and "hup_b" not in type_names(d)
    running = d.submit("sleep", {"seconds": 3})
    assert d.submit("hup_a", {"x": 3}, wait=20)["result"] == {"version": 1, "x": 3}

    module.write_text(_V2)
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "hup_b" in type_names(d), timeout=10, what="the new type after SIGHUP")
    assert d.submit("hup_b", {"x": 4}, wait=20)["result"] == {"b": 4}
    assert d.submit("hup_a", {"x": 5}, wait=20)["result"] == {"version": 2, "x": 5}

    module.write_text(_BROKEN)
    reloads = d.log().count("job definitions reloaded")
    d.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: d.log().count("job definitions reloaded") > reloads, timeout=10, what="the second reload")
    # Its old definitions would have to run a source that is no longer on disk (CONTRACT §9).
    assert not {"hup_a", "hup_b"} & type_names(d), "a module that no longer imports loses its types"
    assert any(Path(b["module"]).name == "hup_jobs.py" and "SyntaxError" in b["error"]
               for b in d.client.job_types()["broken"])
    assert "hup_jobs.py" in d.log() and "SyntaxError" in d.log()
    assert d.proc.poll() is None
    assert d.wait(running["id"], timeout=30)["state"] == "succeeded", "running jobs are unaffected by reloads"


def test_clean_stop_removes_the_socket_file(daemon) -> None:
    assert daemon.socket.exists()
    assert daemon.stop() == 0
    assert not daemon.socket.exists()


def _catches(pid: int, signum: int) -> bool:
    """Whether process `pid` has a handler for `signum` (SigCgt in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def test_a_sighup_while_the_daemon_starts_is_a_reload_not_its_end(tmp_path: Path) -> None:
    """`runspace daemon & kill -HUP %1`: the daemon used to die of it until it listened."""
    slow = tmp_path / "slow_jobs"
    slow.mkdir()
    (slow / "slow_import.py").write_text("import time\n\ntime.sleep(1.5)  # a start-up long enough to signal into\n")
    d = DaemonProcess(tmp_path, uuid.uuid4().hex, {"RUNSPACE_JOBS_PATH": f"{TEST_JOBS}:{slow}"})
    with open(tmp_path / "daemon.log", "ab") as log:
        d.proc = subprocess.Popen([sys.executable, "-m", "supervisor", "daemon"], env=d.env, stdout=log,
                                  stderr=log, cwd=tmp_path)
    try:
        wait_until(lambda: d.proc.poll() is not None or _catches(d.proc.pid, signal.SIGHUP) or d.socket.exists(),
                   timeout=30, what="the daemon to handle SIGHUP or listen")
        assert not d.socket.exists(), "the daemon listened before it handled SIGHUP"
        d.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: d.proc.poll() is not None or "job definitions reloaded" in d.log(), timeout=60,
                   what="the reload")
        assert d.proc.poll() is None, d.log()
        assert d.raw("GET", "/healthz").status_code == 200
    finally:
        d.stop()
