"""The fork server process: imports job_main and every job module once, then forks jobs.

A forked job starts in a few milliseconds and shares the pre-imported pages copy-on-write,
instead of paying an interpreter start and all imports per job. The fork itself happens
ahead of time: a spare child waits for the next job (runner/spares.py). Started by the daemon
as `python -m supervisor.runner.forkserver_main FD CHANNEL_FD CGROUP_ROOT|- SHA256:MODULE...` (each
module imported only if its source still has the hash the trust check saw). CHANNEL_FD is
a datagram socket on which the fork server gives the daemon its spares (runner/spares.py). FD is
a stream socket: the fork server first says `{"ready": true, "environ": {…}, "not_preloaded":
{module: error}}`; then the daemon sends JSON lines, either `{"used": PID, "run_dir": …}`
(no answer) or `{"spare": "now"}` when it has none left, answered with `{"spare": PID}` once
that spare is on the channel, or `{"error": …}`. Only the daemon ever writes a job into a
spare.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import select
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from supervisor import job_main
from supervisor.registry import preload_job_types
from supervisor.runner.files import ENV_MARKER, MARKER_PLACEHOLDER, RunFiles, write_json_atomic
from supervisor.runner.reap import exited_children
from supervisor.runner.spares import Spare, Spares, read_job
from supervisor.runner.spec import JobSpec

_children: dict[int, Path] = {}  # pid → run dir, for every child that got a job
_early_exits: dict[int, int] = {}  # spares that ended before the daemon said which job they got
_spares: Spares | None = None
_QUIET = 0.002
_EARLY_EXITS_KEPT = 256
_LIBC = ctypes.CDLL(None)  # opened once here, not in every job


def _reap(*_: object) -> None:
    """Record each job's raw exit status next to its result, for jobs that die without one."""
    for pid, status in exited_children():
        run_dir = _children.pop(pid, None)
        if run_dir is not None:
            _record_exit(run_dir, pid, status)
        elif _spares is not None and _spares.ended(pid):
            _early_exits[pid] = status
            if len(_early_exits) > _EARLY_EXITS_KEPT:  # spares killed unused: no notice ever comes
                del _early_exits[next(iter(_early_exits))]


def _record_exit(run_dir: Path, pid: int, status: int) -> None:
    # Only a job that ended without a result needs its raw status (one file less per job).
    files = RunFiles(run_dir)
    if not files.result.exists():
        with contextlib.suppress(OSError):  # the daemon may have finished and removed the dir
            write_json_atomic(files.exit_status, {"pid": pid, "status": status})


def _used(pid: int, run_dir: Path) -> None:
    """The daemon handed spare `pid` the job of `run_dir` (it does not wait for this)."""
    _children[pid] = run_dir  # first: from here on, _reap records its exit itself
    if _spares is not None:
        _spares.used(pid)
    status = _early_exits.pop(pid, None)
    if status is not None and _children.pop(pid, None) is not None:
        _record_exit(run_dir, pid, status)


def _marker_address() -> int | None:
    """Where the marker's value lies in this process's original environment block.

    A forked process shows the environment it was exec'd with in /proc/PID/environ, and
    that is where the daemon looks for a job's marker. The fork server was started with a
    placeholder of the same length, so each job writes its id over it in place (like
    setproctitle rewrites argv); descendants that exec get it from os.environ as usual.
    Found once, here: walking the block with ctypes in every job took a quarter millisecond.
    """
    prefix = f"{ENV_MARKER}={MARKER_PLACEHOLDER}".encode()
    environ = ctypes.POINTER(ctypes.c_void_p).in_dll(_LIBC, "environ")
    index = 0
    while environ[index]:
        address = environ[index]
        if ctypes.string_at(address) == prefix:
            return address + len(ENV_MARKER) + 1
        index += 1
    return None


_MARKER_AT = _marker_address()


def _stamp_marker(job_id: str) -> None:
    value = job_id.encode()
    if _MARKER_AT is not None and len(value) == len(MARKER_PLACEHOLDER):
        ctypes.memmove(_MARKER_AT, value, len(value))


def _await_job(pipe: int, sockets: tuple[socket.socket, ...], join: Path | None, wanted_now: bool) -> None:
    """In a spare child, ahead of its job: the job-independent set-up, then wait for the job."""
    try:
        for sock in sockets:
            os.close(sock.detach())  # detach: the fork server's reader must not close a reused fd later
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        if join is not None:  # no clone3 here: migrate now, while no job is waiting
            try:
                Path(join, "cgroup.procs").write_text(str(os.getpid()))
            except OSError as exc:  # like a spawned job process: run the job anyway, found by session and marker
                print(f"runspace: could not join cgroup {join}: {exc}", file=sys.stderr)
        if not wanted_now:  # a job that waits for this spare already has no time for it
            _rehearse()
        request = read_job(pipe)
        os.close(pipe)  # the job must not inherit it
        if request is None:
            os._exit(0)  # the daemon closed without giving us a (whole) job
        _become_job(json.loads(request))
    finally:
        os._exit(70)  # job_main.main() exits itself; reaching here means set-up failed


