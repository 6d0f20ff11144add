"""Several daemons on one PostgreSQL: 1-second command jobs per second with 1, 2 and 3 daemons,
and idle submit → command started, beside one daemon on SQLite (same jobs, same run).

All daemons run on this machine against a private PostgreSQL (tests/pg.py), so the figures
say what the shared queue costs and how it scales, not what separate hosts would give.
`python -m bench --only hosts` runs this alone (about 40 s).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from bench.context import Context
from bench.harness import RunspaceDaemon, wait_for
from bench.report import Row
from bench.stats import median
from bench.workloads.latency import runspace_start_ms

_SLOTS = 4  # max_concurrency of each daemon
_JOB_SECONDS = 1.0
_WORKLOAD = f"{_JOB_SECONDS:g}-second command jobs, {_SLOTS} per daemon"


def _database(server_url: str) -> str:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.replace("postgresql:///postgres", f"postgresql:///{name}")


@contextmanager
def _daemons(ctx: Context, count: int, store: str | None) -> Iterator[list[RunspaceDaemon]]:
    """`count` daemons on one store (None: each its own SQLite file)."""
    with ExitStack() as stack:
        daemons = []
        for n in range(count):
            extra = {"store": store, "host_id": f"bench-host-{n}", "cgroups": "false"} if store else {}
            d = RunspaceDaemon(ctx.dir(f"hosts-{count}-{n}"), max_concurrency=str(_SLOTS), **extra)
            stack.callback(d.stop)
            daemons.append(d.start())
        yield daemons


def _jobs_per_second(daemons: list[RunspaceDaemon], rounds: int) -> float:
    """Submit enough 1-second jobs to fill every slot `rounds` times; jobs/s until the last ends."""
    count = len(daemons) * _SLOTS * rounds
    first = daemons[0].client
    t0 = time.perf_counter()
    status, batch = first.request("POST", "/v1/batches", {"job": "sleep_cmd",
                                                          "items": [{"seconds": _JOB_SECONDS}] * count})
    assert status < 300, (status, batch)

    def done() -> bool:
        counts = first.get(batch["location"])["counts"]
        return counts.get("succeeded", 0) == count

    wait_for(done, 60 + count * _JOB_SECONDS, interval=0.05, what=f"{count} jobs on {len(daemons)} daemons")
    return count / (time.perf_counter() - t0)


def _measure(ctx: Context, count: int, store: str | None, rounds: int, samples: int) -> tuple[float, float]:
    work = ctx.dir(f"hosts-{count}-stamps")  # its own: a stamp left by an earlier run would read as instant
    with _daemons(ctx, count, store) as daemons:
        runspace_start_ms(daemons[0], "stamp_cmd", work, 2)  # warm-up
        latency = median(runspace_start_ms(daemons[0], "stamp_cmd", work, samples))
        return _jobs_per_second(daemons, rounds), latency


def run(ctx: Context) -> list[Row]:
    try:
        import psycopg  # noqa: F401

        from tests.pg import find_pg_bin, private_postgres
    except ImportError:
        return [Row(_WORKLOAD, "jobs/s", "jobs/s", "higher", None, note="needs the [postgres] extra")]
    bin_dir = find_pg_bin()
    if bin_dir is None:
        return [Row(_WORKLOAD, "jobs/s", "jobs/s", "higher", None, note="no PostgreSQL binaries")]
    rounds = 2 if ctx.quick else 4
    samples = min(ctx.sizes.latency_samples, 30)
    sqlite_rate, sqlite_latency = _measure(ctx, 1, None, rounds, samples)
    figures = {}
    with private_postgres(bin_dir) as server:
        for count in (1, 2, 3):
            figures[count] = _measure(ctx, count, _database(server.url), rounds, samples)

    rows = []
    for count, (rate, latency) in figures.items():
        where = f"{count} daemon{'s' if count > 1 else ''} on one PostgreSQL"
        peers = {"1 daemon on SQLite": sqlite_rate} if count == 1 else {"1 daemon on PostgreSQL": figures[1][0]}
        rows.append(Row(f"{_WORKLOAD}, {where}", "submit → all done", "jobs/s", "higher", rate, peers))
        rows.append(Row(f"idle submit → command started, {where}", "p50", "ms", "lower", latency,
                        {"1 daemon on SQLite": sqlite_latency}))
    return rows
