"""One user, careless or hostile, cannot deny service to others (CONTRACT §12): callers are
identified before their request is read, connections and queued jobs are capped per user,
descriptors do not grow with the number of users, output and results are bounded."""

from __future__ import annotations

import contextlib
import datetime
import os
import resource
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from supervisor.client import Client
from tests.conftest import DaemonProcess, wait_until
from tests.users import LocalUsers, as_user, multiuser, needs_root, shared_base, users, value  # noqa: F401
from tests.test_tcp import free_port, tokens_file


def raw_response(client: Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """Any answer, whatever its status (Client.request raises on errors)."""
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(client.socket_path)), base_url="http://runspace",
                      timeout=30) as http:
        return http.request(method, path, **kwargs)


def raw(client: Client, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any] | str]:
    """Status and body of a request, whatever the status."""
    resp = raw_response(client, method, path, **kwargs)
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
        with socket.socket(socket.AF_UNIX) as third, socket.socket(socket.AF_UNIX) as fourth:
            third.connect(str(d.socket))
            third.sendall(http_request(f"/v1/jobs/{job}"))  # answered, and kept open (HTTP/1.1)
            status_ok = int(read_response(third).split()[1])
            fourth.connect(str(d.socket))  # over the cap: refused with a reason
            fourth.sendall(http_request(f"/v1/jobs/{job}"))
            refused = read_response(fourth).decode(errors="replace")
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


# -- descriptors -----------------------------------------------------------------------


def daemon_fds(d: DaemonProcess) -> int:
    assert d.proc is not None
    return len(os.listdir(f"/proc/{d.proc.pid}/fd"))


def test_descriptors_do_not_grow_with_log_users_and_the_loop_keeps_serving(make_daemon) -> None:
    d = make_daemon(RUNSPACE_MAX_CONCURRENCY="1")
    blocker = d.submit("sleep", {"seconds": 60})
    before = daemon_fds(d)
    items = [{"user": f"u{n:05d}", "text": "x"} for n in range(3000)]
    result: dict[str, Any] = {}
    batch = threading.Thread(target=lambda: result.update(zip(("status", "body"), d.client.submit_batch(
        "user_note", items))))
    batch.start()
    slowest = 0.0
    while batch.is_alive():  # the loop answers others while the batch is queued
        started = time.monotonic()
        d.client.status(blocker["id"])
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.02)
    batch.join()
    assert result["status"] == 202, result
    wait_until(lambda: (d.log_dir / "users" / "u02999.log").exists(), timeout=60, what="the last queued line")
    assert daemon_fds(d) < before + 100, f"{before} descriptors before, {daemon_fds(d)} after"
    assert slowest < 2.0, f"a status request waited {slowest:.2f} s while the batch was queued"
    d.client.cancel(blocker["id"])


def test_the_daemon_raises_its_fd_limit_and_closes_inherited_descriptors(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path, uuid.uuid4().hex, {})
    read_end, write_end = os.pipe()
    os.dup2(read_end, 251)
    pipe_inode = os.fstat(251).st_ino
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    log = open(tmp_path / "daemon.log", "ab")
    d.proc = subprocess.Popen([sys.executable, "-m", "supervisor", "daemon"], env=d.env, stdout=log, stderr=log,
                              cwd=tmp_path, pass_fds=(251,), preexec_fn=low_limit)
    log.close()
    try:
        os.close(251)
        os.close(read_end)
        os.close(write_end)
        wait_until(lambda: d.client.request("GET", "/healthz").status_code == 200 if d.socket.exists() else False,
                   timeout=30, what="the daemon")
        limits = Path(f"/proc/{d.proc.pid}/limits").read_text()
        soft = next(line.split()[3] for line in limits.splitlines() if line.startswith("Max open files"))
        assert int(soft) == hard
        for fd in os.listdir(f"/proc/{d.proc.pid}/fd"):
            with contextlib.suppress(OSError):
                assert os.readlink(f"/proc/{d.proc.pid}/fd/{fd}") != f"pipe:[{pipe_inode}]"
        fds = d.wait(d.submit("open_fds", {})["id"])["result"]["fds"]
        assert 251 not in fds and fds[:3] == [0, 1, 2], fds
    finally:
        d.stop()


