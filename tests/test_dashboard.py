"""The web dashboard (`runspace ui`) in a real headless Chromium, against a real daemon.

Playwright drives Debian's chromium (`scripts/setup test` installs it when root); nothing is
downloaded. Screenshots of every page are written to tests/artifacts/dashboard/ (gitignored).
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import ROOT, DaemonProcess, wait_until
from tests.users import LocalUser, LocalUsers, as_user, fork_as, multiuser, shared_base, users, value  # noqa: F401

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts" / "dashboard"

try:
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
except ImportError:  # the test extra is not installed
    sync_playwright = None

needs_browser = pytest.mark.skipif(
    sync_playwright is None or not os.access(CHROMIUM, os.X_OK),
    reason="needs playwright (test extra) and Debian's chromium at /usr/bin/chromium (scripts/setup test, as root)",
)


@dataclass
class Dashboard:
    url: str  # with its token, as printed
    pid: int
    stop: Callable[..., int]  # optionally the signal to stop it with (default: SIGINT, as Ctrl-C)

    @property
    def base(self) -> str:
        return self.url.split("/?", 1)[0]


def _first_line(stream: Any, timeout: float = 20.0) -> str:
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert lines and lines[0].strip(), "runspace ui printed no URL"
    return lines[0].strip()


@contextmanager
def dashboard(daemon: DaemonProcess) -> Iterator[Dashboard]:
    """`runspace ui --no-browser` as this test's user; Ctrl-C (SIGINT) at the end must stop it."""
    err = open(daemon.base / "ui.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "supervisor", "ui", "--no-browser"], env=daemon.env,
                            stdout=subprocess.PIPE, stderr=err, text=True, cwd=daemon.base)
    err.close()

    def stop() -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    try:
        yield Dashboard(_first_line(proc.stdout), proc.pid, stop)
    finally:
        stop()


@contextmanager
def dashboard_as(user: LocalUser, daemon: DaemonProcess) -> Iterator[Dashboard]:
    """The dashboard run by another user: forked from this process, which then drops to that uid
    (this interpreter lives under /root, which other users cannot execute). Every module it needs
    is imported first, while root can still read them."""
    import encodings.idna  # noqa: F401 - imported lazily, by httpx and
    import encodings.unicode_escape  # noqa: F401 - by Jinja's template compiler
    import httpcore._backends.anyio  # noqa: F401 - the async client's transport, imported lazily
    import uvicorn

    from supervisor.ui import server

    uvicorn.Config(app=lambda *_: None).load()  # uvicorn's lazily imported protocol and loop modules
    errors = daemon.base / f"ui-{user.name}.log"
    errors.touch()
    os.chown(errors, user.uid, user.gid)
    def serve(out: int) -> None:
        sys.stdout = open(out, "w", buffering=1)
        os.dup2(os.open(errors, os.O_WRONLY | os.O_APPEND), 2)
        server.serve(daemon.socket, 0, open_browser=False)

    pid, read_end = fork_as(user, serve)
    reader = os.fdopen(read_end)

    def stop() -> int:
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        wait_until(lambda: os.waitpid(pid, os.WNOHANG)[0] == pid, timeout=15, what="the dashboard to stop")
        reader.close()
        return 0

    try:
        yield Dashboard(_first_line(reader), pid, stop)
    finally:
        stop()
        print(f"{errors}:\n{errors.read_text()}")


@dataclass
class Chromium:
    browser: Browser
    sessions: dict[str, BrowserContext]  # dashboard URL -> the context that logged in with its token


@contextmanager
def chromium() -> Iterator[Chromium]:
    with sync_playwright() as p:
        # Chromium refuses to run as root with its sandbox on (the suite runs as root in CI).
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"] if os.geteuid() == 0 else [])
        try:
            yield Chromium(browser, {})
        finally:
            browser.close()


def open_page(chrome: Chromium, ui: Dashboard) -> Page:
    """A new tab on the dashboard's first page. The printed URL's token works once: the first tab
    logs in with it, later ones share that browser context's cookie."""
    first = ui.url not in chrome.sessions
    if first:
        chrome.sessions[ui.url] = chrome.browser.new_context(viewport={"width": 1280, "height": 800})
    page = chrome.sessions[ui.url].new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmations of cancel and restart
    page.goto(ui.url if first else ui.base + "/")
    return page


