"""What job processes report to the daemon (progress, result.json), checked as untrusted input.

A job's run dir and the progress socket are writable by the job's user, so a report may be
anything: whatever does not fit is dropped, never allowed to raise inside the daemon.
"""

from __future__ import annotations

import math
import signal
from dataclasses import dataclass
from typing import Any

from supervisor.models import JobState

MAX_REPORT_BYTES = 64 * 1024  # progress.json and datagrams: a message line, not a document


@dataclass(frozen=True)
class Progress:
    job_id: str
    done: float
    total: float | None
    message: str | None


def parse_progress(report: Any, job_id: str | None = None) -> Progress | None:
    """`{"id", "progress", "total", "message"}` with finite numbers; for `job_id` only, if given."""
    if not isinstance(report, dict) or not isinstance(report.get("id"), str) or \
            (job_id is not None and report["id"] != job_id):
        return None
    done, total, message = report.get("progress"), report.get("total"), report.get("message")
    if not _finite(done) or not (total is None or _finite(total)):
        return None
    return Progress(report["id"], float(done), None if total is None else float(total),
                    message if isinstance(message, str) else None)


def _finite(value: Any) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float
        return False


def check_result(report: Any) -> dict[str, Any] | None:
    """A result.json that can be recorded as written, or None (treated as no result at all)."""
    if not isinstance(report, dict):
        return None
    try:
        if not JobState(report["state"]).done:
            return None
    except (KeyError, TypeError, ValueError):
        return None
    error = report.get("error")
    if error is not None and not (isinstance(error, dict) and all(
            isinstance(error.get(k), str | None) for k in ("type", "message"))):
        return None
    code, sig = report.get("exit_code"), report.get("signal")
    if not (_small_int(code, -2**31, 2**31) and _small_int(sig, 1, 128)):
        return None
    return report


def _small_int(value: Any, low: int, high: int) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and low <= value < high)


def signal_name(number: int) -> str:
    """`SIGTERM`; `signal 35` for a number Python has no name for (real-time signals)."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