# -- queued jobs per user, fair turns ---------------------------------------------------


@needs_root
def test_queued_jobs_per_user_are_capped_and_admins_are_exempt(users: LocalUsers, multiuser) -> None:
    d = multiuser(RUNSPACE_ALLOWED_USERS=f"{users.alice.name},{users.bob.name}", RUNSPACE_MAX_CONCURRENCY="1",
                  RUNSPACE_MAX_QUEUED_PER_USER="3")
    blocker = d.submit("sleep", {"seconds": 60})

    def flood(c: Client) -> list[Any]:
        answers = [raw(c, "POST", "/v1/jobs", json={"job": "echo", "params": {}})[0] for _ in range(4)]
        answers.append(raw(c, "POST", "/v1/batches", json={"job": "echo", "items": [{}, {}]}))
        return answers

    *singles, batch = value(as_user(users.bob, d, flood))
    assert singles == [202, 202, 202, 429]
    assert batch[0] == 429 and "max_queued_per_user is 3" in batch[1]["detail"], batch
    assert value(as_user(users.alice, d, lambda c: raw(c, "POST", "/v1/jobs", json={"job": "echo"})[0])) == 202
    for _ in range(5):  # root is an admin: not capped
        d.submit("echo", {})
    d.client.cancel(blocker["id"])


@needs_root
def test_users_take_turns_and_a_non_admins_priority_orders_only_their_own_jobs(users: LocalUsers,
                                                                                multiuser) -> None:
    d = multiuser(RUNSPACE_ALLOWED_USERS=f"{users.alice.name},{users.bob.name}", RUNSPACE_MAX_CONCURRENCY="1")
    blocker = d.submit("sleep", {"seconds": 60})
    alice = value(as_user(users.alice, d, lambda c: [c.submit("echo", {"value": n})[1]["id"] for n in range(6)]))

    def bob_submits(c: Client) -> list[str]:
        low = c.submit("echo", {"value": "low"})[1]["id"]
        high = [c.submit("echo", {"value": "high"}, priority=2**63 - 1)[1]["id"] for _ in range(2)]
        return [low, *high]

    low, *high = value(as_user(users.bob, d, bob_submits))
    d.client.cancel(blocker["id"])
    ended = [d.wait(job_id) for job_id in [*alice, low, *high]]
    order = [s["id"] for s in sorted(ended, key=lambda s: s["started_at"])]
    who = ["b" if job_id in (low, *high) else "a" for job_id in order]
    assert who[:6] == ["a", "b", "a", "b", "a", "b"], who  # turns, not bob's priority first
    assert order.index(low) > max(order.index(h) for h in high)  # bob's priority orders bob's jobs


# -- output: long lines, control characters ------------------------------------------------


