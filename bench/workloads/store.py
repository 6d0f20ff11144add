"""API latency with a big store: GET /v1/jobs/{id} p99 and the list's first page p99 over
N finished jobs; and a batch of many items accepted."""

from __future__ import annotations

import os
import random
import time

from bench.context import Context
from bench.harness import RunspaceDaemon
from bench.report import Row
from bench.stats import percentile


def prefill(state_dir, count: int) -> list[str]:
    """Write `count` finished jobs straight into the daemon's SQLite store, before it starts."""
    from supervisor.auth import user_name
    from supervisor.models import JobRecord, JobState
    from supervisor.store.sqlite import SqliteStore

    store = SqliteStore(state_dir / "runspace.db")
    me, ids, now = user_name(os.getuid()), [], time.time()
    chunk = 5_000
    for start in range(0, count, chunk):
        records = []
        for n in range(start, min(start + chunk, count)):
            job_id = f"{int((now - count + n) * 1000):012x}{n:08x}"
            records.append(JobRecord(id=job_id, job="noop", params={}, requestor=me, log_user=me,
                                     state=JobState.SUCCEEDED, attempt=1, result={"n": n}, exit_code=0,
                                     started_at=now, finished_at=now))
            ids.append(job_id)
        store.insert(records)
    store.close()
    return ids


def _timed_ms(fn, samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def store_rows(ctx: Context) -> list[Row]:
    n, samples = ctx.sizes.store_jobs, ctx.sizes.store_samples
    base = ctx.dir("runspace-store")
    (base / "state").mkdir()
    ids = prefill(base / "state", n)
    d = RunspaceDaemon(base).start()
    try:
        client = d.client
        pick = random.Random(7).choice
        _timed_ms(lambda: client.get(f"/v1/jobs/{pick(ids)}"), 20)  # warm-up
        get_ms = _timed_ms(lambda: client.get(f"/v1/jobs/{pick(ids)}"), samples)
        list_ms = _timed_ms(lambda: client.get("/v1/jobs"), max(samples // 5, 50))
    finally:
        d.stop()
    get99, list99 = percentile(get_ms, 99), percentile(list_ms, 99)
    return [
        Row(f"{n:,} finished jobs in the store", "GET /v1/jobs/{id} p99", "ms", "lower", get99,
            target="≤ 5 ms", met=get99 <= 5),
        Row(f"{n:,} finished jobs in the store", "GET /v1/jobs first page (50) p99", "ms", "lower", list99,
            target="≤ 20 ms", met=list99 <= 20),
    ]


def batch_rows(ctx: Context) -> list[Row]:
    n = ctx.sizes.batch_items
    name = f"batch of {n:,} items accepted"
    # One job at a time, so the accepted batch does not compete with the measurement.
    d = RunspaceDaemon(ctx.dir("runspace-batch"), max_concurrency="1").start()
    try:
        paths = d.client.get("/openapi.json").get("paths", {})
        if "/v1/batches" not in paths:
            return [Row(name, "POST /v1/batches → 2xx", "ms", "lower", None, target="≤ 1 s",
                        note="n/a (batches not built)")]
        t0 = time.perf_counter()
        status, body = d.client.request("POST", "/v1/batches", {"job": "noop", "items": [{}] * n})
        ms = (time.perf_counter() - t0) * 1000
        if status >= 300:
            return [Row(name, "POST /v1/batches → 2xx", "ms", "lower", None, target="≤ 1 s",
                        note=f"n/a (HTTP {status}: {str(body)[:80]})")]
    finally:
        d.stop(cancel_queued=False)
    return [Row(name, "POST /v1/batches → 2xx", "ms", "lower", ms, target="≤ 1 s", met=ms <= 1000)]


def run(ctx: Context) -> list[Row]:
    return store_rows(ctx) + batch_rows(ctx)
