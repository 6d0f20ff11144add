"""CPU time per job, by process: where each job's cost goes.

On a machine with N cores no design can finish more than N / (CPU seconds per job) jobs a
second, so this says how far a throughput target is from the hardware. Jobs are counted
through their parent's `children_*` times, which include only children it has reaped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from bench.harness import ROOT, marked_env


def _own(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def _reaped_children(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.children_user + times.children_system


def _client() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class CpuMeter:
    """Each part is a function returning CPU seconds so far; `per_job` turns two readings
    into milliseconds per job."""

    parts: dict[str, Callable[[], float]]

    def read(self) -> dict[str, float]:
        return {name: read() for name, read in self.parts.items()}

    @staticmethod
    def per_job(before: dict[str, float], after: dict[str, float], jobs: int) -> dict[str, float]:
        return {name: (after[name] - before[name]) * 1000 / jobs for name in before}


def runspace_meter(daemon_pid: int) -> CpuMeter:
    daemon = psutil.Process(daemon_pid)
    forkserver = next(p for p in daemon.children() if "supervisor.runner.forkserver_main" in p.cmdline())
    return CpuMeter({"daemon": lambda: _own(daemon), "fork server": lambda: _own(forkserver),
                     "jobs": lambda: _reaped_children(forkserver), "client": _client})


def rq_meter(worker_pids: list[int], redis_pid: int) -> CpuMeter:
    workers = [psutil.Process(pid) for pid in worker_pids]
    redis = psutil.Process(redis_pid)
    return CpuMeter({"workers": lambda: sum(_own(w) for w in workers),
                     "jobs": lambda: sum(_reaped_children(w) for w in workers),
                     "redis": lambda: _own(redis), "client": _client})


def breakdown(per_job: dict[str, float]) -> str:
    return " + ".join(f"{name} {ms:.2f}" for name, ms in per_job.items())


_FORK_FLOOR = """
import gc, os, resource, sys
from pathlib import Path
from supervisor import job_main
import supervisor.command
from supervisor.registry import preload_job_types
preload_job_types(Path(sys.argv[1]), None)  # no trust check to match here
gc.freeze()
n = int(sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, before)) * 1000 / n)
"""


def fork_floor_ms(job_module: str, forks: int) -> float:
    """CPU (parent + child) of one fork + _exit of a process holding what a job process
    holds (job_main, pydantic, the job module): the kernel's share of every job, before
    the job does anything."""
    out = subprocess.run([sys.executable, "-c", _FORK_FLOOR, job_module, str(forks)], env=marked_env(),
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return float(out.stdout)
