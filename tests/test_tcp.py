"""The optional TCP listener: same API, identity from bearer tokens in a root-owned file."""

from __future__ import annotations

import hmac
import os
import pwd
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from supervisor.api import tokens as tokens_module
from supervisor.api.tokens import TokenTable
from supervisor.errors import NotAuthenticated
from supervisor.listener import parse_host_port
from supervisor.settings import Settings
from tests.conftest import DaemonProcess

ME = pwd.getpwuid(os.geteuid()).pw_name
GOOD = "a" * 20 + "good-token-for-me"
OUTSIDER = "b" * 20 + "token-for-nobody"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tokens_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "tokens"
    path.write_text(f"# user token\n{ME} {GOOD}\nnobody {OUTSIDER}  # not an allowed user\n")
    os.chmod(path, mode)
    return path


@pytest.fixture
def tcp(tmp_path: Path, make_daemon) -> tuple[DaemonProcess, str]:
    port = free_port()
    d = make_daemon(RUNSPACE_TCP_LISTEN=f"127.0.0.1:{port}", RUNSPACE_TOKENS_FILE=str(tokens_file(tmp_path)))
    return d, f"http://127.0.0.1:{port}"


def call(base: str, method: str, path: str, token: str | None = None, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, base + path, headers=headers, timeout=30, **kwargs)


def test_missing_or_wrong_token_is_401(tcp: tuple[DaemonProcess, str]) -> None:
    _, base = tcp
    for token in (None, "x", GOOD[:-1], GOOD + "x", "c" * len(GOOD)):
        for method, path in (("GET", "/healthz"), ("GET", "/v1/jobs"), ("POST", "/v1/jobs")):
            resp = call(base, method, path, token, json={"job": "echo"} if method == "POST" else None)
            assert resp.status_code == 401, (token, path, resp.text)
            assert resp.headers["content-type"].startswith("application/problem+json")
    basic = httpx.get(base + "/healthz", headers={"Authorization": f"Basic {GOOD}"})
    assert basic.status_code == 401


def test_valid_token_gets_the_same_api_as_its_user(tcp: tuple[DaemonProcess, str]) -> None:
    d, base = tcp
    assert call(base, "GET", "/healthz", GOOD).json()["status"] == "ok"
    resp = call(base, "POST", "/v1/jobs?wait=30", GOOD, json={"job": "echo", "params": {"value": "tcp"}})
    assert resp.status_code == 200 and resp.json()["result"]["value"] == "tcp"
    assert resp.json()["requestor"] == ME
    job_id = resp.json()["id"]
    assert d.client.status(job_id)["requestor"] == ME  # the same job over the Unix socket
    assert call(base, "GET", f"/v1/jobs/{job_id}", GOOD).json()["state"] == "succeeded"
    assert "runspace_jobs" in call(base, "GET", "/metrics", GOOD).text


def test_token_of_a_user_who_is_not_allowed_is_403(tcp: tuple[DaemonProcess, str]) -> None:
    _, base = tcp
    resp = call(base, "GET", "/v1/jobs", OUTSIDER)
    assert resp.status_code == 403 and "nobody" in resp.json()["detail"]


def test_unix_socket_ignores_bearer_tokens(tcp: tuple[DaemonProcess, str]) -> None:
    d, _ = tcp
    status = d.client.request("POST", "/v1/jobs?wait=30", json={"job": "echo"},
                              headers={"Authorization": f"Bearer {OUTSIDER}"}).json()
    assert status["requestor"] == ME, "on the Unix socket only SO_PEERCRED counts"


def test_tokens_file_readable_by_others_stops_the_daemon(tmp_path: Path, make_daemon) -> None:
    path = tokens_file(tmp_path, mode=0o644)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent),
           "RUNSPACE_SOCKET": str(tmp_path / "s.sock"), "RUNSPACE_STATE_DIR": str(tmp_path / "state"),
           "RUNSPACE_TCP_LISTEN": f"127.0.0.1:{free_port()}", "RUNSPACE_TOKENS_FILE": str(path)}
    out = subprocess.run([sys.executable, "-m", "supervisor", "daemon"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0 and str(path) in out.stderr and "0644" in out.stderr


def test_tcp_is_off_by_default_and_loopback_unless_configured() -> None:
    assert Settings().tcp_listen is None
    assert parse_host_port("8765") == ("127.0.0.1", 8765)
    assert parse_host_port("[::1]:8765") == ("::1", 8765)
    assert parse_host_port("0.0.0.0:80") == ("0.0.0.0", 80)


def test_every_entry_is_compared_in_constant_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = TokenTable.load(tokens_file(tmp_path))
    calls: list[int] = []
    real_compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(len(a) + len(b))
        return real_compare(a, b)

    monkeypatch.setattr(tokens_module.hmac, "compare_digest", counting)
    assert table.user_for(f"Bearer {GOOD}") == ME  # the first entry matches: the loop still runs to the end
    assert len(calls) == len(table.entries) == 2
    with pytest.raises(NotAuthenticated):
        table.user_for("Bearer short")
    assert len(calls) == 4 and len(set(calls)) == 1, "digests of equal length, whatever the token's length"
