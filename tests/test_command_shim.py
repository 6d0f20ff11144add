"""Command jobs behave the same under the native shim (runspace-shim) and the Python one:
output lines, the ::progress / ::log protocol, exit codes, signal deaths, a missing program."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from supervisor.runner.files import RunFiles
from supervisor.runner.shim import holds_fds_safely, native_shim
from tests.conftest import DaemonProcess, wait_until

# Every byte the job prints: a plain line, a CR inside a line, invalid UTF-8 (\377, and a cut
# 3-byte sequence that Python's "replace" makes one U+FFFD), the protocol lines, a NUL, and a
# last line without its newline.
_CHATTY = r"""
echo plain line
printf 'a\rb\n'
printf 'bad \377 cut \342\202 end\n'
echo '::progress 1 4'
echo '::progress 2 4 half  way'
echo '::progress nonsense'
echo '::progress 1_000 4'
echo '::log for the user'
printf 'nul\000byte\n'
printf 'no newline'
"""


@pytest.fixture(params=["native", "python"])
def shim_daemon(request: pytest.FixtureRequest, make_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    d = make_daemon(RUNSPACE_NATIVE_SHIM="true" if request.param == "native" else "false")
    health = d.client.request("GET", "/healthz").json()
    assert health["command_shim"] == request.param, "runspace-shim was not built: pip install runs setup.py"
    return d


def _job_lines(d: DaemonProcess, job_id: str) -> list[str]:
    return [line.split(" ", 1)[1] for line in d.client.log(job_id).splitlines()]


def _user_lines(d: DaemonProcess, status: dict) -> list[str]:
    text = (d.log_dir / "users" / f"{status['log_user']}.log").read_text(errors="strict")
    marker = f" {status['id']} sh_script "
    return [line.split(marker, 1)[1] for line in text.splitlines() if marker in line]


def test_output_progress_and_log_lines(shim_daemon: DaemonProcess) -> None:
    d = shim_daemon
    status = d.wait(d.submit("sh_script", {"script": _CHATTY})["id"])
    assert status["state"] == "succeeded" and status["result"] == {"exit_code": 0}, d.client.log(status["id"])
    assert (status["progress"], status["total"], status["message"]) == (2, 4, "half  way")
    assert _job_lines(d, status["id"]) == [
        "plain line", "a\\rb", "bad \ufffd cut \ufffd end", "::progress nonsense", "::progress 1_000 4", "for the user",
        "nul\\x00byte", "no newline",
    ]
    lines = _user_lines(d, status)
    assert "progress 2/4: half  way" in lines and "for the user" in lines
    assert not any(line.startswith("progress 1/4") for line in lines), "progress without a message is no event"


def test_exit_code_and_signal_death(shim_daemon: DaemonProcess) -> None:
    d = shim_daemon
    failed = d.wait(d.submit("exit_with", {"code": 7})["id"])
    assert (failed["state"], failed["exit_code"], failed["signal"]) == ("failed", 7, None)
    assert failed["error"] == {"type": "CommandFailed", "message": "/bin/sh exited with code 7"}
    killed = d.wait(d.submit("sh_script", {"script": "kill -KILL $$"})["id"])
    assert (killed["state"], killed["exit_code"], killed["signal"]) == ("failed", None, 9)
    assert killed["error"] == {"type": "CommandKilled", "message": "/bin/sh was killed by SIGKILL"}


def test_missing_program_fails_naming_it(shim_daemon: DaemonProcess) -> None:
    d = shim_daemon
    status = d.wait(d.submit("run_program", {"program": "/nonexistent/tool"})["id"])
    assert status["state"] == "failed" and status["exit_code"] == 1
    assert status["error"]["type"] == "FileNotFoundError"
    assert "No such file or directory" in status["error"]["message"]
    assert "/nonexistent/tool" in status["error"]["message"]


def test_the_native_shim_is_the_job_process_and_stays_small(make_daemon: Callable[..., DaemonProcess]) -> None:
    d = make_daemon()
    job_id = d.submit("sh_script", {"script": "echo ready; exec sleep 60"})["id"]
    wait_until(lambda: "ready" in d.client.log(job_id), what="the command to start")
    shim = psutil.Process(d.client.status(job_id)["pid"])
    assert os.path.basename(shim.exe()) == "runspace-shim"
    assert [child.name() for child in shim.children()] == ["sleep"]
    # The bound for a job's supervisor; a waiting CPython shim has ~3 MB of its own.
    assert shim.memory_full_info().uss < 2 * 2**20
    d.client.cancel(job_id)
    assert d.wait(job_id)["state"] == "cancelled"


def test_a_cancelled_command_is_cancelled_not_failed(shim_daemon: DaemonProcess) -> None:
    """The shim outlives the SIGTERM and reports that its command died of it; the kill wins."""
    d = shim_daemon
    job_id = d.submit("sh_script", {"script": "echo ready; exec sleep 60"})["id"]
    wait_until(lambda: "ready" in d.client.log(job_id), what="the command to start")
    d.client.cancel(job_id)
    status = d.wait(job_id)
    assert (status["state"], status["reason"], status["signal"]) == ("cancelled", "cancelled", 15), status
    assert status["error"]["type"] == "Cancelled"


def test_a_command_that_ends_while_the_daemon_is_down_reports_its_exit_code(shim_daemon: DaemonProcess,
                                                                          tmp_path: Path) -> None:
    d = shim_daemon
    gate = tmp_path / "gate"
    script = f'echo ready; while [ ! -e {gate} ]; do sleep 0.05; done; echo "::progress 1 1 done"; exit 5'
    job_id = d.submit("sh_script", {"script": script})["id"]
    wait_until(lambda: "ready" in d.client.log(job_id), what="the command to start")
    shim = psutil.Process(d.client.status(job_id)["pid"])
    d.kill9()
    gate.touch()
    wait_until(lambda: not shim.is_running() or shim.status() == psutil.STATUS_ZOMBIE, what="the job to end")
    d.start()
    status = d.wait(job_id)
    assert (status["state"], status["exit_code"], status["reason"]) == ("failed", 5, None), status
    assert status["error"] == {"type": "CommandFailed", "message": "/bin/sh exited with code 5"}
    assert (status["progress"], status["total"]) == (1, 1)


def test_a_command_jobs_result_is_its_started_file_linked(shim_daemon: DaemonProcess, tmp_path: Path) -> None:
    """As job_main does for Python jobs: the result goes into the run-once guard file and is
    linked as result.json, so a command job creates no temp file for it (a new inode costs
    ~0.5 ms of CPU per job on this disk). The daemon is down while the job ends, so the run
    dir is still there to look at."""
    d = shim_daemon
    gate = tmp_path / "gate"
    job_id = d.submit("sh_script", {"script": f"echo ready; while [ ! -e {gate} ]; do sleep 0.05; done"})["id"]
    wait_until(lambda: "ready" in d.client.log(job_id), what="the command to start")
    shim = psutil.Process(d.client.status(job_id)["pid"])
    d.kill9()
    gate.touch()
    wait_until(lambda: not shim.is_running() or shim.status() == psutil.STATUS_ZOMBIE, what="the job to end")
    files = RunFiles.of(d.state_dir, job_id)
    result, started = files.result.stat(), files.started.stat()
    assert (result.st_ino, result.st_nlink) == (started.st_ino, 2)
    assert [p.name for p in files.dir.iterdir() if p.name.startswith(".")] == []  # no temp file left behind
    d.start()
    status = d.wait(job_id)
    assert (status["state"], status["result"]) == ("succeeded", {"exit_code": 0}), status


def _has_interpreter(binary: Path) -> bool:
    """Whether an ELF64 executable names a dynamic loader (a PT_INTERP program header)."""
    data = binary.read_bytes()
    offset, size, count = int.from_bytes(data[0x20:0x28], "little"), int.from_bytes(data[0x36:0x38], "little"), \
        int.from_bytes(data[0x38:0x3A], "little")
    return any(int.from_bytes(data[offset + i * size:offset + i * size + 4], "little") == 3 for i in range(count))


def test_the_native_shim_is_linked_statically() -> None:
    """One shim starts per command job: without the dynamic loader its exec costs ~0.2 ms of
    CPU less, and a running shim ~40 KiB less PSS (setup.py)."""
    static_libc = subprocess.run(["cc", "-print-file-name=libc.a"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(static_libc):
        pytest.skip("no static C library here (scripts/setup installs libc6-dev, which has one)")
    built = native_shim()
    assert built is not None, "runspace-shim was not built: pip install runs setup.py"
    assert not _has_interpreter(built)


def test_progress_messages_keep_quotes_and_backslashes_and_the_last_report_always_arrives(
        shim_daemon: DaemonProcess) -> None:
    d = shim_daemon
    # A burst far above ten reports a second: all but the final one may be dropped, never it.
    script = r"""i=0; while [ $i -lt 49 ]; do i=$((i+1)); echo "::progress $i 50"; done
