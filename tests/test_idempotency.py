"""Idempotency-Key: a retried submission returns the original job; the same key with another body is 409."""

from __future__ import annotations

import httpx

from tests.conftest import DaemonProcess


def post(daemon: DaemonProcess, body: dict, key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)), base_url="http://x") as http:
        return http.post("/v1/jobs", json=body, headers=headers)


def test_retry_with_the_same_key_and_body_returns_the_original_job(daemon: DaemonProcess) -> None:
    body = {"job": "echo", "params": {"value": 1, "delay": 1.0}}
    first = post(daemon, body, key="order-17")
    again = post(daemon, body, key="order-17")
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again.headers["location"] == first.headers["location"]
    daemon.wait(first.json()["id"])
    done = post(daemon, body, key="order-17")  # the original has finished: its final status, 200
    assert done.status_code == 200 and done.json()["id"] == first.json()["id"]
    assert done.json()["result"]["value"] == 1
    assert len(daemon.client.list(limit=100)["items"]) == 1


def test_same_key_with_another_body_is_409(daemon: DaemonProcess) -> None:
    first = post(daemon, {"job": "echo", "params": {"value": 1}}, key="k-1")
    assert first.status_code == 202
    other = post(daemon, {"job": "echo", "params": {"value": 2}}, key="k-1")
    assert other.status_code == 409
    assert other.headers["content-type"].startswith("application/problem+json")
    assert first.json()["id"] in other.json()["detail"]
    assert post(daemon, {"job": "echo", "params": {"value": 2}}, key="k-2").status_code == 202  # other key: new job
    assert len(daemon.client.list(limit=100)["items"]) == 2


def test_key_in_the_body_and_with_wait(daemon: DaemonProcess) -> None:
    body = {"job": "echo", "params": {"value": "w"}, "idempotency_key": "in-body", "wait": 20}
    first = post(daemon, body)
    second = post(daemon, body)
    assert first.status_code == second.status_code == 200
    assert first.json()["id"] == second.json()["id"] and second.json()["result"]["value"] == "w"
    header_too = post(daemon, {"job": "echo", "params": {"value": "w"}}, key="in-body")
    assert header_too.json()["id"] == first.json()["id"]


def test_the_key_outlives_a_daemon_restart(make_daemon) -> None:
    daemon = make_daemon()
    first = post(daemon, {"job": "echo", "params": {"value": 3}}, key="restart-key")
    daemon.wait(first.json()["id"])
    daemon.stop()
    daemon.start()
    again = post(daemon, {"job": "echo", "params": {"value": 3}}, key="restart-key")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]


def test_cli_idempotency_key(daemon: DaemonProcess) -> None:
    # prints the id, or the whole status when the original job has already ended: its first word is the id
    ids = {daemon.cli("submit", "echo", "value=9", "--idempotency-key", "cli-1").stdout.split()[0] for _ in range(2)}
    assert len(ids) == 1
    clash = daemon.cli("submit", "echo", "value=10", "--idempotency-key", "cli-1")
    assert clash.returncode == 2 and "already used" in clash.stderr


def test_a_malformed_header_key_or_one_that_contradicts_the_body_is_400(daemon: DaemonProcess) -> None:
    bad = post(daemon, {"job": "echo", "params": {"value": 1}}, key="no spaces allowed")
    assert bad.status_code == 400 and ["header", "Idempotency-Key"] in [e["loc"] for e in bad.json()["errors"]]
    both = post(daemon, {"job": "echo", "params": {"value": 1}, "idempotency_key": "a-1"}, key="b-2")
    assert both.status_code == 400 and "differ" in both.json()["detail"]
    assert daemon.client.list(limit=100)["items"] == []
