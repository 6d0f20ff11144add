"""/metrics in Prometheus text format: jobs by state and type, queue, running, durations, kills, restarts."""

from __future__ import annotations

import re

from supervisor.metrics import DurationHistogram
from tests.conftest import TEST_JOBS, DaemonProcess, wait_until


def metrics(d: DaemonProcess) -> dict[str, float]:
    resp = d.client.request("GET", "/metrics")
    assert resp.headers["content-type"].startswith("text/plain")
    samples = {}
    for line in resp.text.splitlines():
        if line and not line.startswith("#"):
            name, _, number = line.rpartition(" ")
            samples[name] = float(number)
    return samples


def test_metrics_count_jobs_durations_kills_and_restarts(make_daemon) -> None:
    d = make_daemon()
    d.submit("echo", {"value": 1, "delay": 0.2}, wait=30)
    d.submit("echo", {"value": 2}, wait=30)
    d.submit("fail", {}, wait=30)
    running = d.submit("sleep", {"seconds": 60})
    wait_until(lambda: d.client.status(running["id"])["state"] == "running", 20, what="sleep running")
    m = metrics(d)
    assert m['runspace_jobs{job="echo",state="succeeded"}'] == 2
    assert m['runspace_jobs{job="fail",state="failed"}'] == 1
    assert m['runspace_jobs{job="sleep",state="running"}'] == 1
    assert m["runspace_running"] == 1 and m["runspace_queue_depth"] == 0
    assert m['runspace_job_duration_seconds_count{job="echo"}'] == 2
    assert m['runspace_job_duration_seconds_bucket{job="echo",le="+Inf"}'] == 2
    assert m['runspace_job_duration_seconds_bucket{job="echo",le="0.1"}'] <= 1  # the 0.2 s one is above
    assert m['runspace_job_duration_seconds_sum{job="echo"}'] >= 0.2
    assert m["runspace_daemon_restarts_total"] == 0

    d.client.cancel(running["id"])
    m = metrics(d)
    assert m['runspace_kills_total{reason="cancelled"}'] == 1
    assert m['runspace_jobs{job="sleep",state="cancelled"}'] == 1 and m["runspace_running"] == 0

    d.stop()
    again = make_daemon(d.base)
    m = metrics(again)
    assert m["runspace_daemon_restarts_total"] == 1 and m["runspace_daemon_starts_total"] == 2
    assert m['runspace_jobs{job="echo",state="succeeded"}'] == 2, "job counts come from the store"


def test_queue_depth_counts_waiting_jobs(make_daemon) -> None:
    d = make_daemon(RUNSPACE_MAX_CONCURRENCY="1")
    first = d.submit("sleep", {"seconds": 60})
    waiting = [d.submit("echo", {"value": i}) for i in range(3)]
    wait_until(lambda: d.client.status(first["id"])["state"] == "running", 20, what="first job running")
    assert metrics(d)["runspace_queue_depth"] == len(waiting)
    d.client.cancel(first["id"])
    for job in waiting:  # let them finish here: a daemon stopped mid-job leaves jobs running
        d.wait(job["id"])


def test_histogram_buckets_are_cumulative_and_text_is_well_formed() -> None:
    h = DurationHistogram(buckets=(1.0, 10.0))
    for seconds in (0.5, 1.0, 5.0, 50.0):
        h.observe('we"ird', seconds)
    lines = h.render("d")
    assert lines == [
        'd_bucket{job="we\\"ird",le="1"} 2',
        'd_bucket{job="we\\"ird",le="10"} 3',
        'd_bucket{job="we\\"ird",le="+Inf"} 4',
        'd_sum{job="we\\"ird"} 56.500000',
        'd_count{job="we\\"ird"} 4',
    ]
    assert all(re.match(r'^[a-z_]+\{.*\} [0-9.]+$', line) for line in lines)


def test_a_job_type_named_kill_is_not_counted_as_a_kill(make_daemon, tmp_path) -> None:
    """Ends and kills are counted apart: a type named `kill` ending `succeeded` is no kill reason."""
    extra = tmp_path / "jobs"
    extra.mkdir()
    (extra / "named_kill.py").write_text(
        "from pydantic import BaseModel\nfrom supervisor import job\n"
        "class P(BaseModel):\n    pass\n"
        "@job()\ndef kill(params: P, ctx) -> int:\n    return 1\n"
    )
    d = make_daemon(RUNSPACE_JOBS_PATH=f"{TEST_JOBS}:{extra}")
    assert d.submit("kill", {}, wait=30)["state"] == "succeeded"
    m = metrics(d)
    assert m['runspace_jobs{job="kill",state="succeeded"}'] == 1
    assert not [name for name in m if name.startswith("runspace_kills_total")], m
