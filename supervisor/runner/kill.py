"""Kill a job's whole tree: SIGTERM, then SIGKILL after the grace period."""

from __future__ import annotations

import contextlib
import signal
import time

import anyio
import psutil

from supervisor.runner.cgroups import cgroup_kill
from supervisor.runner.tree import JobTree

_POLL = 0.02
_KILL_ROUNDS = 100


def _send(procs: list[psutil.Process], sig: int, seen: set[int] | None = None) -> None:
    for proc in procs:
        if seen is not None:
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)
            if sig == signal.SIGTERM:
                proc.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM


async def kill_tree(tree: JobTree, grace: float) -> int | None:
    """Returns the last signal sent, or None when nothing of the job was alive."""
    procs = tree.members()
    if not procs:
        return None
    termed: set[int] = set()
    _send(procs, signal.SIGTERM, termed)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        await anyio.sleep(min(_POLL * 2, max(deadline - time.monotonic(), 0)))
        procs = tree.members()
        if not procs:
            return signal.SIGTERM
        _send(procs, signal.SIGTERM, termed)  # children forked during the grace period
    return await kill_now(tree)


async def kill_now(tree: JobTree) -> int | None:
    """SIGKILL until nothing is left; repeats because a process may fork while we sweep."""
    for _ in range(_KILL_ROUNDS):
        procs = tree.members()
        if not procs:
            return signal.SIGKILL
        if tree.cgroup is not None:
            cgroup_kill(tree.cgroup)
        _send(procs, signal.SIGKILL)
        await anyio.sleep(_POLL)
    return signal.SIGKILL
