"""The per-job run directory shared by the daemon and the job process."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.runner.spec import JobSpec

ENV_MARKER = "RUNSPACE_JOB_ID"
MARKER_PLACEHOLDER = "0" * 20  # the fork server's marker, overwritten with each job id (forkserver_main.py)


def write_json_atomic(path: Path, data: Any) -> None:
    # The run dir belongs to the job's user once it runs (runner/identity.py): a planted
    # symlink or hard link at the temp name must never redirect a root write.
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data))
    os.replace(tmp, path)


def read_json(path: Path, max_bytes: int | None = None) -> Any:
    """None unless `path` is a regular file holding JSON (of at most `max_bytes`): a job
    user's symlink (to a secret), FIFO (to hang the daemon) or huge file in its run dir is ignored."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or (max_bytes is not None and info.st_size > max_bytes):
            return None
        data = f.read() if max_bytes is None else f.read(max_bytes + 1)  # the file may grow meanwhile
        if max_bytes is not None and len(data) > max_bytes:
            return None
        try:
            return json.loads(data)
        except (ValueError, RecursionError):  # a job user's deeply nested JSON raises the latter
            return None


@dataclass(frozen=True)
class RunFiles:
    """`<state>/run/<id>/`: spec.json (in), started (run-once guard), progress.json, result.json (out),
    tmp/ (ctx.tmpdir, made on first use)."""

    dir: Path

    @staticmethod
    def root(state_dir: Path) -> Path:
        """`<state>/run/`, where every job's run dir is."""
        return state_dir / "run"

    @classmethod
    def of(cls, state_dir: Path, job_id: str) -> RunFiles:
        return cls(cls.root(state_dir) / job_id)

    @property
    def spec(self) -> Path:
        return self.dir / "spec.json"

    @property
    def started(self) -> Path:
        return self.dir / "started"

    @property
    def progress(self) -> Path:
        return self.dir / "progress.json"

    @property
    def result(self) -> Path:
        return self.dir / "result.json"

    @property
    def exit_status(self) -> Path:
        """Written by the fork server when it reaps a job it forked (see runner/forkserver_main.py)."""
        return self.dir / "exit_status.json"

    @property
    def tmp(self) -> Path:
        return self.dir / "tmp"

    def prepare(self, spec: JobSpec | None) -> None:
        """The run dir, and spec.json unless the spec travels another way (the fork server
        hands it to the job through a pipe only the daemon writes to). No tmp dir: the job
        makes it when it first needs it (`make_tmp`), and most jobs never do; on this disk
        every directory made and removed costs the daemon ~0.1-0.3 ms."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if spec is not None:
            write_json_atomic(self.spec, spec.to_json())

    def workdir(self, kind: str) -> Path:
        """Where a job starts, its cwd and TMPDIR: a command in its tmp dir; a Python job in its
        run dir, which exists from the start, is as private and is removed as well."""
        return self.tmp if kind == "command" else self.dir

    def make_tmp(self) -> Path:
        """In the job process, as the job's user: its private tmp dir, made on first use."""
        self.tmp.mkdir(mode=0o700, exist_ok=True)
        return self.tmp

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class Trash:
    """Run dirs of ended jobs. Moved aside at once (one rename: the job's tmp dir is gone by
    the time the job is reported done), deleted later in batches, off the event loop: an
    unlink or rmdir can take a millisecond on some disks (ext4 with online discard)."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "trash"
        self._pending: list[Path] = []

    def put(self, files: RunFiles) -> None:
        target = self.dir / files.dir.name
        try:
            self.dir.mkdir(mode=0o700, exist_ok=True)
            os.rename(files.dir, target)
        except OSError:
            files.remove()
            return
        self._pending.append(target)

    def take(self) -> list[Path]:
        batch, self._pending = self._pending, []
        return batch

    @staticmethod
    def delete(paths: list[Path]) -> None:
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)

    def delete_all(self) -> None:
        """At start-up: whatever a stopped or crashed daemon left in the trash."""
        shutil.rmtree(self.dir, ignore_errors=True)
