"""Starts a process tree that is hard to kill, records every pid, then waits.

`python bench/tree.py PIDFILE SIZE [SECONDS]`: this process plus SIZE-1 descendants, among
them SIGTERM-ignoring ones, setsid ones (own session, out of the job's process group) and
double-forked ones (orphaned grandchildren in their own session). Each appends its pid to
PIDFILE; the tree is complete when PIDFILE has SIZE lines.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

_SLEEPER = 'echo $$ >> "$PIDFILE"; exec sleep {seconds}'
_IGNORE = 'trap "" TERM; '


def members(size: int, seconds: float) -> list[tuple[list[str], bool]]:
    """(argv, new session) for each descendant, cycling through the hard cases."""
    sleeper = _SLEEPER.format(seconds=seconds)
    kinds = [
        (["sh", "-c", sleeper], False),                               # plain child
        (["sh", "-c", _IGNORE + sleeper], False),                     # ignores SIGTERM
        (["sh", "-c", sleeper], True),                                # setsid
        (["sh", "-c", _IGNORE + sleeper], True),                      # setsid + ignores SIGTERM
        (["sh", "-c", f"sh -c '{_IGNORE}{sleeper}' &"], True),        # double fork, ignores SIGTERM
    ]
    return [kinds[i % len(kinds)] for i in range(size - 1)]


def main() -> None:
    pidfile, size = sys.argv[1], int(sys.argv[2])
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 300.0
    env = {**os.environ, "PIDFILE": pidfile}
    with open(pidfile, "a") as f:
        f.write(f"{os.getpid()}\n")
    for argv, new_session in members(size, seconds):
        subprocess.Popen(argv, env=env, start_new_session=new_session, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(open(pidfile).read().split()) < size:
        time.sleep(0.005)
    print("tree ready", flush=True)
    time.sleep(seconds)


if __name__ == "__main__":
    main()
