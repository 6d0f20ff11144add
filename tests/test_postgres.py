"""Several daemons share one queue through a real PostgreSQL server started by the test."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from supervisor.errors import NotFound

from conftest import ROOT, wait_until
from pg import find_pg_bin, private_postgres

psycopg = pytest.importorskip("psycopg", reason="the [postgres] extra (psycopg) is not installed")

from supervisor.store.migrations import SchemaTooNew, latest_version  # noqa: E402
from supervisor.store.postgres import PostgresStore  # noqa: E402

LEASE_TTL = 3.0


def _sql(url: str, query: str, *args: object) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, args or None)
        return cur.fetchall() if cur.description else []


def _host(make_daemon, url: str, base: Path, name: str, **env: str):
    env = {"RUNSPACE_LEASE_TTL": str(LEASE_TTL), "RUNSPACE_CGROUPS": "false", **env}
    return make_daemon(base / name, RUNSPACE_STORE=url, RUNSPACE_HOST_ID=name, **env)


def _hosts(make_daemon, url: str, base: Path, count: int, **env: str) -> list:
    """Start `count` hosts at once: a daemon start is seconds on a loaded machine."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda i: _host(make_daemon, url, base, f"host-{i}", **env), range(count)))


def _lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_migrations_are_applied_once_and_a_newer_schema_is_refused(pg_url: str, tmp_path: Path) -> None:
    PostgresStore(pg_url).close()
    PostgresStore(pg_url).close()  # a second start applies nothing again
    versions = [v for (v,) in _sql(pg_url, "SELECT version FROM schema_version ORDER BY version")]
    assert versions == list(range(1, latest_version("postgres") + 1))

    _sql(pg_url, "INSERT INTO schema_version (version) VALUES (%s)", latest_version("postgres") + 1)
    with pytest.raises(SchemaTooNew, match="upgrade runspace"):
        PostgresStore(pg_url)
    daemon = subprocess.run([sys.executable, "-m", "supervisor", "daemon"], capture_output=True, text=True,
                            timeout=30, cwd=tmp_path,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "RUNSPACE_STORE": pg_url,
                                 "RUNSPACE_STATE_DIR": str(tmp_path / "state"),
                                 "RUNSPACE_SOCKET": str(tmp_path / "s.sock")})
    assert daemon.returncode != 0
    assert "upgrade runspace" in daemon.stderr


def test_any_host_sees_status_and_forwards_cancel(make_daemon, pg_url: str, tmp_path: Path) -> None:
    a = _host(make_daemon, pg_url, tmp_path, "host-a")
    long_job = a.submit("shared_sleep", {"seconds": 60})
    short_job = a.submit("shared_sleep", {"seconds": 1})
    wait_until(lambda: a.client.status(long_job["id"])["state"] == "running", 10, what="job running on host-a")
    b = _host(make_daemon, pg_url, tmp_path, "host-b")

    seen = b.client.status(long_job["id"])
    assert (seen["state"], seen["processed_by"]) == ("running", "host-a")
    assert {item["id"] for item in b.client.list()["items"]} >= {long_job["id"], short_job["id"]}
    with pytest.raises(NotFound, match="kept on host host-a"):
        b.client.log(long_job["id"])

    # host-b learns of the end on host-a through NOTIFY, not by waiting out its timeout.
    started = time.monotonic()
    done = b.client.wait(short_job["id"], timeout=30)
    assert done["state"] == "succeeded" and time.monotonic() - started < 10

    cancelled = b.client.cancel(long_job["id"])
    final = cancelled if cancelled["done"] else b.wait(long_job["id"], 15)
    assert (final["state"], final["reason"], final["processed_by"]) == ("cancelled", "cancelled", "host-a")


