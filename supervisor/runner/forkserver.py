"""The daemon's handle on the fork server (runner/zygote.py): start it, ask it to fork a job."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import sys
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from supervisor.runner.files import ENV_MARKER, MARKER_PLACEHOLDER
from supervisor.runner.spares import Spare, fits_a_pipe

_REPLY_TIMEOUT = 10.0
_EXIT_WAIT = 2.0


class ForkServerError(OSError):
    pass


def env_changes(base: dict[str, str], env: dict[str, str]) -> dict[str, Any]:
    """What turns `base` into `env`: a job's environment is mostly the daemon's, so this is
    a few variables instead of all of them (less to send, parse and set per job)."""
    return {"set": {key: value for key, value in env.items() if base.get(key) != value},
            "unset": [key for key in base if key not in env]}


class ForkServer:
    """Until the zygote has imported everything and said `ready`, jobs start with posix_spawn."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._channel: socket.socket | None = None  # spares arrive here (runner/spares.py)
        self._reader = None
        self._ready = False
        self._spares: deque[Spare] = deque()
        self._env: dict[str, str] = {}  # the fork server's own environment, which jobs start from
        self.pid: int | None = None

    def start(self, modules: Iterable[Path], cgroup_root: Path | None) -> int:
        """`cgroup_root`: where the zygote creates a cgroup for each child (None: no cgroups)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        channel, their_channel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        argv = [sys.executable, "-m", "supervisor.runner.zygote", "3", "4", str(cgroup_root or "-"),
                *map(str, modules)]
        self._env = {**os.environ, ENV_MARKER: MARKER_PLACEHOLDER}
        try:
            self.pid = os.posix_spawn(
                sys.executable, argv, self._env,
                file_actions=[(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                              (os.POSIX_SPAWN_DUP2, theirs.fileno(), 3),
                              (os.POSIX_SPAWN_DUP2, their_channel.fileno(), 4)],
                setsid=True,  # a signal to the daemon's process group must not reach it
            )
        finally:
            theirs.close()
            their_channel.close()
        ours.settimeout(_REPLY_TIMEOUT)
        channel.setblocking(False)
        self._sock, self._reader, self._ready = ours, ours.makefile("rb"), False
        self._channel = channel
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

    def fork_job(self, run_dir: Path, log: Path, env: dict[str, str], spec: dict[str, Any]) -> tuple[int, Path | None]:
        """(pid, the cgroup the job runs in)."""
        if self._sock is None or self._reader is None:
            raise ForkServerError("the fork server is not running")
        request = {"run_dir": str(run_dir), "log": str(log), "env": env_changes(self._env, env), "spec": spec}
        data = json.dumps(request).encode()
        self._collect_spares()
        while self._spares and fits_a_pipe(data):
            spare = self._spares.popleft()
            if spare.hand(data):  # the job runs now; the notice is for exit statuses
                with contextlib.suppress(ForkServerError):
                    self._send({"used": spare.pid, "run_dir": str(run_dir)})
                return spare.pid, spare.cgroup
        self._send(request)  # no spare left: the fork server forks one for this job now
        try:
            reply = json.loads(self._reader.readline() or b"null")
        except (OSError, ValueError) as exc:
            self.close()
            raise ForkServerError(f"the fork server stopped answering: {exc}") from exc
        if not reply or "pid" not in reply:
            raise ForkServerError(f"the fork server could not start the job: {reply}")
        return int(reply["pid"]), Path(reply["cgroup"]) if reply.get("cgroup") else None

    def _send(self, message: dict[str, Any]) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError as exc:
            self.close()
            raise ForkServerError(f"the fork server stopped answering: {exc}") from exc

    def _collect_spares(self) -> None:
        """Take the spares the fork server has sent since we last looked (never blocks)."""
        while self._channel is not None:
            try:
                data, fds, _, _ = socket.recv_fds(self._channel, 4096, 1, socket.MSG_CMSG_CLOEXEC)
            except OSError:  # EAGAIN: no more
                return
            if not fds:
                continue
            info = json.loads(data)
            os.set_blocking(fds[0], False)  # the event loop must never wait on a spare
            self._spares.append(Spare(int(info["spare"]), Path(info["cgroup"]) if info["cgroup"] else None, fds[0]))

    def close(self) -> None:
        """Closing our ends makes the zygote and its spares exit; jobs it forked keep running."""
        self._collect_spares()
        while self._spares:
            with contextlib.suppress(OSError):
                self._spares.popleft().close_pipe()
        for thing in (self._reader, self._sock, self._channel):
            with contextlib.suppress(OSError):
                if thing is not None:
                    thing.close()
        self._sock = self._reader = self._channel = None
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
