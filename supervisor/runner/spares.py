"""Spare children of the fork server: each forked ahead of its job, in a cgroup of its own.

Forking the fork server takes ~1.5 ms here and the child's first page faults as long
again. A spare pays both while nothing waits. The fork server passes the write end of each
spare's pipe to the daemon (SCM_RIGHTS), so starting a job is a pipe write by the daemon
itself, with no round trip to the fork server; it then tells the fork server, without
waiting, which job the spare got (for the exit status of jobs that die without one). Each
spare runs exactly one job (or none, when the daemon closes its end), so every job still
is a process of its own. Its cgroup is named after the fork server (`z<pid>-<n>`), not
the job, because the job is not known when the cgroup must exist (cgroup v2 cannot
rename); the fork server reports the path with the pid, and a restarted daemon reads it
from /proc/PID/cgroup of the job's leader.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
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
            self.close_pipe()

    def close_pipe(self) -> None:
        """Once only: a second close could hit an fd number reused since."""
        pipe, self.pipe = self.pipe, -1
        if pipe >= 0:
            os.close(pipe)

    def discard(self) -> None:
        """In the fork server: end an unused spare (it reads EOF and exits) and its cgroup."""
        with contextlib.suppress(OSError):
            self.close_pipe()
        with contextlib.suppress(OSError):
            os.waitpid(self.pid, 0)
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                self.cgroup.rmdir()


class Spares:
    """The fork server's side: fork spares, give each to the daemon (`announce`), which hands
    it a job itself; track them until the daemon says which job each one got."""

    def __init__(self, cgroup_root: Path | None, await_job: AwaitJob, announce: Callable[[Spare], None]) -> None:
        self._root = cgroup_root
        self._await_job = await_job
        self._announce = announce
        self._clone = CgroupFork()
        self._count = 0
        self._held: dict[int, Path | None] = {}  # announced, not yet used: pid → cgroup
        self._dead: dict[int, Path | None] = {}  # ended before any `used` notice came

    def remove_leftovers(self) -> None:
        """Empty cgroups of earlier fork servers' spares (rmdir refuses a cgroup in use)."""
        for path in self._root.glob("z*-*") if self._root else []:
            with contextlib.suppress(OSError):
                path.rmdir()

    def short(self) -> bool:
        """Fewer than `_POOL` spares wait: the daemon starts jobs in bursts (a dispatch round)."""
        return len(self._held) < _POOL

    def add(self) -> bool:
        """Fork one spare and give it to the daemon; False when either fails (then the daemon
        asks for a job to be forked on the spot, or is gone)."""
        try:
            spare = self._fork()
        except OSError:
            return False
        self._held[spare.pid] = spare.cgroup
        try:
            self._announce(spare)
            return True
        except OSError:
            self._held.pop(spare.pid, None)  # the SIGCHLD handler may have been first
            spare.discard()
            return False
        finally:
            with contextlib.suppress(OSError):
                spare.close_pipe()  # the daemon holds the only copy now: EOF is its to give

    def used(self, pid: int) -> None:
        self._held.pop(pid, None)
        self._dead.pop(pid, None)  # its cgroup is the job's: the daemon removes it

    def ended(self, pid: int) -> bool:
        """A child ended: True if it was a spare not (yet) reported used. Its cgroup stays
        until close(): the daemon may have given it a job and be reading that cgroup now."""
        if pid not in self._held:
            return False
        self._dead[pid] = self._held.pop(pid)
        return True

    def start(self, request: dict[str, Any], children: dict[int, Path]) -> Spare:
        """Fork a child for this job now (the daemon had no spare left) and hand it the job.

        `children` (pid → run dir) learns the pid before the hand-off: a job that ends at
        once is already known to the SIGCHLD handler that records exit statuses."""
        run_dir = Path(request["run_dir"])
        for _ in range(2):  # a child that died before its hand-off is replaced once
            spare = self._fork()
            children[spare.pid] = run_dir
            if spare.hand(request):
                return spare
            children.pop(spare.pid, None)  # the SIGCHLD handler may have been first
            spare.discard()
        raise OSError("job processes forked by the fork server die before they start")

    def close(self, wait: float = 2.0) -> None:
        """The daemon closed its ends of the spares' pipes: they exit; remove their cgroups."""
        deadline = time.monotonic() + wait
        while self._held and time.monotonic() < deadline:
            time.sleep(0.01)  # the SIGCHLD handler reaps them and calls ended()
        for cgroup in self._dead.values():
            if cgroup is not None:
                with contextlib.suppress(OSError):  # one that ran a job may still hold strays
                    cgroup.rmdir()

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
            os.close(write_end)  # a spare reads its job until EOF: only the daemon may hold this
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
