"""Spare children of the fork server: each forked ahead of its job, in a cgroup of its own.

Forking the fork server takes ~1.5 ms here and the child's first page faults as long
again. A spare pays both while nothing waits; starting a job is then a pipe write. Each
spare runs exactly one job (or none, when the fork server closes), so every job still
is a process of its own. Its cgroup is named after the fork server (`z<pid>-<n>`), not
the job, because the job is not known when the cgroup must exist (cgroup v2 cannot
rename); the fork server reports the path with the pid, and a restarted daemon reads it
from /proc/PID/cgroup of the job's leader.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.runner.clone import CgroupFork

_POOL = 2
# In the child: (read end of the job pipe, cgroup to join when clone3 could not place it).
AwaitJob = Callable[[int, Path | None], None]


def spare_prefix(forkserver_pid: int) -> str:
    return f"z{forkserver_pid}-"


@dataclass
class Spare:
    pid: int
    cgroup: Path | None
    pipe: int  # write end; the child reads its job from the other end

    def hand(self, request: dict[str, Any]) -> bool:
        """Give the spare its job; False when it is gone (then it never runs the job)."""
        data = json.dumps(request).encode()
        try:
            while data:
                data = data[os.write(self.pipe, data):]
            return True
        except OSError:  # EPIPE: the spare has died
            return False
        finally:
            os.close(self.pipe)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.pipe)  # the spare reads EOF and exits
        with contextlib.suppress(OSError):
            os.waitpid(self.pid, 0)
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                self.cgroup.rmdir()


class Spares:
    def __init__(self, cgroup_root: Path | None, await_job: AwaitJob) -> None:
        self._root = cgroup_root
        self._await_job = await_job
        self._clone = CgroupFork()
        self._count = 0
        self._ready: list[Spare] = []

    def remove_leftovers(self) -> None:
        """Empty cgroups of earlier fork servers' spares (rmdir refuses a cgroup in use)."""
        for path in self._root.glob("z*-*") if self._root else []:
            with contextlib.suppress(OSError):
                path.rmdir()

    def short(self) -> bool:
        """Fewer than `_POOL` spares wait: the daemon starts jobs in bursts (a dispatch round)."""
        return len(self._ready) < _POOL

    def add(self) -> None:
        with contextlib.suppress(OSError):  # too few spares: a start forks on the spot
            self._ready.append(self._fork())

    def start(self, request: dict[str, Any], children: dict[int, Path]) -> Spare:
        """Hand the job to the waiting spare (or a fresh one).

        `children` (pid → run dir) learns the pid before the hand-off: a job that ends at
        once is already known to the SIGCHLD handler that records exit statuses."""
        run_dir = Path(request["run_dir"])
        for _ in range(2):  # a spare that died while waiting is replaced once
            spare = self._ready.pop(0) if self._ready else self._fork()
            children[spare.pid] = run_dir
            if spare.hand(request):
                return spare
            del children[spare.pid]
            spare.discard()
        raise OSError("job processes forked by the fork server die before they start")

    def close(self) -> None:
        while self._ready:
            self._ready.pop().discard()

    def _fork(self) -> Spare:
        cgroup = self._new_cgroup()
        read_end, write_end = os.pipe()
        try:
            pid, placed = self._clone.fork(cgroup)
        except OSError:
            os.close(read_end)
            os.close(write_end)
            if cgroup is not None:
                cgroup.rmdir()
            raise
        if pid == 0:
            for pipe in [write_end, *(spare.pipe for spare in self._ready)]:
                os.close(pipe)  # a spare reads its job until EOF: no one else may hold its pipe
            self._await_job(read_end, None if placed else cgroup)
        os.close(read_end)
        return Spare(pid, cgroup, write_end)

    def _new_cgroup(self) -> Path | None:
        if self._root is None:
            return None
        self._count += 1
        path = self._root / f"{spare_prefix(os.getpid())}{self._count}"
        try:
            path.mkdir()
        except OSError:
            return None  # the job runs without a cgroup: its tree is found by session and marker
        return path
