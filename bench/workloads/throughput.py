"""Jobs per second, submit → all done: command jobs vs tsp / nq / the Popen floor, Python jobs vs RQ."""

from __future__ import annotations

import os
import re
import subprocess
import time

from bench.context import Context
from bench.cpu import CpuMeter, breakdown, fork_floor_ms, rq_meter, runspace_meter
from bench.harness import BENCH_JOBS, RunspaceDaemon, wait_for
from bench.peers import Nq, RqPeer, Tsp, have, have_rq
from bench.report import Row

_METRIC = re.compile(r'^runspace_jobs\{job="([^"]+)",state="([^"]+)"\} (\d+)$', re.M)


def finished_count(d: RunspaceDaemon, job: str) -> int:
    text = d.client.get("/metrics")
    return sum(int(n) for name, state, n in _METRIC.findall(text) if name == job and state not in ("queued", "running"))


def runspace_rate(d: RunspaceDaemon, job: str, count: int, timeout: float = 300) -> float:
    before = finished_count(d, job)
    start = time.perf_counter()
    for _ in range(count):
        d.client.submit(job)
    wait_for(lambda: finished_count(d, job) - before >= count, timeout, 0.02, what=f"{count} {job} jobs")
    return count / (time.perf_counter() - start)


def http_ceiling(d: RunspaceDaemon, count: int) -> float:
    """Sequential `GET /v1/jobs/{id}` round trips per second from the same client: the most
    jobs/s any design that makes one HTTP request per job could reach, before doing any work."""
    job_id = d.client.submit("true_cmd", wait=10)["id"]
    start = time.perf_counter()
    for _ in range(count):
        d.client.get(f"/v1/jobs/{job_id}")
    return count / (time.perf_counter() - start)


def tsp_rate(ctx: Context, count: int, slots: int) -> float:
    tsp = Tsp(ctx.dir("tsp"), slots).start()
    try:
        start = time.perf_counter()
        for _ in range(count):
            tsp.submit("true")
        tsp.wait_finished(count, 300)
        return count / (time.perf_counter() - start)
    finally:
        tsp.stop()


def nq_rate(ctx: Context, count: int) -> float:
    nq = Nq(ctx.dir("nq"))
    start = time.perf_counter()
    for _ in range(count):
        nq.submit("true")
    nq.wait_all()
    return count / (time.perf_counter() - start)


def popen_floor(count: int, in_flight: int) -> tuple[float, float]:
    """`/bin/true` started with subprocess.Popen from one Python process, `in_flight` at a time:
    (starts per second, CPU ms per start, this process's and the reaped children's)."""
    cpu_before = _own_and_children_cpu()
    start = time.perf_counter()
    running: list[subprocess.Popen[bytes]] = []
    for _ in range(count):
        if len(running) >= in_flight:
            os.wait()  # any child; then drop the ones that have ended
            running = [p for p in running if p.poll() is None]
        running.append(subprocess.Popen(["/bin/true"]))
    for proc in running:
        proc.wait()
    rate = count / (time.perf_counter() - start)
    return rate, (_own_and_children_cpu() - cpu_before) * 1000 / count


