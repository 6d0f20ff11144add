"""Which processes belong to a job: its cgroup, or its session/process group and env marker."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil

from supervisor.runner.cgroups import cgroup_pids
from supervisor.runner.files import ENV_MARKER

_CLOCK_SLACK = 1.0  # create_time has ~10 ms resolution; allow clock-tick rounding


@dataclass(frozen=True)
class JobTree:
    job_id: str
    leader_pid: int | None
    leader_started: float | None  # the leader's create_time, or the launch time
    cgroup: Path | None = None

    def members(self) -> list[psutil.Process]:
        """Live (non-zombie) processes of this job. Never includes unrelated processes."""
        procs = self._from_cgroup() if self.cgroup is not None else self._from_scan()
        return [p for p in procs if _alive(p)]

    def leader_ended(self) -> bool:
        """The leader has exited, whether or not anyone has reaped it or heard of it yet."""
        if self.leader_pid is None:
            return True
        try:
            proc = psutil.Process(self.leader_pid)
            reused = self.leader_started is not None and abs(proc.create_time() - self.leader_started) > _CLOCK_SLACK
            return reused or proc.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
        except psutil.Error:
            return False

    def _from_cgroup(self) -> list[psutil.Process]:
        assert self.cgroup is not None
        procs = []
        for pid in cgroup_pids(self.cgroup):
            try:
                procs.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                continue
        # The job process joins its cgroup before it runs job code, so nothing escapes it. Only if
        # that join failed (the live leader is not inside) do we fall back to the sweep; not
        # scanning after a normal exit keeps the common path cheap.
        if self.leader_pid is not None and self.leader_pid not in {p.pid for p in procs} and _alive_pid(self.leader_pid):
            return self._from_scan()
        return procs

    def _from_scan(self) -> list[psutil.Process]:
        me = os.getpid()
        since = (self.leader_started or 0) - _CLOCK_SLACK
        found = []
        for proc in psutil.process_iter(["pid", "create_time"]):
            if proc.pid == me or (proc.info["create_time"] or 0) < since:
                continue
            if self._owns(proc):
                found.append(proc)
        return found

    def _owns(self, proc: psutil.Process) -> bool:
        leader = self.leader_pid
        try:
            if leader is not None and leader in (os.getsid(proc.pid), os.getpgid(proc.pid)):
                return True
            return proc.environ().get(ENV_MARKER) == self.job_id
        except (OSError, psutil.Error):
            return False


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _alive_pid(pid: int) -> bool:
    try:
        return _alive(psutil.Process(pid))
    except psutil.Error:
        return False


def tree_rss(tree: JobTree) -> int:
    total = 0
    for proc in tree.members():
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total