def test_key_serialisation_and_type_concurrency_hold_across_hosts(make_daemon, pg_url: str, tmp_path: Path) -> None:
    hosts = _hosts(make_daemon, pg_url, tmp_path, 3)
    keyed, limited = tmp_path / "keyed.txt", tmp_path / "limited.txt"
    ids = []
    for i in range(6):
        ids.append(hosts[i % 3].submit("shared_keyed", {"path": str(keyed), "delay": 0.3, "key": "case-1"})["id"])
    for i in range(8):
        ids.append(hosts[i % 3].submit("shared_limited", {"path": str(limited), "delay": 0.5})["id"])
    for job_id in ids:
        assert hosts[0].wait(job_id, 60)["state"] == "succeeded"

    runs = sorted((float(start), float(end)) for _, _, start, end in _lines(keyed))
    assert len(runs) == 6
    assert all(prev_end <= start for (_, prev_end), (start, _) in zip(runs, runs[1:])), runs
    spans = [(float(s), float(e)) for _, _, s, e in _lines(limited)]
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most <= 2, spans
    ran_on = {host for _, host, _, _ in _lines(keyed) + _lines(limited)}
    assert len(ran_on) >= 2, f"expected the work spread over hosts, ran on {ran_on}"


@pytest.mark.timeout(150)  # ~75 s on a 2-core machine at load 18; job process start-up dominates
def test_500_jobs_on_3_hosts_run_exactly_once_when_one_host_is_killed(
    make_daemon, pg_url: str, tmp_path: Path
) -> None:
    hosts = _hosts(make_daemon, pg_url, tmp_path, 3, RUNSPACE_MAX_CONCURRENCY="8")
    marks = tmp_path / "marks.txt"
    # Ten batches of 50, spread over the hosts: one in five declares a retry.
    for chunk in range(10):
        kind = "shared_mark_retry" if chunk % 5 == 0 else "shared_mark"
        items = [{"path": str(marks), "delay": 0.05}] * 50
        hosts[chunk % 3].client.submit_batch(kind, items)

    victim = hosts[2]

    def victim_is_busy() -> bool:
        (n,), = _sql(pg_url, "SELECT count(*) FROM jobs WHERE state = 'running' AND processed_by = 'host-2'")
        return len(_lines(marks)) >= 60 and n > 0

    wait_until(victim_is_busy, 40, interval=0.02, what="host-2 to run jobs after 60 have finished")
    victim.stop(signal.SIGKILL)

    def all_done() -> bool:
        (n,), = _sql(pg_url, "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')")
        return n == 0

    wait_until(all_done, 90, interval=0.2, what="every job to end on the surviving hosts")
    rows = _sql(pg_url, "SELECT id, job, state, attempt, processed_by, reason FROM jobs")
    assert len(rows) == 500
    runs = Counter(job_id for job_id, *_ in _lines(marks))
    lost = requeued = 0
    for job_id, job, state, attempt, processed_by, reason in rows:
        assert runs[job_id] <= attempt, f"{job_id} ran {runs[job_id]} times in {attempt} attempts"
        if job == "shared_mark":
            assert attempt == 1
            if state == "lost":  # it was running on the killed host: it may have finished there
                assert (processed_by, reason) == ("host-2", "daemon_lost")
                lost += 1
            else:
                assert state == "succeeded" and runs[job_id] == 1, (job_id, state, runs[job_id])
        else:  # one retry declared: a job caught on the killed host runs again on a survivor
            assert state == "succeeded" and runs[job_id] >= 1, (job_id, state)
            if attempt == 2:
                assert processed_by in ("host-0", "host-1")
                requeued += 1
    assert lost + requeued > 0, "the kill caught no running job; nothing was proven"
    assert {host for _, host, _, _ in _lines(marks)} == {"host-0", "host-1", "host-2"}
    (hosts_left,), = _sql(pg_url, "SELECT count(*) FROM hosts WHERE host_id = 'host-2'")
    assert hosts_left == 0, "the dead host's lease was not settled"


