"""systemd integration for real: sd_notify datagrams, socket activation, and the unit files."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.client import Client
from tests.conftest import ROOT, TEST_JOBS, wait_until

UNITS = ROOT / "systemd"
_ACTIVATE = (
    "import os, sys\n"
    "fd = int(sys.argv[1])\n"
    "if fd != 3:\n"
    "    os.dup2(fd, 3)\n"  # sd_listen_fds: passed sockets start at fd 3
    "os.environ['LISTEN_FDS'] = '1'\n"
    "os.environ['LISTEN_PID'] = str(os.getpid())\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def daemon_env(base: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RUNSPACE_SOCKET": str(base / "runspace.sock"),
        "RUNSPACE_STATE_DIR": str(base / "state"),
        "RUNSPACE_JOBS_PATH": str(TEST_JOBS),
        **extra,
    }


class Started:
    """A daemon subprocess the test starts itself (the fixtures cannot pass fds or NOTIFY_SOCKET)."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, pass_fds: tuple[int, ...] = ()) -> None:
        self.log_path = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out, pass_fds=pass_fds)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture
def started() -> Iterator[list[Started]]:
    daemons: list[Started] = []
    yield daemons
    for d in daemons:
        d.stop()


class NotifyListener:
    """What systemd's NOTIFY_SOCKET is: a datagram socket the daemon sends `KEY=value` lines to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def receive_until(self, wanted: str, timeout: float) -> list[str]:
        def arrived() -> bool:
            try:
                self.messages.extend(self.sock.recv(4096).decode().splitlines())
            except TimeoutError:
                pass
            return wanted in self.messages

        wait_until(arrived, timeout, interval=0, what=f"{wanted} on NOTIFY_SOCKET (got {self.messages})")
        return self.messages


def test_notify_ready_watchdog_and_stopping(tmp_path: Path, started: list[Started]) -> None:
    listener = NotifyListener(tmp_path / "notify.sock")
    env = daemon_env(tmp_path, NOTIFY_SOCKET=str(listener.path), WATCHDOG_USEC="400000")
    t0 = time.monotonic()
    d = Started([sys.executable, "-m", "supervisor", "daemon"], env, tmp_path / "daemon.log")
    started.append(d)
    listener.receive_until("READY=1", 30)
    assert any(m.startswith("STATUS=") for m in listener.messages)
    with Client(tmp_path / "runspace.sock") as client:  # READY means it really answers
        assert client.request("GET", "/healthz").status_code == 200
    listener.messages.clear()
    ready_at = time.monotonic()
    listener.receive_until("WATCHDOG=1", 10)
    wait_until(lambda: listener.receive_until("WATCHDOG=1", 5).count("WATCHDOG=1") >= 3, 10,
               what="repeated watchdog pings")
    # 3 pings at WATCHDOG_USEC/2 = 0.2 s apart; generous bound for a busy machine.
    assert time.monotonic() - ready_at < 8, "watchdog pings should come every WATCHDOG_USEC/2"
    d.proc.send_signal(signal.SIGTERM)
    listener.receive_until("STOPPING=1", 15)
    assert d.proc.wait(15) == 0
    assert time.monotonic() - t0 < 60


def test_no_watchdog_pings_without_watchdog_usec(tmp_path: Path, started: list[Started]) -> None:
    listener = NotifyListener(tmp_path / "notify.sock")
    started.append(d := Started([sys.executable, "-m", "supervisor", "daemon"],
                                daemon_env(tmp_path, NOTIFY_SOCKET=str(listener.path)), tmp_path / "daemon.log"))
    listener.receive_until("READY=1", 30)
    with pytest.raises(pytest.fail.Exception):
        listener.receive_until("WATCHDOG=1", 1.5)
    assert d.stop() == 0


def test_jobs_do_not_inherit_notify_socket(tmp_path: Path, started: list[Started]) -> None:
    listener = NotifyListener(tmp_path / "notify.sock")
    started.append(Started([sys.executable, "-m", "supervisor", "daemon"],
                           daemon_env(tmp_path, NOTIFY_SOCKET=str(listener.path)), tmp_path / "daemon.log"))
    listener.receive_until("READY=1", 30)
    with Client(tmp_path / "runspace.sock") as client:
        status = client.submit("whoami", {}, wait=30)[1]
    assert status["state"] == "succeeded"
    assert "NOTIFY_SOCKET" not in status["result"]["env"] and "WATCHDOG_USEC" not in status["result"]["env"]


def _listening_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(16)
    return sock


def _activated(tmp_path: Path, sock: socket.socket, name: str) -> Started:
    # The daemon is told a different socket path: it must use the passed fd, not bind its own.
    env = daemon_env(tmp_path, RUNSPACE_SOCKET=str(tmp_path / "unused.sock"))
    argv = [sys.executable, "-c", _ACTIVATE, str(sock.fileno()), sys.executable, "-m", "supervisor", "daemon"]
    return Started(argv, env, tmp_path / f"{name}.log", pass_fds=(sock.fileno(),))


def test_socket_activation_uses_the_passed_socket_and_leaves_it(tmp_path: Path, started: list[Started]) -> None:
    path = tmp_path / "activated.sock"
    sock = _listening_socket(path)
    client = Client(path)
    # The client connects before the daemon exists: systemd's backlog holds it.
    started.append(first := _activated(tmp_path, sock, "first"))
    status = client.submit("echo", {"value": "activated"}, wait=30)[1]
    assert status["result"]["value"] == "activated"
    assert not (tmp_path / "unused.sock").exists()
    assert first.stop() == 0
    assert f"listening on {path} (from systemd)" in first.log()
    assert path.exists(), "the socket belongs to systemd: the daemon must not unlink it"
    # A restarted daemon gets the same socket again, and sees the earlier job.
    started.append(_activated(tmp_path, sock, "second"))
    assert wait_until(lambda: _answers(client), 30, what="restarted daemon on the same socket")
    assert client.status(status["id"])["state"] == "succeeded"
    client.__exit__()
    sock.close()


def _answers(client: Client) -> bool:
    try:
        return client.request("GET", "/healthz").status_code == 200
    except Exception:
        return False


def test_listen_fds_for_another_pid_are_ignored(tmp_path: Path, started: list[Started]) -> None:
    env = daemon_env(tmp_path, LISTEN_FDS="1", LISTEN_PID="1")
    started.append(Started([sys.executable, "-m", "supervisor", "daemon"], env, tmp_path / "daemon.log"))
    with Client(tmp_path / "runspace.sock") as client:
        assert wait_until(lambda: _answers(client), 30, what="daemon on its own socket")


def test_unit_files_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    runspace = Path(sys.executable).parent / "runspace"
    if not runspace.exists():
        pytest.skip(f"the runspace console script is not installed next to {sys.executable}")
    for unit in ("runspace.service", "runspace.socket"):
        # Verified as installed: ExecStart pointing at this checkout's console script.
        text = (UNITS / unit).read_text().replace("/usr/local/bin/runspace", str(runspace))
        (tmp_path / unit).write_text(text)
    out = subprocess.run([analyze, "verify", str(tmp_path / "runspace.socket"), str(tmp_path / "runspace.service")],
                         capture_output=True, text=True, timeout=120)
    complaints = [line for line in (out.stdout + out.stderr).splitlines() if "runspace." in line]
    assert out.returncode == 0 and not complaints, out.stdout + out.stderr
    service = (UNITS / "runspace.service").read_text()
    for needed in ("Type=notify", "Restart=on-failure", "KillMode=process", "RuntimeDirectory=",
                   "StateDirectory=", "LogsDirectory=", "WatchdogSec="):
        assert needed in service
    socket_unit = (UNITS / "runspace.socket").read_text()
    assert "ListenStream=/run/runspace/runspace.sock" in socket_unit and "SocketMode=0660" in socket_unit
