"""Idle submit → job process started (p50/p99), and POST /v1/jobs with wait (round trip p50)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.context import Context
from bench.harness import RunspaceDaemon, wait_for
from bench.peers import Nq, RqPeer, Tsp, have, have_rq
from bench.report import Row
from bench.stats import median, percentile

_IDLE_PAUSE = 0.02  # between samples, so each submission meets an idle system
_STAMP_CMD = ("sh", "-c", 'date +%s.%N > "$0"')


def _read_stamp(path: Path) -> float:
    wait_for(lambda: path.exists() and path.read_text().strip(), 30, 0.001, what=f"stamp {path}")
    return float(path.read_text())


def runspace_start_ms(d: RunspaceDaemon, job: str, work: Path, samples: int) -> list[float]:
    out = []
    for n in range(samples):
        stamp = work / f"rs-{job}-{n}"
        t0 = time.time()
        status = d.client.submit(job, {"path": str(stamp)})
        out.append((_read_stamp(stamp) - t0) * 1000)
        d.client.get(f"/v1/jobs/{status['id']}/wait?timeout=30")
        time.sleep(_IDLE_PAUSE)
    return out


def exec_start_ms(d: RunspaceDaemon, work: Path, samples: int, cli: bool) -> list[float]:
    """`runspace exec` of the same command tsp and nq run: over the API, or as the cold CLI
    process a shell user types (as `tsp CMD` and `nq CMD` are)."""
    out = []
    for n in range(samples):
        stamp = work / f"rs-exec-{'cli' if cli else 'api'}-{n}"
        argv = [*_STAMP_CMD, str(stamp)]
        t0 = time.time()
        if cli:
            job_id = subprocess.run([sys.executable, "-m", "supervisor", "exec", "--", *argv], env=d.env,
                                    cwd=work, capture_output=True, text=True, check=True).stdout.strip()
        else:
            job_id = d.client.submit("exec", {"argv": argv, "cwd": str(work)})["id"]
        out.append((_read_stamp(stamp) - t0) * 1000)
        d.client.get(f"/v1/jobs/{job_id}/wait?timeout=30")
        time.sleep(_IDLE_PAUSE)
    return out


def tsp_start_ms(ctx: Context, work: Path, samples: int) -> list[float]:
    tsp = Tsp(ctx.dir("tsp-latency"), 8).start()
    out = []
    try:
        for n in range(samples):
            stamp = work / f"tsp-{n}"
            t0 = time.time()
            job_id = tsp.submit(*_STAMP_CMD, str(stamp))
            out.append((_read_stamp(stamp) - t0) * 1000)
            tsp.tsp("-w", str(job_id))
            time.sleep(_IDLE_PAUSE)
    finally:
        tsp.stop()
    return out


def nq_start_ms(ctx: Context, work: Path, samples: int) -> list[float]:
    nq = Nq(ctx.dir("nq-latency"))
    out = []
    for n in range(samples):
        stamp = work / f"nq-{n}"
        t0 = time.time()
        nq.submit(*_STAMP_CMD, str(stamp))
        out.append((_read_stamp(stamp) - t0) * 1000)
        nq.wait_all()
        time.sleep(_IDLE_PAUSE)
    return out


def rq_start_ms(rq: RqPeer, work: Path, samples: int) -> list[float]:
    from bench import rq_tasks

    out = []
    for n in range(samples):
        stamp = work / f"rq-{n}"
        t0 = time.time()
        job = rq.queue.enqueue(rq_tasks.stamp, str(stamp))
        out.append((_read_stamp(stamp) - t0) * 1000)
        job.latest_result(timeout=30)
        time.sleep(_IDLE_PAUSE)
    return out


def runspace_wait_ms(d: RunspaceDaemon, samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        status = d.client.submit("noop", wait=10)
        out.append((time.perf_counter() - t0) * 1000)
        assert status["done"], status
    return out


def rq_wait_ms(rq: RqPeer, samples: int) -> list[float]:
    from bench import rq_tasks

    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        job = rq.queue.enqueue(rq_tasks.noop)
        result = job.latest_result(timeout=10)
        out.append((time.perf_counter() - t0) * 1000)
        assert result is not None
    return out


def _pair(samples: list[float] | None) -> tuple[float | None, float | None]:
    return (median(samples), percentile(samples, 99)) if samples else (None, None)


def run(ctx: Context) -> list[Row]:
    n, n_wait = ctx.sizes.latency_samples, ctx.sizes.wait_samples
    work = ctx.dir("stamps")
    d = RunspaceDaemon(ctx.dir("runspace-latency"), max_concurrency="8").start()
    try:
        runspace_start_ms(d, "stamp_cmd", work, 2)  # warm-up
        rs_cmd = runspace_start_ms(d, "stamp_cmd", work, n)
        rs_py = runspace_start_ms(d, "stamp_py", work, n)
        exec_start_ms(d, work, 2, cli=False)  # warm-up
        rs_exec = exec_start_ms(d, work, n, cli=False)
        rs_exec_cli = exec_start_ms(d, work, n, cli=True)
        runspace_wait_ms(d, 3)
        rs_wait = runspace_wait_ms(d, n_wait)
    finally:
        d.stop()
    tsp = tsp_start_ms(ctx, work, n) if have("tsp") else None
    nq = nq_start_ms(ctx, work, n) if have("nq") else None
    rq_py = rq_wait = None
    if have_rq():
        rq = RqPeer(ctx.dir("rq-latency"), workers=1).start()
        try:
            rq_start_ms(rq, work, 2)
            rq_py = rq_start_ms(rq, work, n)
            rq_wait = rq_wait_ms(rq, n_wait)
        finally:
            rq.stop()

    rows = []
    (c50, c99), (t50, t99), (q50, q99) = _pair(rs_cmd), _pair(tsp), _pair(nq)
    row = Row("idle submit → command started", "p50", "ms", "lower", c50, {"tsp": t50, "nq": q50},
              target="≤ tsp p50")
    row.met = None if t50 is None else c50 <= t50
    rows += [row, Row("idle submit → command started", "p99", "ms", "lower", c99, {"tsp": t99, "nq": q99})]
    for label, samples in (("idle `runspace exec` (API) → command started", rs_exec),
                           ("idle `runspace exec -- CMD` (CLI process) → command started", rs_exec_cli)):
        (e50, e99) = _pair(samples)
        rows += [Row(label, "p50", "ms", "lower", e50, {"tsp": t50, "nq": q50}),
                 Row(label, "p99", "ms", "lower", e99, {"tsp": t99, "nq": q99})]
    (p50, p99), (r50, r99) = _pair(rs_py), _pair(rq_py)
    rows += [Row("idle submit → Python job started", "p50", "ms", "lower", p50, {"RQ": r50}, target="≤ 5 ms",
                 met=p50 <= 5),
             Row("idle submit → Python job started", "p99", "ms", "lower", p99, {"RQ": r99})]
    w50, rw50 = median(rs_wait), (median(rq_wait) if rq_wait else None)
    rows.append(Row("POST /v1/jobs with wait, no-op job", "round trip p50", "ms", "lower", w50,
                    {"RQ enqueue + latest_result(timeout)": rw50}, target="≤ 10 ms", met=w50 <= 10))
    return rows
