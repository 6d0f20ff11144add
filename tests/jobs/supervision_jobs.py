"""Job types for the supervision tests: trees that resist killing, run-once ledgers, stress mixes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel, Field

from supervisor import JobContext, job

_TREE_CODE = (
    "import os, signal, sys, time\n"
    "mode = sys.argv[1]\n"
    "if mode == 'ignore': signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "if mode == 'setsid': os.setsid()\n"
    "if mode == 'double' and os.fork() > 0: os._exit(0)\n"
    "if mode == 'double': os.setsid()\n"
    "open(sys.argv[2], 'a').write(f'{os.getpid()}\\n')\n"
    "time.sleep(float(sys.argv[3]))\n"
)


def start_tree(pidfile: str, seconds: float) -> None:
    """A SIGTERM-ignoring child, a setsid grandchild and a double-forked daemon; waits until all three wrote their pid."""
    for mode in ("ignore", "setsid", "double"):
        subprocess.Popen([sys.executable, "-c", _TREE_CODE, mode, pidfile, str(seconds)])
    deadline = time.time() + 10
    while time.time() < deadline:
        if Path(pidfile).exists() and len(Path(pidfile).read_text().split()) >= 3:
            break
        time.sleep(0.02)
    print("tree started", flush=True)


class Tree(BaseModel):
    pidfile: str
    seconds: float = 300.0


@job(timeout=60, kill_grace=1)
def tree_long(params: Tree, ctx: JobContext) -> None:
    """Like spawn_tree, with a long timeout: for cancel and restart tests."""
    start_tree(params.pidfile, params.seconds)
    time.sleep(params.seconds)


class Ledger(BaseModel):
    ledger: str
    n: int = 0
    seconds: float = 0.0
    pidfile: str | None = None
    release: str | None = None  # then wait until this file exists (at most 60 s) instead of `seconds`


def _pause(params: Ledger) -> None:
    """Sleep `seconds`, or until the test creates `release`: a test that must find the job still
    running does not depend on the machine being fast enough."""
    if params.release is None:
        time.sleep(params.seconds)
        return
    deadline = time.monotonic() + 60
    while not Path(params.release).exists() and time.monotonic() < deadline:
        time.sleep(0.05)


@job(timeout=60)
def ledger(params: Ledger, ctx: JobContext) -> dict:
    """Appends its job id to `ledger` when its code starts (proves run-once), sleeps, returns n squared."""
    with open(params.ledger, "a") as f:
        f.write(f"{ctx.job_id}\n")
    if params.pidfile:
        Path(params.pidfile).write_text(str(os.getpid()))
    _pause(params)
    return {"n": params.n, "square": params.n * params.n}


@job(timeout=60)
def ledger_fail(params: Ledger, ctx: JobContext) -> None:
    """Appends its id, sleeps, then raises: a failure that happens while nobody watches."""
    with open(params.ledger, "a") as f:
        f.write(f"{ctx.job_id}\n")
    if params.pidfile:
        Path(params.pidfile).write_text(str(os.getpid()))
    time.sleep(params.seconds)
    raise RuntimeError(f"failed on purpose ({params.n})")


class Mix(BaseModel):
    ledger: str
    n: int = 0
    seconds: float = Field(0.2, ge=0)


def _sign(params: Mix, ctx: JobContext) -> None:
    with open(params.ledger, "a") as f:
        f.write(f"{ctx.job_id}\n")


@job(timeout=30)
def mix_ok(params: Mix, ctx: JobContext) -> dict:
    """Stress mix: succeeds with {"n": n} after `seconds`."""
    _sign(params, ctx)
    time.sleep(params.seconds)
    return {"n": params.n}


@job(timeout=30)
def mix_fail(params: Mix, ctx: JobContext) -> None:
    """Stress mix: raises ValueError after `seconds`."""
    _sign(params, ctx)
    time.sleep(params.seconds)
    raise ValueError(f"mix {params.n} fails")


@job(timeout=1.5, kill_grace=0.3)
def mix_timeout(params: Mix, ctx: JobContext) -> None:
    """Stress mix: keeps printing (never idle) until the hard timeout ends it."""
    _sign(params, ctx)
    while True:
        print("still busy", flush=True)
        time.sleep(0.2)


@job(timeout=60, idle_timeout=1.0, kill_grace=0.3)
def mix_hang(params: Mix, ctx: JobContext) -> None:
    """Stress mix: prints once, then silence until the idle timeout calls it hung."""
    _sign(params, ctx)
    print("working...", flush=True)
    time.sleep(300)


@job(timeout=2, kill_grace=0.3)
def mix_tree(params: Mix, ctx: JobContext) -> None:
    """Stress mix: spawns a resistant tree, then keeps printing until the timeout."""
    _sign(params, ctx)
    start_tree(str(ctx.tmpdir / "pids"), 300)
    while True:
        print("still busy", flush=True)
        time.sleep(0.2)


class Stubborn(BaseModel):
    pidfile: str
    seconds: float = 120


@job(timeout=300)
def stubborn(params: Stubborn, ctx: JobContext) -> None:
    """Ignores SIGTERM, then writes its pid (so the test knows the handler is in place) and sleeps."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(params.pidfile).write_text(str(os.getpid()))
    time.sleep(params.seconds)


class Span(BaseModel):
    record: str
    seconds: float = 0.4


@job(concurrency=2)
def limited(params: Span, ctx: JobContext) -> dict:
    """At most two run at once (per-type concurrency); appends start/end times to `record`."""
    with open(params.record, "a") as f:
        f.write(f"{ctx.job_id} start {time.time()}\n")
    time.sleep(params.seconds)
    with open(params.record, "a") as f:
        f.write(f"{ctx.job_id} end {time.time()}\n")
    return {}


@job(timeout=60, retries=2, retry_backoff=0.2)
def retry_ledger(params: Ledger, ctx: JobContext) -> dict:
    """Declares retries. Attempt 1 writes its pid and sleeps `seconds`; later attempts return at once."""
    with open(params.ledger, "a") as f:
        f.write(f"{ctx.job_id}\n")
    if Path(params.ledger).read_text().count(ctx.job_id) == 1:
        if params.pidfile:
            Path(params.pidfile).write_text(str(os.getpid()))
        time.sleep(params.seconds)
    return {"n": params.n}
