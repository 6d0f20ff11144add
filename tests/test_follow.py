"""Following a job's output: streams lines as they are written, ends with the job, survives disconnects."""

from __future__ import annotations

import socket
import time

import httpx

from tests.conftest import DaemonProcess, wait_until


def test_follow_receives_lines_written_after_it_started_and_ends_with_the_job(daemon: DaemonProcess) -> None:
    job_id = daemon.submit("print_lines", {"count": 10, "every": 0.2})["id"]
    arrivals: list[tuple[float, str]] = []
    for chunk in daemon.client.follow_log(job_id):  # returns only when the job has ended
        arrivals.append((time.time(), chunk))
    status = daemon.client.status(job_id)
    assert status["state"] == "succeeded"
    text = "".join(chunk for _, chunk in arrivals)
    assert [line.split(" ", 1)[1] for line in text.splitlines()] == [f"line {n}" for n in range(10)]
    assert len(arrivals) >= 3, "the output arrived in one piece: it was not streamed"
    assert arrivals[0][0] < arrivals[-1][0] - 1.0  # the first lines came while the job was still printing


def test_follow_from_an_offset(daemon: DaemonProcess) -> None:
    job_id = daemon.submit("print_lines", {"count": 5, "every": 0.0}, wait=20)["id"]
    full = daemon.client.log(job_id)
    first_line = len(full.splitlines(keepends=True)[0].encode())
    rest = "".join(daemon.client.follow_log(job_id, offset=first_line))
    assert rest == full[first_line:]
    resp = daemon.client.request("GET", f"/v1/jobs/{job_id}/log", params={"offset": first_line})
    assert resp.text == rest and int(resp.headers["x-log-offset"]) == len(full.encode())


def test_client_disconnect_mid_stream_does_no_harm(daemon: DaemonProcess) -> None:
    job_id = daemon.submit("print_lines", {"count": 30, "every": 0.1})["id"]
    for _ in range(5):  # several followers walk away mid-stream
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)), base_url="http://x") as http:
            with http.stream("GET", f"/v1/jobs/{job_id}/log", params={"follow": "true"}) as resp:
                next(resp.iter_text())
    # and one drops the socket without a word, in the middle of a response
    raw = socket.socket(socket.AF_UNIX)
    raw.connect(str(daemon.socket))
    raw.sendall(f"GET /v1/jobs/{job_id}/log?follow=true HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert raw.recv(100).startswith(b"HTTP/1.1 200")
    raw.close()
    assert daemon.client.request("GET", "/healthz").json()["status"] == "ok"
    status = daemon.wait(job_id)
    assert status["state"] == "succeeded" and status["result"] == {"lines": 30}
    assert daemon.client.log(job_id).count("line ") == 30
    wait_until(lambda: daemon.client.request("GET", "/healthz").status_code == 200)
    assert "Traceback" not in daemon.log() and " ERROR " not in daemon.log()


def test_cli_logs_follow_prints_until_the_job_ends(daemon: DaemonProcess) -> None:
    job_id = daemon.submit("print_lines", {"count": 6, "every": 0.2})["id"]
    out = daemon.cli("logs", job_id, "-f", timeout=60)
    assert out.returncode == 0, out.stderr
    assert [line.split(" ", 1)[1] for line in out.stdout.splitlines()] == [f"line {n}" for n in range(6)]
