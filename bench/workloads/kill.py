"""Timeout / cancel of a 20-process tree (setsid, double-forked, SIGTERM-ignoring members):
time until the last pid is gone for runspace; survivors for GNU timeout and RQ."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from bench.context import Context
from bench.harness import RunspaceDaemon, kill_pids, marked_env, pids_alive, wait_for
from bench.peers import RqPeer, have, have_rq
from bench.report import Row

SIZE = 20
GRACE = 0.5  # kill_grace of the bench tree job types, and -k of GNU timeout
TREE = str(Path(__file__).resolve().parent.parent / "tree.py")


def _pids(pidfile: Path) -> list[int]:
    return [int(p) for p in pidfile.read_text().split()] if pidfile.exists() else []


def _tree_ready(pidfile: Path) -> list[int]:
    return wait_for(lambda: len(_pids(pidfile)) >= SIZE and _pids(pidfile), 30, 0.005, what="tree ready")


def _gone_at(pids: list[int], timeout: float = 30) -> float:
    wait_for(lambda: not pids_alive(pids), timeout, 0.002, what="tree gone")
    return time.time()


def runspace_cancel(d: RunspaceDaemon, work: Path) -> tuple[float, int]:
    pidfile = work / "rs-cancel.pids"
    status = d.client.submit("tree_py", {"pidfile": str(pidfile), "size": SIZE})
    pids = _tree_ready(pidfile)
    t0 = time.time()
    d.client.request("POST", f"/v1/jobs/{status['id']}/cancel")
    gone = _gone_at(pids)
    survivors = len(pids_alive(pids))
    return (gone - t0) * 1000, survivors


def runspace_timeout(d: RunspaceDaemon, work: Path) -> tuple[float, int]:
    pidfile = work / "rs-timeout.pids"
    status = d.client.submit("tree_py_timeout", {"pidfile": str(pidfile), "size": SIZE})
    pids = _tree_ready(pidfile)
    gone = _gone_at(pids)
    final = d.client.get(f"/v1/jobs/{status['id']}/wait?timeout=30")
    killed_at = datetime.fromisoformat(final["killed_at"].replace("Z", "+00:00")).timestamp()
    return (gone - killed_at) * 1000, len(pids_alive(pids))


def gnu_timeout_survivors(work: Path) -> int:
    pidfile = work / "timeout.pids"
    proc = subprocess.Popen(["timeout", "-k", str(GRACE), "1", sys.executable, TREE, str(pidfile), str(SIZE)],
                            env=marked_env(), stdout=subprocess.DEVNULL)
    pids = _tree_ready(pidfile)
    proc.wait(30)
    time.sleep(GRACE + 0.5)
    survivors = pids_alive(pids)
    kill_pids(survivors)
    return len(survivors)


def rq_survivors(ctx: Context, work: Path) -> int:
    from bench import rq_tasks

    pidfile = work / "rq.pids"
    rq = RqPeer(ctx.dir("rq-kill"), workers=1).start()
    try:
        job = rq.queue.enqueue(rq_tasks.tree, str(pidfile), SIZE, job_timeout=1)
        pids = _tree_ready(pidfile)
        wait_for(lambda: job.get_status(refresh=True) in ("failed", "finished", "stopped"), 30, 0.02,
                 what="RQ job to time out")
        time.sleep(GRACE + 0.5)
        survivors = pids_alive(pids)
        kill_pids(survivors)
        return len(survivors)
    finally:
        rq.stop()


def run(ctx: Context) -> list[Row]:
    work = ctx.dir("trees")
    d = RunspaceDaemon(ctx.dir("runspace-kill")).start()
    try:
        cancel_ms, cancel_left = runspace_cancel(d, work)
        timeout_ms, timeout_left = runspace_timeout(d, work)
    finally:
        d.stop()
    gnu = gnu_timeout_survivors(work) if have("timeout") else None
    rq = rq_survivors(ctx, work) if have_rq() else None
    limit = GRACE * 1000 + 100
    return [
        Row(f"cancel a {SIZE}-process tree", "cancel → last pid gone", "ms", "lower", cancel_ms,
            target=f"≤ kill_grace ({GRACE:g} s) + 100 ms", met=cancel_ms <= limit),
        Row(f"timeout of a {SIZE}-process tree", "timeout → last pid gone", "ms", "lower", timeout_ms,
            target=f"≤ kill_grace ({GRACE:g} s) + 100 ms", met=timeout_ms <= limit),
        Row(f"timeout of a {SIZE}-process tree", "survivors", "count", "lower", float(cancel_left + timeout_left),
            {"GNU timeout -k": gnu, "RQ job_timeout": rq}, target="0", met=cancel_left + timeout_left == 0),
    ]
