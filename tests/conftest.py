"""Fixtures: a real daemon on a temporary socket, a client, and a check that no job process leaks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from supervisor.client import Client
from supervisor.runner.cgroups import JobCgroups, cgroup_root_name, cgroup_root_path

ROOT = Path(__file__).resolve().parent.parent
TEST_JOBS = Path(__file__).resolve().parent / "jobs"
TEST_MARKER = "RUNSPACE_TEST_MARKER"


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def marked_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get(TEST_MARKER) == marker \
                    and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


class DaemonProcess:
    """One `runspace daemon` subprocess on a private socket and state dir."""

    def __init__(self, base: Path, marker: str, env: dict[str, str]) -> None:
        self.base = base
        self.socket = base / "runspace.sock"
        self.state_dir = base / "state"
        self.log_dir = self.state_dir / "logs"
        self.marker = marker
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "RUNSPACE_SOCKET": str(self.socket),
            "RUNSPACE_STATE_DIR": str(self.state_dir),
            "RUNSPACE_JOBS_PATH": str(TEST_JOBS),
            "DEMO_ROOT": str(base / "demo"),
            "RUNSPACE_KILL_GRACE": "1",
            "RUNSPACE_JOB_ENV_PASSTHROUGH": TEST_MARKER,
            TEST_MARKER: marker,
            **env,
        }
        # Always passed through: the leak check finds a forked job by the marker in the
        # environment it started with, which a root daemon's fork server keeps only if listed.
        passthrough = self.env["RUNSPACE_JOB_ENV_PASSTHROUGH"].split(",")
        if TEST_MARKER not in passthrough:
            self.env["RUNSPACE_JOB_ENV_PASSTHROUGH"] = ",".join([*filter(None, passthrough), TEST_MARKER])
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = Client(self.socket)

    def start(self, timeout: float = 20.0, health: int = 200) -> DaemonProcess:
        """Start, and wait until /healthz answers `health` (503: a daemon started degraded)."""
        stderr = open(self.base / "daemon.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "supervisor", "daemon", "--debug"],
                                     env=self.env, stdout=stderr, stderr=stderr, cwd=self.base)
        stderr.close()

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return self.raw("GET", "/healthz").status_code == health
            except httpx.TransportError:
                return False

        wait_until(ready, timeout, what=f"daemon to answer /healthz with {health}")
        return self

    def raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The answer as it is, errors included (Client.request raises them)."""
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://runspace",
                          timeout=60) as http:
            return http.request(method, path, **kwargs)

    def log(self) -> str:
        return (self.base / "daemon.log").read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def cli(self, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "supervisor", *args], env=self.env, input=input,
                              capture_output=True, text=True, timeout=timeout, cwd=self.base)

    # conveniences for tests
    def submit(self, job: str, params: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        _, status = self.client.submit(job, params or {}, **extra)
        return status

    def wait(self, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
        status = self.client.wait(job_id, timeout=timeout)
        assert status["done"], f"job {job_id} not done after {timeout} s: {status}"
        return status


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Start daemons on demand; at teardown, cancel what still runs, stop them, and fail on leaks."""
    marker = uuid.uuid4().hex
    daemons: list[DaemonProcess] = []

    def make(base: Path | None = None, **env: str) -> DaemonProcess:
        base = base or tmp_path / f"d{len(daemons)}"
        base.mkdir(parents=True, exist_ok=True)
        d = DaemonProcess(base, marker, env)
        daemons.append(d)
        return d.start()

    yield make

    for d in daemons:
        if d.proc is not None and d.proc.poll() is None:
            _cancel_unfinished(d)
        d.stop()
    # A job's last processes may need a moment to be reaped after a kill: poll, then judge.
    deadline = time.monotonic() + 3.0
    while (leaked := marked_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for proc in leaked:
        try:
            proc.kill()
        except psutil.Error:
            pass
    for d in daemons:  # a daemon killed with SIGKILL cannot remove its (empty) cgroup root itself
        root = cgroup_root_path(cgroup_root_name(d.state_dir))
        if root is not None and root.is_dir():
            JobCgroups(root).close()
    assert not leaked, f"job processes outlived the test: {[(p.pid, p.cmdline()) for p in leaked]}"


def _cancel_unfinished(d: DaemonProcess) -> None:
    try:
        for state in ("queued", "running"):  # queued first: cancelling a running job starts the next one
            for item in d.client.list(state=state, limit=1000)["items"]:
                try:
                    d.client.cancel(item["id"])
                except Exception:
                    pass
    except Exception:
        pass


@pytest.fixture
def daemon(make_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    return make_daemon()


@pytest.fixture
def client(daemon: DaemonProcess) -> Client:
    return daemon.client


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A private PostgreSQL server for the whole session (tests/pg.py); skips without one."""
    pytest.importorskip("psycopg", reason="the [postgres] extra (psycopg) is not installed")
    from pg import find_pg_bin, private_postgres

    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL binaries (initdb, pg_ctl): install them with scripts/setup as root, "
                    "or apt-get install postgresql")
    with private_postgres(bin_dir) as server:
        yield server.url


@pytest.fixture
def pg_url(pg_server: str) -> str:
    """A fresh database on the session's server for each test."""
    from pg import fresh_database

    return fresh_database(pg_server)

