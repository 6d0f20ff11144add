"""Daemon RSS with many running `sleep` jobs, and the memory each job costs beyond the job itself."""

from __future__ import annotations

import os

import psutil

from bench.context import Context
from bench.harness import RunspaceDaemon, marked_processes, wait_for
from bench.peers import Tsp, have
from bench.report import Row
from supervisor.runner.files import ENV_MARKER, MARKER_PLACEHOLDER


def _pss(proc: psutil.Process) -> int:
    try:
        return proc.memory_full_info().pss
    except psutil.Error:
        return 0


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _is_sleep(proc: psutil.Process) -> bool:
    try:
        return os.path.basename(proc.exe()) == "sleep"
    except psutil.Error:
        return False


def _job_processes() -> list[psutil.Process]:
    found = []
    for proc in marked_processes():
        try:
            if ENV_MARKER in proc.environ():
                found.append(proc)
        except psutil.Error:
            continue
    return found


def affordable(count: int, per_job_mb: float) -> int:
    """How many jobs fit in 40 % of the free memory at `per_job_mb` each (never more than `count`)."""
    free_mb = psutil.virtual_memory().available / 2**20
    return max(1, min(count, int(0.4 * free_mb / max(per_job_mb, 0.01))))


def runspace_memory(ctx: Context, job: str, count: int) -> tuple[float, float, float, float]:
    """(daemon RSS MB, daemon RSS growth MB, shim PSS MB per job, of which the daemon's helpers)
    with `count` jobs running."""
    d = RunspaceDaemon(ctx.dir(f"runspace-{job}"), max_concurrency=str(count + 10)).start()
    try:
        idle_rss = psutil.Process(d.pid).memory_info().rss
        for _ in range(count):
            d.client.submit(job, {"seconds": 600})
        sleeping = lambda: sum(1 for p in _job_processes() if _is_sleep(p))  # noqa: E731
        if job == "sleep_cmd":
            wait_for(lambda: sleeping() >= count, 300, 0.1, what=f"{count} sleep commands")
        else:
            wait_for(lambda: d.client.get("/healthz")["running"] >= count
                     and len(_job_processes()) >= count, 300, 0.1, what=f"{count} running jobs")
        rss = psutil.Process(d.pid).memory_info().rss
        # Everything of the jobs that is not the `sleep` itself is shim: the worker process,
        # plus any helper the daemon runs for jobs (its children other than the jobs).
        shims = [p for p in _job_processes() if not _is_sleep(p) and not _is_spare(p)] if job == "sleep_cmd" else []
        helpers = [p for p in _descendants(d.pid) if ENV_MARKER not in _environ(p) or _is_spare(p)]
        helper_pss = sum(_pss(p) for p in helpers)
        shim_pss = sum(_pss(p) for p in shims) + helper_pss
        return rss / 2**20, (rss - idle_rss) / 2**20, shim_pss / 2**20 / count, helper_pss / 2**20 / count
    finally:
        d.stop()


def _is_spare(proc: psutil.Process) -> bool:
    """A fork-server child forked ahead, waiting for a job: it carries the marker's placeholder."""
    return _environ(proc).get(ENV_MARKER) == MARKER_PLACEHOLDER


def _environ(proc: psutil.Process) -> dict[str, str]:
    try:
        return proc.environ()
    except psutil.Error:
        return {}


# A running tsp job keeps its client connected, and tsp's server takes at most 1,000
# connections (MAXCONN): the 1,000th submit would wait forever.
TSP_MAX_RUNNING = 900


def tsp_memory(ctx: Context, count: int) -> tuple[float, float]:
    """(server RSS MB, per-job shim PSS MB): tsp forks one server child per running job."""
    count = min(count, TSP_MAX_RUNNING)
    tsp = Tsp(ctx.dir("tsp-mem"), count).start()
    try:
        for _ in range(count):
            tsp.submit("sleep", "600")
        wait_for(lambda: sum(1 for p in marked_processes() if _is_sleep(p)) >= count, 120, 0.1,
                 what="tsp sleep jobs")
        tsps = [p for p in marked_processes() if p.name() in ("tsp", "ts")]
        server = min(tsps, key=lambda p: p.create_time())
        shims = [p for p in tsps if p.pid != server.pid]
        return server.memory_info().rss / 2**20, sum(_pss(p) for p in shims) / 2**20 / count
    finally:
        tsp.stop()


def run(ctx: Context) -> list[Row]:
    wanted = ctx.sizes.running_jobs
    n, note = wanted, ""
    if wanted > 50:  # probe first: a fat shim times 1,000 could exhaust this machine's memory
        _, _, probe, _ = runspace_memory(ctx, "sleep_cmd", 20)
        n = affordable(wanted, probe * 1.5)
        if n < wanted:
            note = f"scaled down from {wanted:,}: {probe:.1f} MB of shim per job × {wanted:,} exceeds 40 % of free memory"
    rss, growth, shim, helpers = runspace_memory(ctx, "sleep_cmd", n)
    t_rss, t_shim = tsp_memory(ctx, n) if have("tsp") else (None, None)
    _, py_growth, _, _ = runspace_memory(ctx, "sleep_py", n)
    split = f"runspace: {shim - helpers:.2f} MB each job's shim + {helpers:.2f} MB the fork server and its spares"
    tsp_note = (f"tsp: {TSP_MAX_RUNNING} jobs (its server takes at most 1,000 connections)"
                if n > TSP_MAX_RUNNING and t_shim is not None else "")
    return [
        Row(f"{n:,} running `sleep` command jobs", "daemon RSS", "MB", "lower", rss, {"tsp server": t_rss},
            target="≤ 100 MB", met=rss <= 100,
            note="; ".join(filter(None, [note, f"RSS growth over idle: {growth:.1f} MB"]))),
        Row(f"{n:,} running `sleep` command jobs", "extra PSS per job (shim)", "MB", "lower", shim,
            {"tsp": t_shim}, target="≤ 2 MB", met=shim <= 2, note="; ".join(filter(None, [split, tsp_note]))),
        Row(f"{n:,} running Python sleep jobs", "daemon RSS growth per job", "MB", "lower", py_growth / n),
    ]
