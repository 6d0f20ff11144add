"""JobContext (job process): what a running job sees (ids, tmpdir, log, progress)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class Reporter(Protocol):
    def log(self, text: str) -> None: ...

    def progress(self, done: float, total: float | None, message: str | None) -> None: ...


@dataclass
class JobContext:
    job_id: str
    job: str
    requestor: str
    log_user: str
    tmpdir: Path
    reporter: Reporter

    def log(self, msg: str) -> None:
        """Write a line to this job's log and to the unified log of its user."""
        self.reporter.log(str(msg))

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress; `runspace wait` and the status object show it."""
        self.reporter.progress(done, total, message)