def shot(page: Page, name: str, part: str | None = None) -> None:
    """The whole page, or the element `part` selects."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if part:
        page.locator(part).screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def d_has(daemon: DaemonProcess, path: str) -> bool:
    """Whether the daemon serves this route (restart and queue control came after the dashboard)."""
    return path in daemon.client.request("GET", "/openapi.json").json()["paths"]


def mark_page(page: Page) -> None:
    """A flag that a reload would wipe: what changes while it stands came live."""
    page.evaluate("document.body.dataset.testMark = 'still here'")


def not_reloaded(page: Page) -> bool:
    return page.evaluate("document.body.dataset.testMark") == "still here"


# -- the door: token, cookie, headers, CSRF, Ctrl-C ------------------------------------


def test_token_cookie_headers_csrf_and_ctrl_c(daemon: DaemonProcess) -> None:
    with dashboard(daemon) as ui:
        assert ui.url.startswith("http://127.0.0.1:") and "/?token=" in ui.url
        with httpx.Client(base_url=ui.base) as web:
            for path in ("/", "/types", "/static/app.js", "/events/jobs", "/jobs/x"):
                assert web.get(path).status_code == 401, path
            assert web.get("/?token=wrong").status_code == 401
            login = web.get(ui.url)
            assert login.status_code == 303 and login.headers["location"] == "/"  # the token leaves the URL
            again = httpx.get(ui.url)  # another client with the same URL: the token was good once
            assert again.status_code == 401 and "works once" in again.text
            cookie = login.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
            page = web.get("/")
            assert page.status_code == 200
            csp = page.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
            assert page.headers["x-frame-options"] == "DENY"
            # A state-changing form without this run's CSRF token is refused, and nothing is queued.
            refused = web.post("/types/echo", data={"value": "1"})
            assert refused.status_code == 403 and "CSRF" in refused.text
            forged = web.post("/types/echo", data={"value": "1", "csrf": "guess"})
            assert forged.status_code == 403
            assert daemon.client.list()["items"] == []
            # DNS rebinding: a request naming another host is not served, cookie or not.
            assert web.get("/", headers={"host": "evil.example"}).status_code == 400
        assert ui.stop() == 0  # Ctrl-C stops it, cleanly


@pytest.mark.skipif(os.geteuid() != 0, reason="creates a second user to connect as")
def test_another_users_idle_connections_cannot_take_the_dashboard(users: LocalUsers, daemon: DaemonProcess) -> None:
    """Every local user can connect to 127.0.0.1, and uvicorn waits as long as it takes for a
    request: bob's 1,100 idle connections held every descriptor of the dashboard under the usual
    limit of 1,024, and its own user's page timed out. It closes other users' connections at once."""
    with dashboard(daemon) as ui:
        psutil.Process(ui.pid).rlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        port = int(ui.base.rsplit(":", 1)[1])

        def hold(out: int) -> None:
            held = []
            with contextlib.suppress(OSError):  # the dashboard's backlog full: enough
                for _ in range(1100):
                    held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            time.sleep(1)
            closed, deadline = 0, time.monotonic() + 10
            for sock in held:
                sock.settimeout(max(deadline - time.monotonic(), 0.01))
                try:
                    closed += sock.recv(1) == b""
                except ConnectionResetError:
                    closed += 1
                except OSError:
                    pass
            os.write(out, f"{len(held)} {closed}\n".encode())
            time.sleep(30)  # held while the owner asks for a page; killed then

        pid, read_end = fork_as(users.bob, hold)
        try:
            with os.fdopen(read_end) as reader:
                opened, closed = map(int, reader.readline().split())
            assert opened >= 1000 and closed == opened
            assert httpx.get(ui.url, timeout=10).status_code == 303  # its own user gets in
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def test_without_a_kernel_that_names_peers_the_token_alone_keeps_others_out(monkeypatch) -> None:
    """A kernel without inet_diag answers "no such socket" for every connection, as for one that
    is gone: checked once on a connection of its own, the dashboard then closes none, rather
    than every one, its own user's included."""
    from supervisor.ui import peer

    assert peer.kernel_names_peers()  # this host's kernel does
    monkeypatch.setattr(peer, "_ask", lambda family, addresses: None)
    peer.kernel_names_peers.cache_clear()
    try:
        assert not peer.kernel_names_peers()
    finally:
        peer.kernel_names_peers.cache_clear()


