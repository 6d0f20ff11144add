"""JobContext (job process): what a running job sees (ids, tmpdir, log, progress)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol


class Reporter(Protocol):
    def log(self, text: str) -> None: ...

    def output(self, text: str) -> None: ...  # a line of the job's own output (a command's)

    def progress(self, done: float, total: float | None, message: str | None) -> None: ...


class JobContext:
    """`tmpdir` may be given as a function that makes it: the job's private tmp dir is then
    made on first use (most jobs never use it, and each directory costs)."""

    def __init__(self, job_id: str, job: str, requestor: str, log_user: str, tmpdir: Path | Callable[[], Path],
                 reporter: Reporter) -> None:
        self.job_id, self.job, self.requestor, self.log_user = job_id, job, requestor, log_user
        self.reporter = reporter
        self._tmpdir = tmpdir

    @property
    def tmpdir(self) -> Path:
        """This job's private directory, removed when the job ends."""
        if callable(self._tmpdir):
            self._tmpdir = self._tmpdir()
        return self._tmpdir

    def log(self, msg: str) -> None:
        """Write a line to this job's log and to the unified log of its user."""
        self.reporter.log(str(msg))

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress; `runspace wait` and the status object show it."""
        self.reporter.progress(done, total, message)
