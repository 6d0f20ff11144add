"""Start and stop private runspace daemons for the benchmarks, and clean up what they started.

Each daemon gets its own temp socket and state dir (like tests/conftest.py DaemonProcess).
Every process the benchmarks start carries RUNSPACE_BENCH_MARKER in its environment, so
leftovers can be found and killed by pid, and nothing else is ever touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.uds import UdsClient

ROOT = Path(__file__).resolve().parent.parent
BENCH_JOBS = Path(__file__).resolve().parent / "jobs"
MARKER_VAR = "RUNSPACE_BENCH_MARKER"
MARKER = f"bench-{os.getpid()}"


def marked_env(**extra: str) -> dict[str, str]:
    return {**os.environ, MARKER_VAR: MARKER, **extra}


def wait_for(predicate, timeout: float, interval: float = 0.01, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


class RunspaceDaemon:
    def __init__(self, base: Path, **settings: str) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.base = base
        self.socket = base / "rs.sock"
        self.state_dir = base / "state"
        self.env = marked_env(
            PYTHONPATH=str(ROOT),
            RUNSPACE_SOCKET=str(self.socket),
            RUNSPACE_STATE_DIR=str(self.state_dir),
            RUNSPACE_JOBS_PATH=str(BENCH_JOBS),
            DEMO_ROOT=str(base / "demo"),
            RUNSPACE_JOB_ENV_PASSTHROUGH=MARKER_VAR,  # so even the fork server's children carry it
            **{f"RUNSPACE_{k.upper()}": str(v) for k, v in settings.items()},
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: UdsClient | None = None

    def start(self, timeout: float = 30.0) -> RunspaceDaemon:
        log = open(self.base / "daemon.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "supervisor", "daemon"], env=self.env,
                                     stdout=log, stderr=log, cwd=self.base)
        log.close()
        wait_for(self._healthy, timeout, what=f"runspace daemon on {self.socket}")
        self.client = UdsClient(self.socket)
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.log()[-2000:]}")
        try:
            probe = UdsClient(self.socket, timeout=2)
            status, health = probe.request("GET", "/healthz")
            probe.close()
            # measure the steady state: jobs start from the warm fork server, not the fallback
            return status == 200 and health.get("fork_server") != "warming"
        except OSError:
            return False

    def log(self) -> str:
        return (self.base / "daemon.log").read_text(errors="replace")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cancel_all(self, queued: bool = True) -> None:
        """Cancel whatever still runs (and waits), so stopping the daemon leaves nothing behind."""
        assert self.client is not None
        for state in ("queued", "running") if queued else ("running",):
            for _ in range(100):
                page = self.client.get(f"/v1/jobs?state={state}&limit=1000")
                if not page["items"]:
                    break
                for item in page["items"]:
                    self.client.request("POST", f"/v1/jobs/{item['id']}/cancel")

    def stop(self, cancel_queued: bool = True) -> None:
        """Cancel, then SIGTERM. With cancel_queued=False queued jobs stay in the (temp) store."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.cancel_all(cancel_queued)
        except Exception:
            pass  # a daemon that no longer answers is stopped all the same; strays are killed below
        if self.client is not None:
            self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def marked_processes() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get(MARKER_VAR) == MARKER:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def kill_marked() -> int:
    """Kill every process this benchmark run started that is still alive. Returns how many."""
    procs = [p for p in marked_processes() if _alive(p)]
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=5)
    return len(procs)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def pids_alive(pids: list[int]) -> list[int]:
    """Pids still running (a zombie has ended: it only waits to be reaped)."""
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.Error:
            continue
    return alive


def kill_pids(pids: list[int]) -> None:
    for pid in pids_alive(pids):
        try:
            proc = psutil.Process(pid)
            if proc.environ().get(MARKER_VAR) == MARKER:  # only what this run started
                proc.kill()
        except psutil.Error:
            continue
