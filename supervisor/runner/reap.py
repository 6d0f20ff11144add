"""Learn when job processes end: SIGCHLD for our children, pidfd for re-adopted ones."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Callable, Iterator

import anyio

ExitCallback = Callable[[int | None], None]  # raw wait status, or None when not our child

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Orphaned job descendants are re-parented to us instead of init, so we reap them."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def exited_children() -> Iterator[tuple[int, int]]:
    """Reap every child that has ended: (pid, raw wait status) each, without blocking."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status


class Reaper:
    def __init__(self) -> None:
        self._children: dict[int, ExitCallback] = {}

    def watch_child(self, pid: int, on_exit: ExitCallback) -> None:
        """Also for a fork-server child: it becomes ours (we are a subreaper) if the fork
        server exits first, after a reload; then only we learn how it ended."""
        self._children[pid] = on_exit

    def forget(self, pid: int, on_exit: ExitCallback) -> None:
        """Unless the pid has been reused by a newer child since (equal bound methods: same job)."""
        if self._children.get(pid) == on_exit:
            del self._children[pid]

    def reap(self) -> None:
        for pid, status in exited_children():
            callback = self._children.pop(pid, None)
            if callback is not None:  # else an orphan re-parented to us: reaping it is all
                callback(status)

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._on_signals)
            while True:  # signals coalesce and can race start-up; a slow sweep catches the rest
                self.reap()
                await anyio.sleep(1.0)

    async def _on_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGCHLD) as signals:
            async for _ in signals:
                self.reap()


async def wait_adopted(pidfd: int, on_exit: ExitCallback) -> None:
    """Wait for a process that is not our child (adopted after a daemon restart)."""
    try:
        await anyio.wait_readable(pidfd)
    finally:
        with contextlib.suppress(OSError):
            os.close(pidfd)
    on_exit(None)