echo '::progress 49.5 50 say "hi" \\ there'; echo '::progress 50 50'"""
    status = d.wait(d.submit("sh_script", {"script": script})["id"])
    assert status["state"] == "succeeded"
    assert (status["progress"], status["total"], status["message"]) == (50, 50, 'say "hi" \\ there')
    assert 'progress 49.5/50: say "hi" \\ there' in _user_lines(d, status)


def test_sigterm_to_the_job_process_alone_reaches_the_command(shim_daemon: DaemonProcess) -> None:
    d = shim_daemon
    script = "trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.05; done"
    job_id = d.submit("sh_script", {"script": script})["id"]
    wait_until(lambda: "ready" in d.client.log(job_id), what="the command to start")
    os.kill(d.client.status(job_id)["pid"], signal.SIGTERM)  # the job's own process, which this test started
    status = d.wait(job_id)
    assert "got TERM" in d.client.log(job_id)
    assert (status["state"], status["exit_code"], status["reason"]) == ("failed", 3, None), status


def test_sigterm_before_the_relay_is_ready_still_reaches_the_command(shim_daemon: DaemonProcess) -> None:
    """The command's first act signals its parent, the job process, which may not have its
    forwarding handler yet: the signal must wait for it, not end the job process."""
    d = shim_daemon
    script = "trap 'echo got TERM; exit 3' TERM; kill -TERM $PPID; while :; do sleep 0.05; done"
    status = d.wait(d.submit("sh_script", {"script": script})["id"])
    assert (status["state"], status["exit_code"], status["error"]["type"]) == ("failed", 3, "CommandFailed"), status
    assert "got TERM" in d.client.log(status["id"])


def test_progress_out_of_float_range_leaves_the_status_readable(shim_daemon: DaemonProcess) -> None:
    d = shim_daemon
    status = d.wait(d.submit("sh_script", {"script": "echo '::progress 1e307 1e-300 huge'"})["id"])
    assert status["state"] == "succeeded" and status["percent_complete"] is None
    assert d.client.status(status["id"])["message"] == "huge"


def test_a_shim_others_can_read_is_not_trusted_with_a_run_as_jobs_fds(tmp_path: Path) -> None:
    """exec of a binary its user may read makes the process dumpable until shim.c's first
    prctl: then a job's user could take the root-opened user-log fd (pidfd_getfd)."""
    binary = tmp_path / "runspace-shim"
    binary.write_bytes(b"")
    binary.chmod(0o711)
    assert holds_fds_safely(binary)
    binary.chmod(0o755)
    assert not holds_fds_safely(binary)
    built = native_shim()
    assert built is not None and holds_fds_safely(built), "setup.py installs runspace-shim 0711"


def test_a_command_job_ends_when_its_command_exits_not_when_its_output_closes(shim_daemon: DaemonProcess,
                                                                             tmp_path: Path) -> None:
    """A background child still holding stdout is a leftover: killed, and the job is over."""
    d = shim_daemon
    pidfile = tmp_path / "leftover.pid"
    status = d.submit("sh_script", {"script": f"sleep 30 & echo $! > {pidfile}; echo hi; printf bye"}, wait=20)
    assert status["done"], f"still {status['state']} while its background child holds stdout"
    assert (status["state"], status["exit_code"], status["reason"]) == ("succeeded", 0, None), status
    assert _job_lines(d, status["id"]) == ["hi", "bye"]
    leftover = int(pidfile.read_text())
    wait_until(lambda: not psutil.pid_exists(leftover) or psutil.Process(leftover).status() == psutil.STATUS_ZOMBIE,
               10, what="the leftover sleep to be killed")
