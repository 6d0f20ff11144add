"""Progress: ctx.progress and the command-job protocol reach the status object quickly; the CLI shows it."""

from __future__ import annotations

import os
import pty
import re
import socket
import statistics
import subprocess
import sys
import time

from tests.conftest import DaemonProcess, wait_until


def watch(daemon: DaemonProcess, job_id: str, timeout: float = 30) -> list[tuple[float, dict]]:
    """Every distinct progress state the status object shows, with when it was first seen; the last is final."""
    seen: list[tuple[float, dict]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = daemon.client.status(job_id)
        if not seen or status["progress"] != seen[-1][1]["progress"] or status["done"]:
            seen.append((time.time(), status))
        if status["done"]:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not end in {timeout} s")


def test_progress_fields_move_and_reach_100_percent(daemon: DaemonProcess) -> None:
    job_id = daemon.submit("steps", {"steps": 5, "delay": 0.3})["id"]
    seen = [status for _, status in watch(daemon, job_id)]
    moving = [s for s in seen if s["progress"] is not None]
    # Only forward; the final status repeats the last step when the watcher saw it running first.
    assert [s["progress"] for s in moving] == sorted(s["progress"] for s in moving)
    assert len(moving) >= 3, f"progress did not move: {[s['progress'] for s in seen]}"
    assert [s["percent_complete"] for s in moving][:1] != [100.0]
    final = seen[-1]
    assert final["state"] == "succeeded"
    assert (final["progress"], final["total"], final["percent_complete"], final["message"]) == (5, 5, 100.0, "step 5")
    assert moving[0]["updated_at"] < final["updated_at"]


def test_progress_reaches_the_status_within_half_a_second(daemon: DaemonProcess) -> None:
    job_id = daemon.submit("timed_steps", {"steps": 5, "delay": 0.6})["id"]
    seen = watch(daemon, job_id)
    reported = daemon.client.status(job_id)["result"]["times"]
    first_seen = {status["progress"]: at for at, status in seen if status["progress"] is not None}
    latencies = [first_seen[n] - reported[n - 1] for n in range(1, 6) if n in first_seen]
    print(f"\nprogress latency (s): {[round(x, 3) for x in latencies]}")
    assert len(latencies) >= 4
    assert statistics.median(latencies) < 0.5
    assert max(latencies) < 1.5  # generous: a noisy shared machine can stall any single poll


def test_command_job_progress_protocol(daemon: DaemonProcess) -> None:
    job_id = daemon.submit("shell_progress", {"steps": 4, "delay": 0.3})["id"]
    seen = [status for _, status in watch(daemon, job_id)]
    assert len([s for s in seen if s["progress"] is not None]) >= 2
    final = seen[-1]
    assert final["state"] == "succeeded" and final["percent_complete"] == 100.0 and final["message"] == "step 4"
    assert "::progress" not in daemon.client.log(job_id)  # protocol lines are not output


PLAIN = re.compile(r"^steps (?P<id>[0-9a-f]{20}) (?P<state>\w+) (?P<pct>[\d.]+)% \((?P<done>\d+)/5\) "
                   r"step (?P=done) \[\d+:\d\d:\d\d\]$")


def test_cli_wait_prints_plain_progress_lines_when_not_a_tty(daemon: DaemonProcess) -> None:
    job_id = daemon.submit("steps", {"steps": 5, "delay": 0.4})["id"]
    out = daemon.cli("wait", job_id)
    assert out.returncode == 0, out.stderr
    lines = [PLAIN.match(line) for line in out.stderr.splitlines() if "%" in line]
    assert lines and all(lines), out.stderr
    assert len(lines) >= 2 and lines[-1]["pct"] == "100.0" and lines[-1]["state"] == "succeeded"
    assert "\x1b[" not in out.stderr  # no terminal control codes in a pipe
    assert out.stdout.startswith(f"{job_id}  steps  succeeded")


def test_submit_follow_shows_progress_then_the_result(daemon: DaemonProcess) -> None:
    out = daemon.cli("submit", "steps", "steps=3", "delay=0.3", "--follow")
    assert out.returncode == 0, out.stderr
    assert re.search(r"100\.0% \(3/3\) step 3", out.stderr), out.stderr
    assert "result: " in out.stdout


def test_cli_wait_draws_a_bar_with_percent_message_and_elapsed_on_a_tty(daemon: DaemonProcess) -> None:
    job_id = daemon.submit("steps", {"steps": 4, "delay": 0.3})["id"]
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "supervisor", "wait", job_id], env={**daemon.env, "COLUMNS": "120"},
                            stdout=subprocess.PIPE, stderr=follower, cwd=daemon.base)
    os.close(follower)
    screen = b""
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # EIO: the other side closed
            break
        if not data:
            break
        screen += data
    proc.wait(timeout=30)
    os.close(leader)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode(errors="replace"))
    assert proc.returncode == 0
    assert "100%" in text and "step 4" in text and re.search(r"0:00:0\d", text), text
    assert "━" in text  # the bar itself