def _submit_wait_p50(client: Client, count: int = 15) -> float:
    """Median seconds of submit-and-wait for a quick job: each start and end is a pass over the queue."""
    took = []
    for _ in range(count):
        began = time.perf_counter()
        client.submit("echo", {"value": 1}, wait=30)
        took.append(time.perf_counter() - began)
    return sorted(took)[len(took) // 2]


def test_jobs_waiting_for_others_do_not_slow_other_users_jobs(users: LocalUsers, multiuser) -> None:
    """Bob's 5,000 jobs, each `after` 100 ids (one still running): every pass over the queue judged
    each of them again, 100 ids apiece, so each start or end of anyone's job blocked the event loop
    (alice's submit-and-wait p50 ~8x its quiet figure). They are held aside until their job succeeds."""
    d = multiuser(RUNSPACE_ALLOWED_USERS=f"{users.alice.name},{users.bob.name}")
    quiet = value(as_user(users.alice, d, _submit_wait_p50))

    def flood(client: Client) -> str:
        done = [client.submit("echo", {"value": i}, wait=30)[1]["id"] for i in range(99)]
        blocker = client.submit("exec", {"argv": ["sleep", "120"], "cwd": "/"})[1]["id"]
        for priority in range(5):  # each priority of a user's own is a queue of its own, scanned apart
            client.submit_batch("echo", [{"value": i} for i in range(1000)], batch_id=f"waiting-{priority}",
                                after=[*done, blocker], priority=priority)
        return blocker

    blocker = value(as_user(users.bob, d, flood))
    loaded = value(as_user(users.alice, d, _submit_wait_p50))
    assert loaded < 3 * quiet, f"submit-and-wait p50 {loaded * 1000:.0f} ms, quiet {quiet * 1000:.0f} ms"
    # Held aside, they are still bob's queued jobs: counted, and ended when their job fails.
    assert value(as_user(users.bob, d, lambda c: c.request("GET", "/v1/queue").json()))["queued"] == 5000
    began = time.monotonic()
    value(as_user(users.bob, d, lambda c: c.cancel(blocker)))

    def cancelled() -> int | None:
        counts = [value(as_user(users.bob, d, lambda c: c.batch(f"waiting-{p}", limit=0)))["counts"] for p in range(5)]
        return sum(c["cancelled"] for c in counts) if all(c["queued"] == 0 for c in counts) else None

    assert wait_until(cancelled, timeout=180, interval=0.5, what="bob's batches to be cancelled") == 5000
    # Each dependent ended looked for its own dependents with a scan of every queued row's `after`:
    # 10,000 of them kept the event loop busy for 292 s, with every caller waiting.
    assert time.monotonic() - began < 20


def test_jobs_scheduled_for_later_at_many_priorities_do_not_slow_other_users_jobs(users: LocalUsers,
                                                                                 multiuser) -> None:
    """Bob's 9,800 jobs due tomorrow, at 490 priorities: every pass over the queue sorted his
    priorities and judged each of his jobs again, so every start or end of anyone's job blocked
    the event loop (alice's submit-and-wait p50 ~20x its quiet figure). They wait aside until due;
    a requestor's jobs are a heap, so the number of priorities costs nothing either."""
    d = multiuser(RUNSPACE_ALLOWED_USERS=f"{users.alice.name},{users.bob.name}")
    quiet = value(as_user(users.alice, d, _submit_wait_p50))

    def flood(client: Client) -> int:
        for priority in range(490):
            client.submit_batch("echo", [{"value": i} for i in range(20)], batch_id=f"tomorrow-{priority}",
                                not_before="2099-01-01T00:00:00Z", priority=priority)
        return client.request("GET", "/v1/queue").json()["queued"]

    assert value(as_user(users.bob, d, flood)) == 9_800  # below his cap: two more of his follow
    loaded = value(as_user(users.alice, d, _submit_wait_p50))
    assert loaded < 3 * quiet, f"submit-and-wait p50 {loaded * 1000:.0f} ms, quiet {quiet * 1000:.0f} ms"
    # Aside, they are still queued and due when their time comes: bob's own jobs run meanwhile.
    mine = value(as_user(users.bob, d, lambda c: c.submit("echo", {"value": 1}, wait=30)[1]))
    assert mine["state"] == "succeeded"
    soon = value(as_user(users.bob, d, lambda c: c.submit("echo", {"value": 2}, priority=-5, **_in(1.0))[1]["id"]))
    assert d.wait(soon, timeout=30)["state"] == "succeeded"


def test_jobs_due_but_held_back_do_not_keep_the_daemon_busy(daemon: DaemonProcess) -> None:
    """2,000 jobs whose `not_before` has passed but whose type cannot start now (paused here; a
    full type or a held key do the same): the dispatch loop slept until the earliest `not_before`
    of any queued job, past ones included, so it woke every 10 ms and judged them all again
    (12 % of a CPU for these, growing with their number). It sleeps until the next one to come."""
    daemon.client.put_queue({"paused_types": ["echo"]})
    daemon.client.submit_batch("echo", [{"value": i} for i in range(2000)], **_in(0.5))
    time.sleep(1.5)  # due now, and held back
    cpu = psutil.Process(daemon.proc.pid).cpu_times
    before = cpu().user + cpu().system
    time.sleep(3)
    assert cpu().user + cpu().system - before < 0.1
    daemon.client.put_queue({"paused_types": []})
    wait_until(lambda: daemon.client.request("GET", "/v1/queue").json()["queued"] < 2000, timeout=30,
               what="the jobs to start once resumed")


def _in(seconds: float) -> dict[str, str]:
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return {"not_before": when.isoformat()}


def test_a_long_chain_of_dependents_ends_when_its_head_fails(daemon: DaemonProcess) -> None:
    """Each job after the one before: ending one job's dependents from its end hook recursed once
    per link, and past Python's recursion limit the rest of the chain stayed queued forever."""
    head = daemon.submit("sleep", {"seconds": 60})["id"]
    last = head
    for i in range(1200):
        last = daemon.submit("echo", {"value": i}, after=[last])["id"]
    daemon.client.cancel(head)
    ended = wait_until(lambda: (s := daemon.client.status(last))["done"] and s, timeout=60, what="the chain's end")
    assert ended["state"] == "cancelled" and ended["reason"] == "dependency_failed"
    assert daemon.client.request("GET", "/v1/queue").json()["queued"] == 0
    assert "end hook" not in daemon.log()


def test_a_line_over_64_kib_is_split_and_readers_get_past_it(daemon: DaemonProcess) -> None:
    status = daemon.wait(daemon.submit("long_lines", {"user": "longuser"})["id"])
    assert status["state"] == "succeeded", status
    for path in (daemon.log_dir / "jobs" / f"{status['id']}.log", daemon.log_dir / "users" / "longuser.log"):
        lines = path.read_bytes().splitlines(keepends=True)
        assert max(len(line) for line in lines) <= 64 * 1024, path
        assert any(b"[continued] " in line for line in lines)
        assert any(line.rstrip().endswith(b" after") for line in lines[-3:])
    # Through the API, page by page, and through the CLI, the line after the long one is read.
    text, offset, pages = "", 0, 0
    while pages < 20:
        chunk, offset_next = daemon.client.user_log("longuser", offset)
        text, pages = text + chunk, pages + 1
        if offset_next == offset:
            break
        offset = offset_next
    assert "long_lines after\n" in text, text[-300:]
    cli = daemon.cli("user-log", "longuser")
    assert cli.returncode == 0 and "long_lines after\n" in cli.stdout
    logs = daemon.cli("logs", status["id"])
    assert logs.returncode == 0 and logs.stdout.rstrip().endswith("after")


def test_control_characters_are_escaped_in_logs_and_cli_output(daemon: DaemonProcess) -> None:
    status = daemon.wait(daemon.submit("long_lines", {"user": "escuser", "size": 10})["id"])
    job_log = (daemon.log_dir / "jobs" / f"{status['id']}.log").read_bytes()
    user_log = (daemon.log_dir / "users" / "escuser.log").read_bytes()
    for data in (job_log, user_log):
        assert b"\x1b" not in data and b"\x07" not in data
    assert b"\\x1b[2J\\x1b[Hforged prompt$ " in job_log
    assert b"\\x1b]0;title\\x07bell" in user_log
    for args in (("logs", status["id"]), ("user-log", "escuser")):
        out = daemon.cli(*args)
        assert out.returncode == 0 and "\x1b" not in out.stdout and "\\x1b" in out.stdout


def test_control_characters_from_a_job_are_escaped_in_status_list_and_progress(daemon: DaemonProcess) -> None:
    """What a job or its submitter chose (params, an error or progress message) reaches the
    terminal escaped: `status`, `list`, and the progress line of `wait` (stderr in a pipe)."""
    failed = daemon.wait(daemon.submit("fail", {"message": "\x1b[2Jboom\x07"})["id"])
    script = r'printf "::progress 1 2 \033[2Jhalf\n"; sleep 1.5'
    halfway = daemon.submit("exec", {"argv": ["sh", "-c", script]})["id"]
    waited = daemon.cli("wait", halfway)  # from the start: its progress line shows the message
    assert daemon.client.status(halfway)["message"] == "\x1b[2Jhalf"  # the API keeps the text as it was
    outputs = [daemon.cli("status", failed["id"]), daemon.cli("status", halfway), daemon.cli("list"), waited]
    for out in outputs:
        assert "\x1b" not in out.stdout + out.stderr and "\x07" not in out.stdout + out.stderr, out
    assert "error: ValueError: \\x1b[2Jboom\\x07" in outputs[0].stdout
    assert "message: \\x1b[2Jhalf" in outputs[1].stdout
    assert "message=\\x1b[2Jboom\\x07" in outputs[2].stdout
    assert "\\x1b[2Jhalf" in waited.stderr, waited.stderr


# -- what other users' jobs reveal ------------------------------------------------------


@needs_root
def test_health_metrics_and_log_sizes_of_others_are_for_admins(users: LocalUsers, multiuser) -> None:
    d = multiuser(RUNSPACE_ALLOWED_USERS=f"{users.alice.name},{users.bob.name}")
    alice_job = value(as_user(users.alice, d, lambda c: c.submit("sleep", {"seconds": 30})[1]))
    wait_until(lambda: d.client.status(alice_job["id"])["state"] == "running", timeout=30)

    def look(c: Client) -> dict[str, Any]:
        log = raw_response(c, "GET", f"/v1/users/{users.alice.name}/log")
        own = raw_response(c, "GET", f"/v1/users/{users.bob.name}/log")
        return {"health": c.request("GET", "/healthz").json(), "metrics": c.request("GET", "/metrics").text,
                "offset": log.headers.get("x-log-offset"), "own_offset": own.headers.get("x-log-offset")}

    bob = value(as_user(users.bob, d, look))
    assert bob["health"]["running"] == 0 and bob["health"]["queued"] == 0
    assert "runspace_jobs{" not in bob["metrics"] and "runspace_running 0" in bob["metrics"]
    assert bob["offset"] is None and bob["own_offset"] is not None
    alice = value(as_user(users.alice, d, look))
    assert alice["health"]["running"] == 1
    admin = d.client.request("GET", "/healthz").json()
    assert admin["running"] == 1 and "runspace_jobs{" in d.client.request("GET", "/metrics").text
    d.client.cancel(alice_job["id"])


@needs_root
def test_batch_ids_are_per_requestor(users: LocalUsers, multiuser) -> None:
    d = multiuser(RUNSPACE_ALLOWED_USERS=f"{users.alice.name},{users.bob.name}")
    alice = value(as_user(users.alice, d, lambda c: c.submit_batch("echo", [{"value": 1}], batch_id="nightly")))
    assert alice[0] == 202

    def bob_tries(c: Client) -> dict[str, Any]:
        seen = raw(c, "GET", "/v1/batches/nightly")[0]
        mine = raw(c, "POST", "/v1/batches", json={"job": "echo", "items": [{"value": 2}, {"value": 3}],
                                                   "batch_id": "nightly"})
        return {"seen": seen, "mine": mine[0], "size": raw(c, "GET", "/v1/batches/nightly")[1]["size"]}

    bob = value(as_user(users.bob, d, bob_tries))
    assert bob == {"seen": 404, "mine": 202, "size": 2}  # no oracle, and the id is his too
    assert value(as_user(users.alice, d, lambda c: c.batch("nightly")))["size"] == 1
    assert d.client.request("GET", "/v1/batches/nightly", params={"requestor": users.bob.name}).json()["size"] == 2


def test_a_result_over_max_result_bytes_fails_the_job_and_is_not_stored(make_daemon) -> None:
    d = make_daemon(RUNSPACE_MAX_RESULT_BYTES="4096")
    big = d.wait(d.submit("echo", {"value": "x" * 10_000})["id"])
    assert (big["state"], big["error"]["type"], big["result"]) == ("failed", "ResultTooLarge", None), big
    assert "max_result_bytes (4096)" in big["error"]["message"]
    assert d.wait(d.submit("echo", {"value": "small"})["id"])["state"] == "succeeded"


@pytest.mark.parametrize("shim", ["native", "python"])
def test_output_over_max_log_bytes_is_dropped_with_one_marker_and_the_job_goes_on(make_daemon, shim: str) -> None:
    d = make_daemon(RUNSPACE_NATIVE_SHIM="true" if shim == "native" else "false")
    assert d.client.request("GET", "/healthz").json()["command_shim"] == shim
    for job in ("flood", "flood_command"):
        status = d.wait(d.submit(job, {"lines": 5000})["id"], timeout=60)
        assert status["state"] == "succeeded", status
        log = (d.log_dir / "jobs" / f"{status['id']}.log").read_bytes()
        assert 60 * 1024 < len(log) <= 64 * 1024 + 200, len(log)
        assert log.count(b"reached max_log_bytes (65536)") == 1
