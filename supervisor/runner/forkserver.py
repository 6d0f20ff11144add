"""The daemon's handle on the fork server (runner/zygote.py): start it, ask it to fork a job."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from supervisor.runner.files import ENV_MARKER, MARKER_PLACEHOLDER

_REPLY_TIMEOUT = 10.0
_EXIT_WAIT = 2.0


class ForkServerError(OSError):
    pass


class ForkServer:
    """Until the zygote has imported everything and said `ready`, jobs start with posix_spawn."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._reader = None
        self._ready = False
        self.pid: int | None = None

    def start(self, modules: Iterable[Path], cgroup_root: Path | None) -> int:
        """`cgroup_root`: where the zygote creates a cgroup for each child (None: no cgroups)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [sys.executable, "-m", "supervisor.runner.zygote", "3", str(cgroup_root or "-"), *map(str, modules)]
        try:
            self.pid = os.posix_spawn(
                sys.executable, argv, {**os.environ, ENV_MARKER: MARKER_PLACEHOLDER},
                file_actions=[(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                              (os.POSIX_SPAWN_DUP2, theirs.fileno(), 3)],
                setsid=True,  # a signal to the daemon's process group must not reach it
            )
        finally:
            theirs.close()
        ours.settimeout(_REPLY_TIMEOUT)
        self._sock, self._reader, self._ready = ours, ours.makefile("rb"), False
        return self.pid

    @property
    def running(self) -> bool:
        return self._sock is not None

    def ready(self) -> bool:
        """Non-blocking: has the zygote announced it is warm?"""
        if self._ready or self._sock is None:
            return self._ready
        readable, _, _ = select.select([self._sock], [], [], 0)
        if readable:
            try:
                self._ready = json.loads(self._reader.readline() or b"null") == {"ready": True}
            except (OSError, ValueError):
                self._ready = False
            if not self._ready:
                self.close()
        return self._ready

    def fork_job(self, run_dir: Path, log: Path, env: dict[str, str]) -> tuple[int, Path | None]:
        """(pid, the cgroup the job runs in)."""
        if self._sock is None or self._reader is None:
            raise ForkServerError("the fork server is not running")
        request = {"run_dir": str(run_dir), "log": str(log), "env": env}
        try:
            self._sock.sendall(json.dumps(request).encode() + b"\n")
            reply = json.loads(self._reader.readline() or b"null")
        except (OSError, ValueError) as exc:
            self.close()
            raise ForkServerError(f"the fork server stopped answering: {exc}") from exc
        if not reply or "pid" not in reply:
            raise ForkServerError(f"the fork server could not start the job: {reply}")
        return int(reply["pid"]), Path(reply["cgroup"]) if reply.get("cgroup") else None

    def close(self) -> None:
        """Closing our end makes the zygote exit; jobs it forked keep running."""
        for thing in (self._reader, self._sock):
            with contextlib.suppress(OSError):
                if thing is not None:
                    thing.close()
        self._sock = self._reader = None
        self._ready = False
        self._await_exit()

    def _await_exit(self) -> None:
        """Reap the zygote (it exits on EOF within milliseconds), so it never outlives us."""
        deadline = time.monotonic() + _EXIT_WAIT
        while self.pid is not None and time.monotonic() < deadline:
            try:
                if os.waitpid(self.pid, os.WNOHANG)[0] != 0:
                    break
            except ChildProcessError:  # already reaped by the daemon's reaper
                break
            time.sleep(0.005)
        self.pid = None
