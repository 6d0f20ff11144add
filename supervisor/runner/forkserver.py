"""The daemon's handle on the fork server (runner/forkserver_main.py): start it, ask it to fork a job."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from loguru import logger

from supervisor.runner.files import ENV_MARKER, MARKER_PLACEHOLDER
from supervisor.runner.spares import Spare, pipe_capacity
from supervisor.runner.spec import JobSpec

_REPLY_TIMEOUT = 10.0
_EXIT_WAIT = 2.0


class ForkServerError(OSError):
    pass


class TooBig(ForkServerError):
    """Not a failure: the job starts another way."""


# What a root daemon's fork server keeps of its environment: a forked job can read its
# parent's environment from its own memory, and a job that runs as another user must not
# find the daemon's secrets (a store URL, say) there. A non-root daemon runs no job as
# anyone else and its jobs get its environment anyway, so its fork server keeps all of it.
_INTERPRETER_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONHOME",
                    "PYTHONHASHSEED", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONIOENCODING",
                    "PYTHONUTF8", "PYTHONMALLOC", "PYTHONWARNINGS", "PYTHONSAFEPATH")


def forkserver_env(keep: Iterable[str]) -> dict[str, str]:
    """Root: the interpreter's variables, those every job may see (`keep`); else all of ours.
    Plus the marker's placeholder."""
    if os.geteuid() == 0:
        wanted = set(_INTERPRETER_ENV) | set(keep)
        env = {key: value for key, value in os.environ.items() if key in wanted or key.startswith("LC_")}
    else:
        env = dict(os.environ)
    env[ENV_MARKER] = MARKER_PLACEHOLDER
    return env


def env_changes(base: dict[str, str], env: dict[str, str]) -> dict[str, Any]:
    """What turns `base` (the fork server's environment) into `env` (the job's)."""
    return {"set": {key: value for key, value in env.items() if base.get(key) != value},
            "unset": [key for key in base if key not in env]}


def _warn_not_preloaded(failures: dict[str, str]) -> None:
    for module, error in failures.items():
        logger.warning("the fork server could not import {} ({}), so each of its jobs imports it again; a "
                       "module that reads the environment at import time needs those names in "
                       "RUNSPACE_JOB_ENV_PASSTHROUGH", module, error)


class ForkServer:
    """Until the fork server has imported everything and said `ready`, jobs start with posix_spawn."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._channel: socket.socket | None = None  # spares arrive here (runner/spares.py)
        self._reader = None
        self._ready = False
        self._spares: deque[Spare] = deque()
        self._env: dict[str, str] = {}  # the fork server's environment, as it reported it: jobs start from it
        self.pid: int | None = None

    def start(self, modules: dict[Path, str], cgroup_root: Path | None, keep_env: Iterable[str] = ()) -> int:
        """`modules`: path → sha256 of the source that passed the trust check; `cgroup_root`:
        where the fork server creates a cgroup for each child (None: no cgroups); `keep_env`:
        variables of ours that every job may see."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        channel, their_channel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        argv = [sys.executable, "-m", "supervisor.runner.forkserver_main", "3", "4", str(cgroup_root or "-"),
                *(f"{sha256}:{path}" for path, sha256 in modules.items())]
        try:
            self.pid = os.posix_spawn(
                sys.executable, argv, forkserver_env(keep_env),
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
        """Non-blocking: has the fork server announced it is warm (with its environment)?"""
        if self._ready or self._sock is None:
            return self._ready
        readable, _, _ = select.select([self._sock], [], [], 0)
        if readable:
            try:
                message = self._reply()
                self._ready, self._env = message.get("ready") is True, message.get("environ") or {}
                _warn_not_preloaded(message.get("not_preloaded") or {})
            except ForkServerError as exc:
                logger.warning("the fork server ended before it was ready ({}); jobs start with posix_spawn", exc)
                self._ready = False
            if not self._ready:
                self.close()
        return self._ready

    def fork_job(self, run_dir: Path, log: Path, env: dict[str, str], spec: JobSpec) -> tuple[int, Path | None]:
        """(pid, the cgroup the job runs in). We always hand the job to a spare ourselves, so
        a ForkServerError means it was handed to none: starting it another way is safe."""
        if self._sock is None:
            raise ForkServerError("the fork server is not running")
        request = {"run_dir": str(run_dir), "log": str(log), "env": env_changes(self._env, env), "spec": spec.to_json()}
        data = json.dumps(request).encode()
        asked = 0
        while True:
            self._collect_spares()
            if not self._spares:
                if asked == 2:
                    raise ForkServerError("the fork server's spares die before they get a job")
                self._ask_for_spare()  # none left (a burst): the fork server forks one now
                asked += 1
                continue
            spare = self._spares[0]
            if not spare.fits(data):  # stays for the next job
                raise TooBig(f"the job ({len(data)} bytes) is larger than a spare's pipe")
            self._spares.popleft()
            if spare.hand(data):  # the job runs now; the notice is for exit statuses
                with contextlib.suppress(ForkServerError):
                    self._send({"used": spare.pid, "run_dir": str(run_dir)})
                return spare.pid, spare.cgroup

    def _ask_for_spare(self) -> None:
        """The spare comes on the channel, sent before the reply."""
        self._send({"spare": "now"})
        reply = self._reply()
        if "spare" not in reply:
            raise ForkServerError(f"the fork server could not fork: {reply.get('error', reply)}")

    def _reply(self) -> dict[str, Any]:
        assert self._reader is not None
        try:
            reply = json.loads(self._reader.readline() or b"null")
        except (OSError, ValueError) as exc:
            self.close()
            raise ForkServerError(f"the fork server stopped answering: {exc}") from exc
        if not isinstance(reply, dict):
            self.close()
            raise ForkServerError("the fork server has exited")
        return reply

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
            try:
                info = json.loads(data)
                spare = Spare(int(info["spare"]), Path(info["cgroup"]) if info["cgroup"] else None, fds[0],
                              pipe_capacity(fds[0]))
            except (ValueError, KeyError, TypeError, IndexError):
                for fd in fds:
                    os.close(fd)
                continue
            os.set_blocking(spare.pipe, False)  # the event loop must never wait on a spare
            self._spares.append(spare)

    def close(self) -> None:
        """Closing our ends makes the fork server and its spares exit; jobs it forked keep running."""
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
        """Reap the fork server (it exits on EOF within milliseconds), so it never outlives us.
        One still stuck importing a job module never reads that EOF: it is killed."""
        deadline = time.monotonic() + _EXIT_WAIT
        while self.pid is not None:
            try:
                if os.waitpid(self.pid, os.WNOHANG)[0] != 0:
                    break
            except ChildProcessError:  # already reaped by the daemon's reaper
                break
            if time.monotonic() >= deadline:  # unreaped, so the pid is still our child's
                logger.warning("the fork server (pid {}) did not exit; killed", self.pid)
                os.kill(self.pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(self.pid, 0)
                break
            time.sleep(0.005)
        self.pid = None