@pytest.mark.timeout(240)
@pytest.mark.parametrize(("count", "outage"), [(2, 3.0), (3, 20.0)])
def test_a_database_outage_stops_no_daemon_and_loses_or_doubles_nothing(
    make_daemon, tmp_path: Path, count: int, outage: float
) -> None:
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL binaries (initdb, pg_ctl)")
    with private_postgres(bin_dir) as server:  # its own server: this test stops it
        hosts = _hosts(make_daemon, server.url, tmp_path, count, RUNSPACE_MAX_CONCURRENCY="4")
        marks = tmp_path / "marks.txt"
        ids = [hosts[i % count].submit("shared_mark", {"path": str(marks), "delay": 0.4 + (i % 5) * 0.3})["id"]
               for i in range(60)]

        def busy() -> bool:
            (n,), = _sql(server.url, "SELECT count(*) FROM jobs WHERE state = 'running'")
            return len(_lines(marks)) >= 5 and n >= count
        wait_until(busy, 60, interval=0.05, what="jobs running on every host")

        server.stop()
        seen: Counter[int] = Counter()
        health: Counter[int] = Counter()
        ends = time.monotonic() + outage
        while time.monotonic() < ends:  # under load: every host is asked all the time
            for d in hosts:
                answer = d.raw("POST", "/v1/jobs", json={"job": "shared_mark", "params": {"path": str(marks)}})
                status, headers, body = answer.status_code, answer.headers, answer.json()
                seen[status] += 1
                if status == 503:
                    assert int(headers["retry-after"]) > 0
                    assert headers["content-type"] == "application/problem+json"
                    assert "psycopg" not in body["detail"] and "connection" not in body["detail"], body
                else:
                    ids.append(body["id"])  # taken before the host noticed: it must run too
                health[d.raw("GET", "/healthz").status_code] += 1
            time.sleep(0.2)
        assert [d.proc.poll() for d in hosts] == [None] * count, "a daemon died in the outage"
        assert seen[503] > 0 and set(seen) <= {201, 503}, seen
        assert health[503] > 0, health
        server.start()

        def all_done() -> bool:
            (n,), = _sql(server.url, "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')")
            return n == 0
        wait_until(all_done, 120, interval=0.2, what="every job to end after the outage")
        for d in hosts:
            wait_until(lambda d=d: d.raw("GET", "/healthz").status_code == 200, 30, what="health to recover")
        rows = dict(_sql(server.url, "SELECT id, state FROM jobs"))
        assert [d.proc.poll() for d in hosts] == [None] * count, "a daemon died after the outage"

    assert sorted(rows) == sorted(ids)
    assert Counter(rows.values()) == Counter({"succeeded": len(ids)}), Counter(rows.values())
    runs = Counter(job_id for job_id, *_ in _lines(marks))
    assert all(runs[job_id] == 1 for job_id in ids), {job_id: runs[job_id] for job_id in ids if runs[job_id] != 1}
    for d in hosts:
        log = d.log()
        assert "job store degraded" in log and "job store recovered" in log
        assert "unhandled error" not in log and "Traceback" not in log, log[-3000:]


# -- faults (issue 18) ---------------------------------------------------------------------


def _state(url: str, job_id: str) -> tuple:
    (row,) = _sql(url, "SELECT state, attempt, processed_by FROM jobs WHERE id = %s", job_id)
    return row


def test_jobs_of_a_running_key_start_whatever_their_priority(make_daemon, pg_url: str, tmp_path: Path) -> None:
    """The host's rule and the claim agree on which job of a key comes first (it stalled)."""
    a = _host(make_daemon, pg_url, tmp_path, "host-a")
    marks = tmp_path / "marks.txt"
    keyed = {"path": str(marks), "key": "z"}
    first = a.submit("shared_keyed", {**keyed, "delay": 1.0})
    wait_until(lambda: a.client.status(first["id"])["state"] == "running", 15, what="the first k=z job to run")
    low = a.submit("shared_keyed", {**keyed, "delay": 0.0})
    high = a.submit("shared_keyed", {**keyed, "delay": 0.0}, priority=5)
    assert a.wait(high["id"], 30)["state"] == "succeeded"
    assert a.wait(low["id"], 30)["state"] == "succeeded"
    order = [job_id for job_id, *_ in _lines(marks)]
    assert order == [first["id"], high["id"], low["id"]]  # queue order, as on one host


