"""CLI habits of CONTRACT §14: Ctrl-C while waiting exits 130 and the job goes on; --version;
shell completion; a `submit --wait` that runs out prints the status, as the README says."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import psutil
import pytest

from tests.conftest import DaemonProcess, wait_until


def _connected(proc: subprocess.Popen[str]) -> bool:
    """The CLI holds a connection to the daemon: it is past start-up, inside its wait or follow."""
    try:
        return bool(psutil.Process(proc.pid).net_connections(kind="unix"))
    except psutil.Error:
        return False


def _interrupt(daemon: DaemonProcess, *args: str, ready: Callable[[], object] = lambda: True,
               said: str | None = None) -> tuple[int, str]:
    """Ctrl-C the CLI once it is connected (`said`: once its stderr shows this instead, for a
    follow that polls between requests, one connection each) and `ready()` holds."""
    proc = subprocess.Popen([sys.executable, "-m", "supervisor", *args], env=daemon.env, cwd=daemon.base,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    os.set_blocking(proc.stderr.fileno(), False)
    early = bytearray()

    def inside() -> bool:
        if said is None:
            return _connected(proc)
        with contextlib.suppress(BlockingIOError):
            early.extend(os.read(proc.stderr.fileno(), 65536))
        return said.encode() in early

    try:
        wait_until(lambda: (inside() and ready()) or proc.poll() is not None, timeout=20,
                   what="the CLI to connect")
        proc.send_signal(signal.SIGINT)
        os.set_blocking(proc.stderr.fileno(), True)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, (bytes(early) + err).decode()


@pytest.mark.parametrize("command", ["wait", "logs -f", "submit --follow"])
def test_ctrl_c_while_following_a_job_exits_130_and_the_job_goes_on(daemon: DaemonProcess, command: str) -> None:
    if command == "submit --follow":
        # `said`: its first progress line, so the CLI holds the job id (a Ctrl-C while the 202 is
        # still on its way can only say the job may have been queued)
        code, err = _interrupt(daemon, "submit", "sleep", "seconds=30", "--follow",
                               ready=lambda: daemon.client.list(state="running")["items"], said="sleep ")
        job_id = daemon.client.list(limit=1)["items"][0]["id"]
    else:
        job_id = daemon.submit("sleep", {"seconds": 30})["id"]
        code, err = _interrupt(daemon, *command.split()[:1], job_id, *command.split()[1:])
    assert code == 130, err
    assert f"job {job_id} goes on" in err and "Traceback" not in err and "Aborted" not in err
    assert not daemon.client.status(job_id)["done"]


@pytest.mark.parametrize("command", [["submit", "sleep", "seconds=30"], ["exec", "--", "sleep", "30"]])
def test_ctrl_c_during_a_submit_wait_names_the_job_that_goes_on(daemon: DaemonProcess, command: list[str]) -> None:
    """The CLI submits, then waits in a request of its own: once the job exists, a Ctrl-C names it."""
    listed: list[bool] = []

    def submitted_a_while_ago() -> bool:  # the job was listed at the poll before, so its 202 has been read
        listed.append(bool(daemon.client.list()["items"]))
        return listed[-2:] == [True, True]

    code, err = _interrupt(daemon, command[0], "--wait", "60", *command[1:], ready=submitted_a_while_ago)
    job_id = daemon.client.list()["items"][0]["id"]
    assert code == 130, err
    assert f"job {job_id} goes on" in err and "Traceback" not in err, err
    assert not daemon.client.status(job_id)["done"]


def test_ctrl_c_in_batch_and_user_log_exits_130(daemon: DaemonProcess) -> None:
    items = daemon.base / "items.jsonl"
    items.write_text('{"seconds": 30}\n')
    code, err = _interrupt(daemon, "batch", "sleep", "--items", str(items),  # its first progress line
                           ready=lambda: daemon.client.list(state="running")["items"], said="batch ")
    assert code == 130 and "goes on" in err, err
    batch_id = err.split("batch ")[1].split()[0]
    jobs = daemon.client.batch(batch_id)["items"]
    assert jobs and not jobs[0]["done"]
    code, err = _interrupt(daemon, "user-log", "-f")
    assert code == 130 and "go on" in err and "Traceback" not in err, err


def test_version_and_shell_completion(daemon: DaemonProcess) -> None:
    out = daemon.cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"runspace {version('runspace')}"
    runspace = str(Path(sys.executable).parent / "runspace")  # completion keys on the program's name
    script = subprocess.run([runspace], env={**daemon.env, "_RUNSPACE_COMPLETE": "bash_source"},
                            capture_output=True, text=True, timeout=30)
    assert "complete " in script.stdout and "_RUNSPACE_COMPLETE" in script.stdout
    words = subprocess.run([runspace], capture_output=True, text=True, timeout=30,
                           env={**daemon.env, "_RUNSPACE_COMPLETE": "bash_complete", "COMP_WORDS": "runspace sta",
                                "COMP_CWORD": "1"})
    assert "status" in words.stdout


def test_submit_wait_that_runs_out_prints_the_status_and_says_the_job_goes_on(daemon: DaemonProcess) -> None:
    out = daemon.cli("submit", "sleep", "seconds=30", "--wait", "0.2")
    assert out.returncode == 124
    job_id, _, state = out.stdout.split()[:3]
    assert state in ("queued", "running") and "goes on" in out.stderr
    assert not daemon.client.status(job_id)["done"]
    as_json = daemon.cli("submit", "sleep", "seconds=30", "--wait", "0.2", "--json")
    assert as_json.returncode == 124 and json.loads(as_json.stdout)["done"] is False
