"""Job types the benchmarks submit (loaded through RUNSPACE_JOBS_PATH=bench/jobs)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel

from supervisor import JobContext, command_job, job

TREE_SCRIPT = str(Path(__file__).resolve().parent.parent / "tree.py")


class Nothing(BaseModel):
    pass


@job()
def noop(params: Nothing, ctx: JobContext) -> None:
    """Does nothing: the cost of a Python job is all overhead."""


@command_job()
def true_cmd(params: Nothing, ctx: JobContext) -> list[str]:
    """Runs /bin/true."""
    return ["/bin/true"]


@command_job(concurrency=1)
def true_serial(params: Nothing, ctx: JobContext) -> list[str]:
    """Runs /bin/true, one at a time (per-type concurrency 1)."""
    return ["/bin/true"]


class Stamp(BaseModel):
    path: str


@job()
def stamp_py(params: Stamp, ctx: JobContext) -> None:
    """Writes the time the job function started (epoch seconds) to `path`."""
    now = time.time()
    Path(params.path).write_text(repr(now))


@command_job()
def stamp_cmd(params: Stamp, ctx: JobContext) -> list[str]:
    """A command that writes the time it started to `path` (same command as the tsp/nq runs)."""
    return ["/bin/sh", "-c", 'date +%s.%N > "$0"', params.path]


class Sleep(BaseModel):
    seconds: float = 60


@command_job()
def sleep_cmd(params: Sleep, ctx: JobContext) -> list[str]:
    """Runs /bin/sleep."""
    return ["/bin/sleep", str(params.seconds)]


@job()
def sleep_py(params: Sleep, ctx: JobContext) -> None:
    """Sleeps inside the job process."""
    time.sleep(params.seconds)


class Tree(BaseModel):
    pidfile: str
    size: int = 20


@job(kill_grace=0.5)
def tree_py(params: Tree, ctx: JobContext) -> None:
    """Starts a 20-process tree (setsid, double-forked and SIGTERM-ignoring members) and waits."""
    subprocess.run([sys.executable, TREE_SCRIPT, params.pidfile, str(params.size)], check=False)


@job(timeout=1, kill_grace=0.5)
def tree_py_timeout(params: Tree, ctx: JobContext) -> None:
    """As tree_py, with a 1 s timeout."""
    subprocess.run([sys.executable, TREE_SCRIPT, params.pidfile, str(params.size)], check=False)