def test_a_key_never_stalls_when_three_hosts_submit_and_claim_at_once(make_daemon, pg_url: str, tmp_path: Path) -> None:
    hosts = _hosts(make_daemon, pg_url, tmp_path, 3)
    marks = tmp_path / "marks.txt"

    def submit(i: int) -> str:
        params = {"path": str(marks), "delay": 0.1, "key": "z"}
        return hosts[i % 3].submit("shared_keyed", params, priority=i % 4)["id"]

    with ThreadPoolExecutor(6) as pool:  # the hosts claim while the submissions land
        ids = list(pool.map(submit, range(24)))
    for job_id in ids:
        assert hosts[0].wait(job_id, 60)["state"] == "succeeded"
    runs = sorted((float(start), float(end)) for _, _, start, end in _lines(marks))
    assert len(runs) == 24
    assert all(prev_end <= start for (_, prev_end), (start, _) in zip(runs, runs[1:])), runs


def test_a_free_job_starts_whatever_number_of_blocked_jobs_stand_ahead(
    make_daemon, pg_url: str, tmp_path: Path
) -> None:
    a = _host(make_daemon, pg_url, tmp_path, "host-a")
    keyed = {"path": str(tmp_path / "marks.txt"), "key": "z"}
    blocker = a.submit("shared_keyed", {**keyed, "delay": 60.0})
    wait_until(lambda: a.client.status(blocker["id"])["state"] == "running", 15, what="the k=z job to run")
    status, _ = a.client.submit_batch("shared_keyed", [keyed] * 50)
    assert status == 202
    submitted = time.monotonic()
    free = a.submit("shared_sleep", {"seconds": 0})
    assert a.wait(free["id"], 20)["state"] == "succeeded"
    assert time.monotonic() - submitted < 10  # it waited for the k=z job to end (60 s) before the fix


def test_a_dead_hosts_claimed_but_unstarted_job_is_requeued(make_daemon, pg_url: str, tmp_path: Path) -> None:
    a = _host(make_daemon, pg_url, tmp_path, "host-a", RUNSPACE_MAX_CONCURRENCY="1")
    busy = a.submit("shared_sleep", {"seconds": 60})
    wait_until(lambda: a.client.status(busy["id"])["state"] == "running", 15, what="host-a to be busy")
    waiting = a.submit("shared_sleep", {"seconds": 0})
    # As a host that claimed it and died before starting it leaves it (no pid recorded).
    _sql(pg_url, "INSERT INTO hosts (host_id, pid, started_at, expires_at) VALUES ('ghost', 1, 0, 0)")
    _sql(pg_url, "UPDATE jobs SET state = 'running', attempt = 1, processed_by = 'ghost' WHERE id = %s",
         waiting["id"])
    wait_until(lambda: _state(pg_url, waiting["id"])[0] != "running", 15, what="host-a to settle host ghost")
    assert _state(pg_url, waiting["id"]) == ("queued", 0, None)  # `lost` before the fix
    a.client.cancel(busy["id"])
    done = a.wait(waiting["id"], 30)
    assert (done["state"], done["attempt"], done["processed_by"]) == ("succeeded", 1, "host-a")