class _Rehearsal(BaseModel):
    number: int = 0
    text: str | None = None


def _rehearse() -> None:
    """Run, on throwaway values, the steps every job takes first. A forked child copies each
    page it writes to, and merely using an object writes its reference count: done here, the
    copying happens while the spare waits, not between the hand-off and the job's code."""
    json.loads(json.dumps({"run_dir": "/", "env": {"A": "b"}, "spec": {"params": {"p": [1, 2.5, None, True]}}}))
    _Rehearsal.model_validate({"number": 1, "text": "x"})  # pydantic-core's first use in a process costs
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        stream = job_main.StampedStream(null, job_main.CappedOutput(None, null))
        stream.write("rehearsal\n")
        with os.fdopen(os.dup(null), "w") as f:
            f.write(json.dumps({"state": "succeeded", "result": None, "exit_code": 0}))
    finally:
        os.close(null)


def _become_job(request: dict[str, Any]) -> None:
    """Same set-up as a posix_spawned job process, then run job_main (which exits itself)."""
    _stamp_marker(request["spec"]["id"])
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    _set_environ(request["env"])
    sys.argv = ["supervisor.job_main", request["run_dir"]]
    job_main.main(spec=JobSpec.from_json(request["spec"]))


def _set_environ(changes: dict[str, Any]) -> None:
    """The job's environment, as changes to ours (runner/forkserver.py env_changes)."""
    for key in changes["unset"]:
        os.environ.pop(key, None)
    os.environ.update(changes["set"])


def serve(server: socket.socket, channel: socket.socket, cgroup_root: Path | None,
          not_preloaded: dict[str, str]) -> None:
    """`server`: JSON lines from the daemon (`used` notices, jobs to fork now); `channel`:
    datagrams to the daemon, each announcing a spare with its pipe's write end attached."""
    global _spares
    signal.signal(signal.SIGCHLD, _reap)
    _spares = spares = Spares(cgroup_root, lambda pipe, join, now: _await_job(pipe, (server, channel), join, now),
                              lambda spare: _announce(channel, spare))
    spares.remove_leftovers()
    # EOF, a reset or a broken pipe means the daemon is gone (maybe before we were ready);
    # our jobs live on in their own sessions.
    lines = Lines(server)
    with contextlib.suppress(ConnectionError), contextlib.closing(spares):
        while spares.short() and spares.add():
            pass
        ready = {"ready": True, "environ": dict(os.environ), "not_preloaded": not_preloaded}
        server.sendall(json.dumps(ready).encode() + b"\n")
        for line in lines:
            message = json.loads(line)
            if "used" in message:
                _used(message["used"], Path(message["run_dir"]))
            else:
                pid = spares.add(wanted_now=True)
                reply = {"spare": pid} if pid else {"error": "could not fork a spare"}
                server.sendall(json.dumps(reply).encode() + b"\n")
            _refill_when_quiet(spares, lines)


class Lines:
    """The daemon's JSON lines, split by hand: `waiting()` must see a line already read into
    our buffer, which select() cannot (a job waiting there must not wait for a spare's fork)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()

    def waiting(self) -> bool:
        return b"\n" in self._buffer or bool(select.select([self.sock], [], [], _QUIET)[0])

    def __iter__(self) -> Iterator[bytes]:
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                self._buffer += chunk
                continue
            line = bytes(self._buffer[:end])
            del self._buffer[:end + 1]
            yield line


def _announce(channel: socket.socket, spare: Spare) -> None:
    cgroup = str(spare.cgroup) if spare.cgroup else None
    socket.send_fds(channel, [json.dumps({"spare": spare.pid, "cgroup": cgroup}).encode()], [spare.pipe])


def _refill_when_quiet(spares: Spares, lines: Lines) -> None:
    """Fork replacement spares once the daemon has been quiet for a moment: a fork holds a
    core for ~1.5 ms, which the daemon (answering the submit) and the new job need first."""
    while spares.short():
        if lines.waiting() or not spares.add():
            return  # the next request first (from the other spare, or forked on the spot)


def main() -> None:
    server = socket.socket(fileno=int(sys.argv[1]))
    channel = socket.socket(fileno=int(sys.argv[2]))
    for sock in (server, channel):
        os.set_inheritable(sock.fileno(), False)
    cgroup_root = Path(sys.argv[3]) if sys.argv[3] != "-" else None
    not_preloaded = {}
    for arg in sys.argv[4:]:  # the modules the daemon loaded and trusted, imported once
        sha256, _, module = arg.partition(":")
        try:
            preload_job_types(Path(module), sha256)
        except (Exception, SystemExit) as exc:  # its jobs import it themselves (and report what fails)
            not_preloaded[module] = f"{type(exc).__name__}: {exc}"
    import supervisor.command  # noqa: F401  (used by every command job)

    # Everything imported so far lives for good: keep the collector from touching (and so
    # copying) those pages in every forked job.
    gc.freeze()
    serve(server, channel, cgroup_root, not_preloaded)


if __name__ == "__main__":
    main()
