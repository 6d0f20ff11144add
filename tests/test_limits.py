"""One user, careless or hostile, cannot deny service to others (CONTRACT §12): callers are
identified before their request is read, connections and queued jobs are capped per user,
descriptors do not grow with the number of users, output and results are bounded."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import httpx

from supervisor.client import Client
from tests.conftest import DaemonProcess, wait_until
from tests.test_security import LocalUsers, as_user, multiuser, needs_root, shared_base, users, value  # noqa: F401
from tests.test_tcp import free_port, tokens_file


def raw(client: Client, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any] | str]:
    """Status and body of a request, whatever the status (Client.request raises on errors)."""
    resp = client._http.request(method, path, **kwargs)
    is_json = resp.headers.get("content-type", "").startswith("application/")
    return resp.status_code, resp.json() if is_json else resp.text


def http_request(path: str, body: bytes = b"", method: str = "GET") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: runspace\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def read_response(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


# -- identify before parsing ----------------------------------------------------------


@needs_root
def test_a_user_who_is_not_allowed_gets_403_on_every_path_before_the_body_is_parsed(
        users: LocalUsers, multiuser) -> None:
    d = multiuser(RUNSPACE_ALLOWED_USERS=users.alice.name)
    requests = [("GET", "/openapi.json", {}), ("GET", "/no/such/path", {}),
                ("POST", "/v1/jobs", {"content": b"{not json"}),
                ("POST", "/v1/batches", {"json": {"job": "echo", "items": "not a list"}})]
    for method, path, kwargs in requests:
        status, body = value(as_user(users.bob, d, lambda c: raw(c, method, path, **kwargs)))
        assert status == 403, (path, body)
        assert isinstance(body, dict) and users.bob.name in body["detail"]
    # The allowed user still gets the spec and field errors.
    assert value(as_user(users.alice, d, lambda c: raw(c, "GET", "/openapi.json")))[0] == 200
    assert value(as_user(users.alice, d, lambda c: raw(c, "POST", "/v1/jobs", content=b"{not json")))[0] == 400


def test_tcp_without_a_valid_token_gets_401_on_every_path_before_the_body_is_read(tmp_path: Path,
                                                                                 make_daemon) -> None:
    port = free_port()
    make_daemon(RUNSPACE_TCP_LISTEN=f"127.0.0.1:{port}", RUNSPACE_TOKENS_FILE=str(tokens_file(tmp_path)))
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(base + "/openapi.json", timeout=30).status_code == 401
    assert httpx.get(base + "/nowhere", timeout=30).status_code == 401
    assert httpx.post(base + "/v1/jobs", content=b"{not json", timeout=30).status_code == 401
    # A large body is never read: the answer comes as soon as the headers are in.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(http_request("/v1/jobs", method="POST").replace(b"Content-Length: 0",
                                                                     b"Content-Length: 50000000"))
        sock.sendall(b"{" * 65536)  # of the promised 50 MB
        answer = read_response(sock)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


# -- connections per user ---------------------------------------------------------------


@needs_root
def test_connections_per_user_are_capped_and_follows_count(users: LocalUsers, multiuser) -> None:
    d = multiuser(RUNSPACE_ALLOWED_USERS=f"{users.alice.name},{users.bob.name}",
                  RUNSPACE_MAX_CONNECTIONS_PER_USER="3", RUNSPACE_IDLE_TIMEOUT="30")
    job = value(as_user(users.bob, d, lambda c: c.submit("sleep", {"seconds": 30})[1]))["id"]

    def flood(c: Client) -> dict[str, Any]:
        follows = []
        for _ in range(2):  # two follows hold two of bob's three connections
            follow = httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket)), base_url="http://r", timeout=10)
            stream = follow.stream("GET", f"/v1/jobs/{job}/log", params={"follow": "true"})
            stream.__enter__()
            follows.append((follow, stream))
        status_ok = raw(c, "GET", f"/v1/jobs/{job}")[0]  # the third
        with socket.socket(socket.AF_UNIX) as extra:  # a fourth is refused with a reason
            extra.connect(str(d.socket))
            extra.sendall(http_request(f"/v1/jobs/{job}"))
            refused = read_response(extra).decode(errors="replace")
        for follow, stream in follows:
            stream.__exit__(None, None, None)
            follow.close()
        return {"ok": status_ok, "refused": refused}

    out = value(as_user(users.bob, d, flood))
    assert out["ok"] == 200
    assert out["refused"].startswith("HTTP/1.1 429"), out["refused"]
    assert "max_connections_per_user" in out["refused"] or "429" in out["refused"]
    # Another user is not affected, and bob's slots come back once his connections close.
    assert value(as_user(users.alice, d, lambda c: raw(c, "GET", "/healthz")))[0] == 200
    wait_until(lambda: value(as_user(users.bob, d, lambda c: raw(c, "GET", f"/v1/jobs/{job}")[0])) == 200,
               timeout=10, what="bob's connections to be released")
    d.client.cancel(job)


@needs_root
def test_idle_connections_close_and_many_of_them_do_not_block_others(users: LocalUsers, multiuser) -> None:
    d = multiuser(RUNSPACE_ALLOWED_USERS=users.alice.name, RUNSPACE_IDLE_TIMEOUT="1")

    def idle_flood(c: Client) -> dict[str, Any]:
        socks = []
        for _ in range(1000):  # bob is not even allowed
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(d.socket))
            socks.append(s)
        started = time.monotonic()
        first = socks[0]
        first.settimeout(15)
        closed = first.recv(1) == b""
        for s in socks:
            s.close()
        return {"closed": closed, "after": time.monotonic() - started}

    # While bob's thousand connections are open, alice is served.
    import threading

    result: dict[str, Any] = {}
    flood = threading.Thread(target=lambda: result.update(as_user(users.bob, d, idle_flood)))
    flood.start()
    try:
        started = time.monotonic()
        for _ in range(5):
            assert value(as_user(users.alice, d, lambda c: raw(c, "GET", "/healthz")))[0] == 200
        assert time.monotonic() - started < 15
    finally:
        flood.join(60)
    out = value(result)
    assert out["closed"], "an idle connection that never sent a request stays open"
    assert out["after"] < 10