def test_a_second_daemon_with_a_live_host_id_refuses_to_start(make_daemon, pg_url: str, tmp_path: Path) -> None:
    a = _host(make_daemon, pg_url, tmp_path, "host-a")
    twin = subprocess.run([sys.executable, "-m", "supervisor", "daemon"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "RUNSPACE_STORE": pg_url,
                               "RUNSPACE_HOST_ID": "host-a", "RUNSPACE_CGROUPS": "false",
                               "RUNSPACE_STATE_DIR": str(tmp_path / "twin"),
                               "RUNSPACE_SOCKET": str(tmp_path / "twin.sock")})
    assert twin.returncode == 1, twin.stderr
    assert twin.stderr.strip().splitlines()[-1].startswith("runspace: error: host id 'host-a' is in use"), twin.stderr
    assert "Traceback" not in twin.stderr
    assert a.client.request("GET", "/healthz").status_code == 200

    # The same daemon restarting within its lease takes it over and re-adopts its jobs.
    job = a.submit("shared_sleep", {"seconds": 60})
    wait_until(lambda: a.client.status(job["id"])["state"] == "running", 15, what="the job to run")
    a.stop()
    a.start()
    assert a.client.status(job["id"])["state"] == "running"
    assert "re-adopted" in a.log()


def test_a_host_whose_lease_runs_short_starts_nothing(make_daemon, pg_url: str, tmp_path: Path) -> None:
    a = _host(make_daemon, pg_url, tmp_path, "host-a", RUNSPACE_LEASE_TTL="60")  # renewed every 20 s
    # As if two renewals had failed: less than a renewal interval left.
    _sql(pg_url, "UPDATE hosts SET expires_at = extract(epoch from clock_timestamp()) + 10")
    job = a.submit("shared_sleep", {"seconds": 0})
    time.sleep(3)
    assert a.client.status(job["id"])["state"] == "queued"
    assert a.wait(job["id"], 40)["state"] == "succeeded"  # once the lease is renewed


@pytest.mark.timeout(120)
def test_a_slow_host_kills_its_jobs_and_stops_when_it_resumes(make_daemon, pg_url: str, tmp_path: Path) -> None:
    """SIGSTOP past the lease: the survivor settles its jobs; on SIGCONT it stops cleanly (it crashed)."""
    # Each daemon's jobs in its own cgroups: on one machine, the env marker by which a daemon
    # without cgroups finds a job's processes would name host-b's attempt as well.
    a = _host(make_daemon, pg_url, tmp_path, "host-a", RUNSPACE_KILL_GRACE="1", RUNSPACE_CGROUPS="true")
    marks = tmp_path / "marks.txt"
    jobs = {kind: a.submit(kind, {"path": str(marks), "delay": 12.0}) for kind in ("shared_mark", "shared_mark_retry")}
    wait_until(lambda: all(_state(pg_url, j["id"])[0] == "running" for j in jobs.values()), 15,
               what="both jobs to run on host-a")
    b = _host(make_daemon, pg_url, tmp_path, "host-b", RUNSPACE_CGROUPS="true")
    a.proc.send_signal(signal.SIGSTOP)
    try:
        lost, retried = jobs["shared_mark"]["id"], jobs["shared_mark_retry"]["id"]
        wait_until(lambda: _state(pg_url, lost)[0] == "lost", 20, interval=0.2, what="host-b to settle host-a")
        wait_until(lambda: _state(pg_url, retried)[::2] == ("running", "host-b"), 20, what="the retry on host-b")
    finally:
        a.proc.send_signal(signal.SIGCONT)
    resumed = time.monotonic()
    assert a.proc.wait(30) == 1
    assert "was taken over" in a.log() and "Traceback" not in a.log(), a.log()
    assert time.monotonic() - resumed < 15
    done = b.wait(retried, 30)
    assert (done["state"], done["attempt"], done["processed_by"]) == ("succeeded", 2, "host-b")
    assert _state(pg_url, lost) == ("lost", 1, "host-a")
    # host-a killed both attempts when it resumed, before they could finish.
    assert [host for job_id, host, *_ in _lines(marks) if job_id in (lost, retried)] == ["host-b"]