def _own_and_children_cpu() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def command_jobs(ctx: Context, d8: RunspaceDaemon) -> list[Row]:
    n, serial = ctx.sizes.command_jobs, ctx.sizes.serial_jobs
    rows = []
    meter = runspace_meter(d8.proc.pid)
    before = meter.read()
    rs = runspace_rate(d8, "true_cmd", n)
    rs_cpu = CpuMeter.per_job(before, meter.read(), n)
    floor_rate, floor_cpu = popen_floor(n, 8)
    peers = {"tsp -S 8": tsp_rate(ctx, n, 8) if have("tsp") else None, "Popen floor": floor_rate,
             "HTTP GET ceiling": http_ceiling(d8, n)}
    row = Row(f"{n:,} `true` command jobs, concurrency 8", "submit → all done", "jobs/s", "higher", rs, peers,
              target="≥ 1.5× tsp; ≥ 50 % of floor")
    tsp_adv, floor_share = row.advantage("tsp -S 8"), row.advantage("Popen floor")
    row.met = None if tsp_adv is None else (tsp_adv >= 1.5 and (floor_share or 0) >= 0.5)
    rows.append(row)
    # "jobs": each job process (the forked CPython, then the shim it execs) with its command.
    rows.append(Row(f"{n:,} `true` command jobs, concurrency 8", "CPU per job, all processes", "ms", "lower",
                    sum(rs_cpu.values()), {"Popen floor": floor_cpu},
                    note=f"runspace: {breakdown(rs_cpu)}; {os.cpu_count()} cores allow at most "
                         f"{os.cpu_count() * 1000} / CPU ms jobs/s"))

    rs_serial = runspace_rate(d8, "true_serial", serial)
    peers = {"nq": nq_rate(ctx, serial) if have("nq") else None,
             "tsp -S 1": tsp_rate(ctx, serial, 1) if have("tsp") else None}
    rows.append(Row(f"{serial:,} `true` command jobs, serial", "submit → all done", "jobs/s", "higher",
                    rs_serial, peers, note="runspace: a type with concurrency=1"))
    return rows


def python_jobs(ctx: Context) -> list[Row]:
    n = ctx.sizes.python_jobs
    d2 = RunspaceDaemon(ctx.dir("runspace-c2"), max_concurrency="2").start()
    try:
        runspace_rate(d2, "noop", 10)  # warm-up: first jobs pay one-off imports
        meter = runspace_meter(d2.proc.pid)
        before = meter.read()
        rs = runspace_rate(d2, "noop", n)
        rs_cpu = CpuMeter.per_job(before, meter.read(), n)
    finally:
        d2.stop()
    rq_rate, rq_cpu = rq_python_jobs(ctx, n) if have_rq() else (None, None)
    name = f"{n:,} no-op Python jobs, concurrency 2"
    row = Row(name, "submit → all done", "jobs/s", "higher", rs, {"RQ fork worker ×2": rq_rate}, target="≥ 4× RQ")
    adv = row.advantage("RQ fork worker ×2")
    row.met = None if adv is None else adv >= 4
    note = f"runspace: {breakdown(rs_cpu)}" + (f"; RQ: {breakdown(rq_cpu)}" if rq_cpu else "")
    floor = fork_floor_ms(str(BENCH_JOBS / "benchjobs.py"), 200)
    cpu = Row(name, "CPU per job, all processes", "ms", "lower", sum(rs_cpu.values()),
              {"RQ fork worker ×2": sum(rq_cpu.values()) if rq_cpu else None, "fork + exit floor": floor},
              note=note + f"; {os.cpu_count()} cores allow at most {os.cpu_count() * 1000} / CPU ms jobs/s")
    return [row, cpu]


def rq_python_jobs(ctx: Context, n: int) -> tuple[float, dict[str, float]]:
    from bench import rq_tasks

    rq = RqPeer(ctx.dir("rq-c2"), workers=2).start()
    try:
        for _ in range(10):
            rq.queue.enqueue(rq_tasks.noop)
        wait_for(lambda: rq.finished_count() >= 10, 60, 0.02, what="RQ warm-up")
        meter = rq_meter([w.pid for w in rq.workers], rq.redis_proc.pid)
        before = meter.read()
        start = time.perf_counter()
        for _ in range(n):
            rq.queue.enqueue(rq_tasks.noop)
        wait_for(lambda: rq.finished_count() >= 10 + n, 300, 0.02, what=f"{n} RQ jobs")
        rate = n / (time.perf_counter() - start)
        return rate, CpuMeter.per_job(before, meter.read(), n)
    finally:
        rq.stop()


def run(ctx: Context) -> list[Row]:
    d8 = RunspaceDaemon(ctx.dir("runspace-c8"), max_concurrency="8").start()
    try:
        runspace_rate(d8, "true_cmd", 10)  # warm-up
        rows = command_jobs(ctx, d8)
    finally:
        d8.stop()
    return rows + python_jobs(ctx)
