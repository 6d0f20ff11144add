"""What job processes report to the daemon (progress, result.json), checked as untrusted input.

A job's run dir and the progress socket are writable by the job's user, so a report may be
anything: whatever does not fit is dropped or refused here, never allowed to raise later in
the daemon — in the store (SQLite refuses lone surrogates, PostgreSQL NUL characters) or
when the API serialises a status.
"""

from __future__ import annotations

import json
import math
import re
import signal
from dataclasses import dataclass
from typing import Any

from supervisor.models import JobState

MAX_REPORT_BYTES = 64 * 1024  # progress.json and datagrams: a message line, not a document
MAX_RESULT_BYTES = 64 * 2**20  # result.json: as much as a request body may carry
_MAX_RESULT_DEPTH = 64  # pydantic refuses to serialise much deeper values
_UNSTORABLE = re.compile("[\0\ud800-\udfff]")


class InvalidReport(ValueError):
    """result.json exists but cannot be recorded as the job's outcome."""


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
                    storable_text(message) if isinstance(message, str) else None)


def storable_text(text: str) -> str:
    """`text` as every store keeps it: lone surrogates and NUL become U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text)


def _finite(value: Any) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float
        return False


def parse_exit_status(report: Any) -> int | None:
    """The raw wait status in exit_status.json (the fork server's, but in the job user's run dir)."""
    status = report.get("status") if isinstance(report, dict) else None
    return status if status is not None and _small_int(status, 0, 2**16) else None


@dataclass(frozen=True)
class ResultReport:
    """A job process's result.json (job_main.py, or runspace-shim for a command), checked."""

    state: JobState  # a final one
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    exit_code: int | None = None
    signal: int | None = None


def check_result(report: Any) -> ResultReport | None:
    """A result.json (already read) that can be recorded as written; None when there is none.
    Raises InvalidReport, naming what is wrong, for one that cannot."""
    if report is None:
        return None
    if not isinstance(report, dict):
        raise InvalidReport("it is not a JSON object")
    try:
        if not JobState(report["state"]).done:
            raise InvalidReport(f"state {report['state']!r} is not a final state")
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidReport(f"no valid state ({exc})") from None
    error = report.get("error")
    if error is not None and not (isinstance(error, dict) and all(
            isinstance(error.get(k), str | None) for k in ("type", "message"))):
        raise InvalidReport("error must be an object with string type and message")
    if not (_small_int(report.get("exit_code"), -2**31, 2**31) and _small_int(report.get("signal"), 1, 128)):
        raise InvalidReport("exit_code and signal must be small integers or null")
    _check_storable(report, _MAX_RESULT_DEPTH)
    error = error or {}
    return ResultReport(JobState(report["state"]), report.get("result"), error.get("type"), error.get("message"),
                        report.get("exit_code"), report.get("signal"))


def _check_storable(value: Any, depth: int) -> None:
    """Every string encodable and NUL-free, numbers finite, nesting bounded."""
    if depth < 0:
        raise InvalidReport(f"its values nest deeper than {_MAX_RESULT_DEPTH} levels")
    if isinstance(value, str):
        if storable_text(value) != value:
            raise InvalidReport(f"a string holds a NUL or a lone surrogate: {json.dumps(value)[:80]}")
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidReport(f"{value} is not a JSON number")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_storable(key, depth - 1)
            _check_storable(item, depth - 1)
    elif isinstance(value, list):
        for item in value:
            _check_storable(item, depth - 1)


def _small_int(value: Any, low: int, high: int) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and low <= value < high)


def signal_name(number: int) -> str:
    """`SIGTERM`; `signal 35` for a number Python has no name for (real-time signals)."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