def test_ui_says_so_when_the_daemon_is_not_there(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RUNSPACE_SOCKET": str(tmp_path / "none.sock")}
    done = subprocess.run([sys.executable, "-m", "supervisor", "ui", "--no-browser"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and done.stdout == ""
    assert "cannot reach the runspace daemon" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [["ui", "--no-browser"], ["list"]])
def test_ui_finds_the_socket_as_every_command_does(tmp_path: Path, command: list[str]) -> None:
    """The socket named in the config file; a daemon setting a client does not use is none of its business."""
    config = tmp_path / "config.toml"
    config.write_text(f'socket = "{tmp_path / "none.sock"}"\n')
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RUNSPACE_")}, "PYTHONPATH": str(ROOT),
           "RUNSPACE_CONFIG": str(config), "RUNSPACE_MAX_CONCURRENCY": "none"}
    done = subprocess.run([sys.executable, "-m", "supervisor", *command], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and str(tmp_path / "none.sock") in done.stderr, done.stderr


def test_a_port_in_use_is_one_line(daemon: DaemonProcess) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = daemon.cli("ui", "--no-browser", "--port", str(port))
    assert done.returncode == 1 and done.stdout == ""
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr


# -- in the browser --------------------------------------------------------------------


@needs_browser
def test_submit_from_the_form_then_progress_and_log_arrive_live(daemon: DaemonProcess) -> None:
    with dashboard(daemon) as ui, chromium() as browser:
        jobs_page = open_page(browser, ui)
        mark_page(jobs_page)
        page = open_page(browser, ui)
        page.goto(f"{ui.base}/types")
        form = page.locator("form[data-type=dash_work]")
        form.locator("[name=items]").fill("10")
        form.locator("[name=delay]").fill("0.8")
        shot(page, "types", "#type-dash_shape")
        form.locator("button[type=submit]").click()
        page.wait_for_url("**/jobs/*")
        job_id = page.url.rsplit("/", 1)[1]
        mark_page(page)
        bar = page.locator("#status progress")
        seen: set[str] = set()

        def moving() -> bool:
            if bar.count():
                seen.add(bar.get_attribute("value") or "")
            return len({v for v in seen if v not in ("", "100.0")}) >= 2

        wait_until(moving, timeout=30, what="the progress bar to move")
        expect(page.locator("#log")).to_contain_text("working on item 3", timeout=20_000)
        expect(page.locator("#status")).to_contain_text("of 10 done")
        shot(page, "job-running")
        # The jobs page (opened before the job existed) got its row, and sees it through.
        row = jobs_page.locator(f"#job-{job_id}")
        expect(row).to_be_visible(timeout=10_000)
        expect(row.locator("progress")).to_be_visible(timeout=10_000)
        shot(jobs_page, "jobs")
        expect(page.locator("#status .state")).to_have_text("succeeded", timeout=30_000)
        expect(page.locator("#status .result")).to_contain_text('"items": 10')
        expect(page.locator("#log")).to_contain_text("working on item 10")
        expect(row.locator(".state")).to_have_text("succeeded", timeout=10_000)
        assert not_reloaded(page) and not_reloaded(jobs_page), "the pages were reloaded"
        assert daemon.client.status(job_id)["state"] == "succeeded"
        shot(page, "job-done")


@needs_browser
def test_cancel_a_running_job_from_its_page(daemon: DaemonProcess) -> None:
    job = daemon.submit("sleep", {"seconds": 60, "output_every": 0.2})
    wait_until(lambda: daemon.client.status(job["id"])["state"] == "running", what="the job to start")
    with dashboard(daemon) as ui, chromium() as browser:
        page = open_page(browser, ui)
        page.goto(f"{ui.base}/jobs/{job['id']}")
        expect(page.locator("#log")).to_contain_text("tick", timeout=10_000)
        page.locator("#cancel").click()  # confirmed by the dialog handler
        expect(page.locator("#status .state")).to_have_text("cancelled", timeout=20_000)
        assert daemon.client.status(job["id"])["state"] == "cancelled"
        expect(page.locator("#cancel")).to_have_count(0)
        shot(page, "job-cancelled")


@needs_browser
def test_validation_errors_are_shown_at_their_fields(daemon: DaemonProcess) -> None:
    with dashboard(daemon) as ui, chromium() as browser:
        page = open_page(browser, ui)
        page.goto(f"{ui.base}/types")
        form = page.locator("form[data-type=dash_work]")
        form.locator("[name=items]").fill("0")
        form.locator("[name=delay]").fill("soon")
        form.locator("button[type=submit]").click()
        form = page.locator("form[data-type=dash_work]")
        expect(form.locator("[data-field=items] .field-error")).to_contain_text("greater than or equal to 1")
        expect(form.locator("[data-field=delay] .field-error")).to_contain_text("valid number")
        expect(form.locator("[name=items]")).to_have_value("0")  # what was typed stays, to be corrected
        expect(form.locator("[name=items]")).to_be_focused()  # the first bad field, scrolled into view
        expect(page.locator("form[data-type=dash_shape] .field-error")).to_have_count(0)
        shot(page, "types-invalid", "#type-dash_work")
        shape = page.locator("form[data-type=dash_shape]")
        shape.locator("[name=name]").fill("Not Lower")
        shape.locator("button[type=submit]").click()
        expect(page.locator("form[data-type=dash_shape] [data-field=name] .field-error")).to_contain_text("pattern")
        assert daemon.client.list()["items"] == []  # nothing refused was queued
        # Every kind of field reaches the job as its type: a choice, a checkbox, JSON, an optional.
        shape = page.locator("form[data-type=dash_shape]")
        shape.locator("[name=name]").fill("hexagon")
        shape.locator("[name=colour]").select_option("blue")
        shape.locator("[name=sides]").fill("6")
        shape.locator("[name=filled]").check()
        shape.locator("[name=tags]").fill('["a", "b"]')
        shape.locator("button[type=submit]").click()
        page.wait_for_url("**/jobs/*")
        result = daemon.wait(page.url.rsplit("/", 1)[1])["result"]
        assert result == {"name": "hexagon", "colour": "blue", "sides": 6, "filled": True, "tags": ["a", "b"],
                          "note": None}


@needs_browser
def test_untrusted_text_is_shown_as_text(daemon: DaemonProcess) -> None:
    hostile = "<img src=x onerror=\"document.body.dataset.pwned='1'\"><script>document.body.dataset.pwned='1'</script>"
    job = daemon.submit("echo", {"value": hostile})
    daemon.wait(job["id"])
    with dashboard(daemon) as ui, chromium() as browser:
        page = open_page(browser, ui)
        for path in ("/", f"/jobs/{job['id']}"):
            page.goto(ui.base + path)
            expect(page.locator("main")).to_contain_text("<img src=x onerror=")
            assert page.locator("main img").count() == 0 and page.locator("main script").count() == 0
            assert page.evaluate("document.body.dataset.pwned") is None


@needs_browser
def test_every_page_renders_live_where_it_should(daemon: DaemonProcess) -> None:
    for n in range(3):
        daemon.wait(daemon.submit("echo", {"value": n})["id"])
    daemon.wait(daemon.submit("fail", {"message": "on purpose"})["id"])
    _, batch = daemon.client.submit_batch("echo", [{"value": i} for i in range(4)], batch_id="nightly-1")
    queued_behind = daemon.submit("sleep", {"seconds": 30})
    with dashboard(daemon) as ui, chromium() as browser:
        page = open_page(browser, ui)
        # The user log follows live.
        page.goto(f"{ui.base}/log")
        mark_page(page)
        note = daemon.submit("fail", {"message": "watched"})
        expect(page.locator("#log")).to_contain_text(f"{note['id']} fail about to fail", timeout=15_000)
        assert not_reloaded(page)
        shot(page, "user-log")
        # Batches: counts per state, and the items.
        wait_until(lambda: daemon.client.batch("nightly-1")["done"], what="the batch to end")
        page.goto(f"{ui.base}/batches")
        expect(page.locator("main")).to_contain_text("nightly-1")
        expect(page.locator("main")).to_contain_text("succeeded 4")
        shot(page, "batches")
        page.locator("a", has_text="nightly-1").first.click()
        expect(page.locator("table.jobs tbody tr")).to_have_count(4)
        shot(page, "batch")
        # The queue: counts, and finished jobs in the chart (one bar segment per minute and state).
        page.goto(f"{ui.base}/queue")
        expect(page.locator("#running")).to_have_text("1")
        if d_has(daemon, "/v1/queue"):
            expect(page.locator("#paused")).to_have_text("no")
            daemon.client.request("PUT", "/v1/queue", json={"paused": True, "parallel": 3})
            page.reload()
            expect(page.locator("#paused")).to_contain_text("yes")
            expect(page.locator("#concurrency")).to_contain_text("3 at once")
            daemon.client.request("PUT", "/v1/queue", json={"paused": False})
        assert page.locator("svg.chart rect.s-succeeded").count() >= 1
        assert page.locator("svg.chart rect.s-failed").count() >= 1
        shot(page, "queue")
        # Filters by state and type.
        page.goto(f"{ui.base}/?state=failed")
        expect(page.locator("#jobs tbody tr")).to_have_count(2)
        page.goto(f"{ui.base}/?job=echo&limit=50")
        expect(page.locator("#jobs tbody tr")).to_have_count(7)
        # A finished job: restart is offered only where the daemon has it.
        page.goto(f"{ui.base}/jobs/{batch['job_ids'][0]}")
        has_restart = d_has(daemon, "/v1/jobs/{job_id}/restart")
        expect(page.locator("#restart")).to_have_count(1 if has_restart else 0)
        if has_restart:  # confirmed by the dialog handler; the new job's page follows
            page.locator("#restart").click()
            page.wait_for_url(lambda url: batch["job_ids"][0] not in url)
            again = daemon.client.status(page.url.rsplit("/", 1)[1])
            assert again["job"] == "echo" and again.get("restarted_from") == batch["job_ids"][0]
            expect(page.locator("#status")).to_contain_text("Restarted from")
        daemon.client.cancel(queued_behind["id"])


@needs_browser
def test_a_long_log_opens_at_its_end(daemon: DaemonProcess) -> None:
    """Over 1 MiB of output (the API's most at once): the page starts with the end, then follows."""
    job = daemon.wait(daemon.submit("print_lines", {"count": 40_000, "every": 0})["id"], timeout=90)
    with dashboard(daemon) as ui, chromium() as browser:
        page = open_page(browser, ui)
        page.goto(f"{ui.base}/jobs/{job['id']}")
        expect(page.locator("#log")).to_contain_text("line 39999")
        expect(page.locator(".note")).to_contain_text("the end of it")
        assert "Z line 0\n" not in page.locator("#log").text_content()


@needs_browser
def test_paging_through_many_jobs(daemon: DaemonProcess) -> None:
    _, batch = daemon.client.submit_batch("echo", [{"value": i} for i in range(120)])
    wait_until(lambda: daemon.client.batch(batch["batch_id"], limit=0)["done"], timeout=90, what="120 jobs")
    with dashboard(daemon) as ui, chromium() as browser:
        page = open_page(browser, ui)
        expect(page.locator("#jobs tbody tr")).to_have_count(50)
        page.locator("a.next").click()
        expect(page.locator("#jobs tbody tr")).to_have_count(50)
        page.locator("a.next").click()
        expect(page.locator("#jobs tbody tr")).to_have_count(20)
        expect(page.locator("a.next")).to_have_count(0)


@needs_browser
def test_a_page_of_1000_jobs_loads_and_stays_live(daemon: DaemonProcess) -> None:
    """1,000 queued jobs (the queue paused, so none starts): one page of them renders in time,
    and a change to one of them still reaches its row."""
    if not d_has(daemon, "/v1/queue"):
        pytest.skip("the daemon has no queue control to hold 1,000 jobs queued")
    daemon.client.request("PUT", "/v1/queue", json={"paused": True})
    _, batch = daemon.client.submit_batch("echo", [{"value": i} for i in range(1000)])
    with dashboard(daemon) as ui, chromium() as browser:
        page = open_page(browser, ui)
        started = time.monotonic()
        page.goto(f"{ui.base}/?limit=1000")
        expect(page.locator("#jobs tbody tr")).to_have_count(1000)
        loaded = time.monotonic() - started
        print(f"a page of 1,000 jobs: {loaded:.2f} s to load")
        assert loaded < 15, f"a page of 1,000 jobs took {loaded:.1f} s"
        wait_until(lambda: page.evaluate("document.body.classList.contains('live')"), what="the event stream")
        last = batch["job_ids"][0]  # the oldest, at the bottom of the page
        daemon.client.cancel(last)
        expect(page.locator(f"#job-{last} .state")).to_have_text("cancelled", timeout=15_000)
        assert page.evaluate("document.querySelectorAll('#jobs tbody tr').length") == 1000
        # A queued job's page says why it waits, where the daemon tells (`waiting_for`).
        waiting = daemon.client.status(batch["job_ids"][1])
        page.goto(f"{ui.base}/jobs/{waiting['id']}")
        if waiting.get("waiting_for"):
            expect(page.locator("#status .waiting")).to_contain_text(waiting["waiting_for"])
        shot(page, "job-queued")


# -- isolation ---------------------------------------------------------------------------


@needs_browser
def test_a_second_users_dashboard_shows_only_their_jobs(users: LocalUsers, multiuser) -> None:
    d = multiuser(RUNSPACE_ALLOWED_USERS=f"{users.alice.name},{users.bob.name}")
    alices = value(as_user(users.alice, d, lambda c: c.submit("echo", {"value": "alice's secret"})[1]))
    d.wait(alices["id"])
    value(as_user(users.alice, d, lambda c: c.submit_batch("echo", [{"value": 1}, {"value": 2}], batch_id="alices")))
    with dashboard_as(users.bob, d) as bobs_ui, dashboard(d) as admins_ui:
        with chromium() as browser:
            page = open_page(browser, bobs_ui)
            expect(page.locator("header .who")).to_have_text(users.bob.name)
            expect(page.locator("p.empty")).to_be_visible()
            page.goto(f"{bobs_ui.base}/types")
            page.locator("form[data-type=echo] [name=value]").fill("bob's own")
            page.locator("form[data-type=echo] button[type=submit]").click()
            page.wait_for_url("**/jobs/*")
            bobs_id = page.url.rsplit("/", 1)[1]
            assert d.client.status(bobs_id)["requestor"] == users.bob.name  # submitted as bob, by uid
            page.goto(bobs_ui.base + "/")
            expect(page.locator(f"#job-{bobs_id}")).to_be_visible()
            expect(page.locator("#jobs tbody tr")).to_have_count(1)
            assert alices["id"] not in page.content() and "alice's secret" not in page.content()
            shot(page, "jobs-second-user")
            response = page.goto(f"{bobs_ui.base}/jobs/{alices['id']}")
            assert response is not None and response.status == 404
            assert "alice's secret" not in page.content()
            page.goto(f"{bobs_ui.base}/log?user={users.alice.name}")
            assert "alice's secret" not in page.content() and alices["id"] not in page.content()
            page.goto(f"{bobs_ui.base}/batches")
            expect(page.locator("main")).not_to_contain_text("alices")
            # The admin's (root's) dashboard shows everyone's jobs, with who asked for them.
            admin = open_page(browser, admins_ui)
            expect(admin.locator(f"#job-{alices['id']}")).to_be_visible()
            expect(admin.locator(f"#job-{bobs_id}")).to_be_visible()
            expect(admin.locator("#jobs thead")).to_contain_text("Requestor")
            shot(admin, "jobs-admin")
            admin.goto(f"{admins_ui.base}/batches")  # another user's batch: named with its requestor
            admin.locator("a", has_text="alices").click()
            expect(admin.locator("main")).to_contain_text(users.alice.name)
            expect(admin.locator("table.jobs tbody tr")).to_have_count(2)


_SLOW_BROWSER = """#!/bin/sh
# A browser still starting up: what it was asked to open is on its command line meanwhile.
printf '%s' "$1" > "$0.opened"
i=0
while [ ! -e "$0.go" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
"""


@contextmanager
def dashboard_with_browser(daemon: DaemonProcess, browser: Path) -> Iterator[tuple[Dashboard, str]]:
    """`runspace ui` opening its page in `browser` (webbrowser honours $BROWSER): the dashboard,
    and what the browser was given to open."""
    err = open(daemon.base / "ui.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "supervisor", "ui"], env={**daemon.env, "BROWSER": str(browser)},
                            stdout=subprocess.PIPE, stderr=err, text=True, cwd=daemon.base)
    err.close()

    def stop(sig: int = signal.SIGINT) -> int:
        Path(f"{browser}.go").touch()
        if proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(15)
        return proc.returncode

    try:
        url = _first_line(proc.stdout)
        opened = Path(f"{browser}.opened")
        wait_until(opened.exists, timeout=20, what="runspace ui to start the browser")
        yield Dashboard(url, proc.pid, stop), opened.read_text()
    finally:
        stop()


def _tokens_on_command_lines(_: Any) -> list[str]:
    """As another local user: every command line readable in /proc that holds a dashboard token,
    and what the dashboard answers when that user uses it."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        for word in words:
            if b"token=" in word:
                url = word.decode(errors="replace")
                answer = httpx.get(url) if url.startswith("http://127.0.0.1:") else None
                found.append(f"{cmdline.parent.name}: {url} -> {answer.status_code if answer else '-'}")
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="creates a second user to read /proc as")
def test_the_browser_is_never_handed_the_token_on_a_command_line(users: LocalUsers, daemon: DaemonProcess,
                                                                   tmp_path: Path) -> None:
    """Any local user reads /proc/PID/cmdline of the browser `runspace ui` starts, and the token
    is good once: had it been there, bob would be logged in to root's dashboard (and `exec` as root)
    before root's browser even asked."""
    browser = tmp_path / "browser"
    browser.write_text(_SLOW_BROWSER)
    browser.chmod(0o700)
    with dashboard_with_browser(daemon, browser) as (ui, opened):
        assert value(as_user(users.bob, daemon, _tokens_on_command_lines)) == []
        # What the browser got: a page only root may read that sends it on to the URL.
        assert opened.startswith("file:///") and "token=" not in opened
        page = Path(opened.removeprefix("file://"))
        assert page.stat().st_mode & 0o777 == 0o600 and page.parent.stat().st_mode & 0o777 == 0o700
        assert f'url={ui.url}"' in page.read_text()
        with httpx.Client(base_url=ui.base) as web:
            # Followed from that file, the login is another site's navigation: a redirect would
            # lose the SameSite=Strict cookie, so the hop to the jobs page is made from a page of ours.
            login = web.get(ui.url, headers={"sec-fetch-site": "cross-site"})
            assert login.status_code == 200 and 'http-equiv="refresh" content="0;url=/"' in login.text
            assert "samesite=strict" in login.headers["set-cookie"].lower()
            assert web.get("/").status_code == 200
    assert not page.exists()  # removed when the dashboard stops


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_the_redirect_page_is_removed_when_a_signal_stops_the_dashboard(daemon: DaemonProcess, tmp_path: Path,
                                                                        sig: signal.Signals) -> None:
    """Ctrl-C removed the page (mode 0600, the URL with its token inside) that the browser is
    handed; SIGTERM (`kill PID`, a service manager) and SIGHUP (the terminal closed) ended the
    process on the spot and left it behind. Now they stop it as Ctrl-C does, promptly."""
    browser = tmp_path / "browser"
    browser.write_text(_SLOW_BROWSER)
    browser.chmod(0o700)
    with dashboard_with_browser(daemon, browser) as (ui, opened):
        page = Path(opened.removeprefix("file://"))
        assert page.exists() and ui.url in page.read_text()
        with httpx.Client(base_url=ui.base) as web:  # a browser logged in, its events stream open
            assert web.get(ui.url).status_code == 303
            with web.stream("GET", "/events/jobs") as events:
                assert events.status_code == 200
                started = time.monotonic()
                assert ui.stop(sig) == 0
                assert time.monotonic() - started < 8
    assert not page.exists() and not page.parent.exists()
    assert (daemon.base / "ui.log").read_text().rstrip().endswith("runspace ui: stopped")


@needs_browser
def test_the_page_the_browser_opens_logs_it_in(daemon: DaemonProcess, tmp_path: Path) -> None:
    browser = tmp_path / "browser"
    browser.write_text(_SLOW_BROWSER)
    browser.chmod(0o700)
    with dashboard_with_browser(daemon, browser) as (ui, opened), chromium() as chrome:
        page = chrome.browser.new_page()
        page.goto(opened)
        page.wait_for_url(f"{ui.base}/")
        expect(page.locator("header .who")).to_be_visible()


def test_every_template_compiles() -> None:
    """A template's syntax error shows only when its page is opened: find it here instead."""
    from supervisor.ui.state import make_templates

    env = make_templates().env
    names = env.list_templates()
    assert "jobs.html" in names and "_status.html" in names
    for name in names:
        env.get_template(name)
