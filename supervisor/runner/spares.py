"""Spare children of the fork server: each forked ahead of its job, in a cgroup of its own.

Forking the fork server takes ~1.5 ms here and the child's first page faults as long
again. A spare pays both while nothing waits. The fork server passes the write end of each
spare's pipe to the daemon (SCM_RIGHTS), so starting a job is a pipe write by the daemon
itself, with no round trip to the fork server; it then tells the fork server, without
waiting, which job the spare got (for the exit status of jobs that die without one). When
none is left, the daemon asks for one and still writes the job itself. Each spare runs
exactly one job (or none, when the daemon closes its end), so every job still is a process
of its own. Its cgroup is named after the fork server (`z<pid>-<n>`), not the job, because
the job is not known when the cgroup must exist (cgroup v2 cannot rename); the fork server
reports the path with the pid, and the daemon records it with the job.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from supervisor.runner.clone import CgroupFork

_POOL = 2
# A spare's pipe holds a whole job, so the daemon's write never waits for the spare to read;
# a job larger than the pipe starts another way. Asked for when the pipe is made; the daemon
# checks what it got (a user over pipe-user-pages-soft gets one page).
_PIPE_SIZE = 1 << 20
_LENGTH = 4  # bytes of the big-endian length before each job: the spare needs no EOF to start
_CGROUP_NAME = re.compile(r"z(\d+)-\d+")  # z<fork server pid>-<n>
# In the child: (read end of the job pipe, cgroup to join when clone3 could not place it,
# whether a job is waiting for this spare already).
AwaitJob = Callable[[int, Path | None, bool], None]


def pipe_capacity(fd: int) -> int:
    try:
        return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
    except OSError:
        return 0


def read_job(fd: int) -> bytes | None:
    """In a spare: its job, or None when the pipe closed before a whole job came."""
    head = _read_exactly(fd, _LENGTH)
    return _read_exactly(fd, int.from_bytes(head, "big")) if head is not None else None


def _read_exactly(fd: int, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def spare_cgroup_name(forkserver_pid: int, n: int) -> str:
    return f"z{forkserver_pid}-{n}"


def spare_cgroup_owner(name: str) -> int | None:
    """The pid of the fork server that made a cgroup of this name; None if not a spare's."""
    match = _CGROUP_NAME.fullmatch(name)
    return int(match.group(1)) if match else None


@dataclass
class Spare:
    pid: int
    cgroup: Path | None
    pipe: int  # write end; the child reads its job from the other end
    capacity: int = 0  # bytes the pipe holds: read once by the daemon (pipe_capacity)

    def fits(self, job: bytes) -> bool:
        return len(job) + _LENGTH <= self.capacity

    def hand(self, job: bytes) -> bool:
        """Give the spare its job (JSON); False when it is gone. The daemon's pipe ends are
        non-blocking: a write cut short leaves the spare a cut-off job, which it never runs."""
        data = len(job).to_bytes(_LENGTH, "big") + job
        try:
            while data:
                data = data[os.write(self.pipe, data):]
            return True
        except OSError:  # EPIPE: the spare has died (EAGAIN, a full pipe: only for a job too big)
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
        for path in self._root.iterdir() if self._root else []:
            if spare_cgroup_owner(path.name) is not None:
                with contextlib.suppress(OSError):
                    path.rmdir()

    def short(self) -> bool:
        """Fewer than `_POOL` spares wait: the daemon starts jobs in bursts (a dispatch round)."""
        return len(self._held) < _POOL

    def add(self, wanted_now: bool = False) -> int | None:
        """Fork one spare and give it to the daemon: its pid, or None when either fails.
        `wanted_now`: the daemon asked for it, with a job to give it at once."""
        # SIGCHLD waits until the spare is in _held: one that died at once must be known as ended.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            spare = self._fork(wanted_now)
            self._held[spare.pid] = spare.cgroup
        except OSError:
            return None
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        try:
            self._announce(spare)
            return spare.pid
        except OSError:
            self._held.pop(spare.pid, None)  # the SIGCHLD handler may have been first
            spare.discard()
            return None
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

    def close(self, wait: float = 2.0) -> None:
        """The daemon closed its ends of the spares' pipes: they exit; remove their cgroups."""
        deadline = time.monotonic() + wait
        while self._held and time.monotonic() < deadline:
            time.sleep(0.01)  # the SIGCHLD handler reaps them and calls ended()
        for cgroup in self._dead.values():
            if cgroup is not None:
                with contextlib.suppress(OSError):  # one that ran a job may still hold strays
                    cgroup.rmdir()

    def _fork(self, wanted_now: bool) -> Spare:
        cgroup = self._new_cgroup()
        read_end, write_end = os.pipe()
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        try:
            pid, placed = self._clone.fork(cgroup)
        except OSError:
            os.close(read_end)
            os.close(write_end)
            if cgroup is not None:
                cgroup.rmdir()
            raise
        if pid == 0:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})  # blocked by add(); jobs inherit masks
            os.close(write_end)  # a spare with no job exits at EOF: only the daemon may hold this
            self._await_job(read_end, None if placed else cgroup, wanted_now)
        os.close(read_end)
        return Spare(pid, cgroup, write_end)

    def _new_cgroup(self) -> Path | None:
        """None when it cannot be made: the job runs without one, found by session and marker."""
        while self._root is not None:
            self._count += 1
            path = self._root / spare_cgroup_name(os.getpid(), self._count)
            try:
                path.mkdir()
                return path
            except FileExistsError:  # an earlier fork server with our pid left it, in use
                continue
            except OSError:
                return None
        return None