def test_malformed_reports_are_ignored_and_the_daemon_lives(daemon: DaemonProcess) -> None:
    """The progress socket is open to every local user and a job's run dir belongs to its user:
    nothing sent or written there may take the daemon down (it did: a huge integer, deep nesting),
    and a ping's own values are never used: only what the job wrote in its run dir."""
    running = daemon.submit("sleep", {"seconds": 30})
    huge = "1" + "0" * 400  # float() of it raises OverflowError
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rid = running["id"]
    events = str(daemon.state_dir / "events.sock")
    for packet in (f'{{"id": "{rid}", "progress": {huge}}}', "[" * 100_000, '{"progress": 1}',
                   f'{{"id": "{rid}", "progress": "1", "total": []}}', "[1]", '{"id": "../../etc"}',
                   f'{{"id": "{rid}", "progress": 1, "total": 2, "message": "forged"}}'):
        sock.sendto(packet.encode(), events)
    sock.sendto(b"\xff", events)
    # The job itself (here the test, as root) rewrites its progress.json, then pings: only that counts.
    report = f'{{"id": "{rid}", "progress": 1, "total": 2, "message": "\\ud800 and \\u0000"}}'
    (daemon.state_dir / "run" / rid / "progress.json").write_text(report)
    sock.sendto(f'{{"id": "{rid}"}}'.encode(), events)
    sock.close()
    # Pings are read in order: once the real one is applied, every forged one was ignored.
    wait_until(lambda: daemon.client.status(rid)["message"], what="the report from the run dir")
    assert daemon.client.status(rid)["message"] == "\ufffd and \ufffd"
    unreadable = ("ProcessDied", "Lost")  # as if it left no result: lost if the fork server recorded no status
    forged = [
        ({"progress": f'{{"id": "{{id}}", "progress": {huge}}}', "result": '{"state": "bogus"}'}, ("InvalidResult",)),
        ({"progress": "[" * 100_000, "result": "[" * 100_000}, unreadable),
        ({"result": '{"state": "succeeded", "exit_code": "zero", "signal": 99999}'}, ("InvalidResult",)),
        ({"result": '{"state": "succeeded", "result": {"text": "\\ud800"}, "exit_code": 0}'}, ("InvalidResult",)),
        ({"result": '{"state": "succeeded", "result": ' + "[" * 70 + "]" * 70 + ', "exit_code": 0}'}, ("InvalidResult",)),
        ({"result": '{"state": "succeeded", "result": NaN, "exit_code": 0}'}, ("InvalidResult",)),
    ]
    for params, expected in forged:
        status = daemon.wait(daemon.submit("forge_reports", params)["id"])
        assert status["state"] in ("failed", "lost") and status["progress"] is None, status
        assert status["error"]["type"] in expected, status
    assert len(daemon.client.list(job="forge_reports")["items"]) == len(forged)  # the list serialises them all
    assert daemon.client.request("GET", "/healthz").status_code == 200
    assert daemon.client.status(running["id"])["state"] == "running"
    assert daemon.wait(daemon.submit("echo", {"value": 1})["id"])["result"]["value"] == 1


def test_percent_stays_within_0_and_100_and_whole_counts_stay_ints(daemon: DaemonProcess) -> None:
    over = daemon.submit("report_progress", {"done": 12, "total": 10}, wait=20)
    assert (over["progress"], over["total"], over["percent_complete"]) == (12, 10, 100.0)
    assert isinstance(over["progress"], int)
    under = daemon.submit("report_progress", {"done": -1, "total": 10}, wait=20)
    assert under["percent_complete"] == 0.0
    half = daemon.submit("report_progress", {"done": 2.5, "total": 10}, wait=20)
    assert (half["progress"], half["percent_complete"]) == (2.5, 25.0)
