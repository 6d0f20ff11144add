"""Show a job's (or a batch's) progress until it ends: a rich progress bar on a terminal,
plain lines on stderr otherwise (one line per change, so logs and CI output stay readable)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import click

from supervisor.output import terminal_safe

_POLL = 0.5


class Display(Protocol):
    def show(self, done: float | None, total: float | None, state: str, message: str) -> None: ...

    def close(self) -> None: ...


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _epoch(rfc3339: str | None) -> float | None:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() if rfc3339 else None


def plain_line(label: str, done: float | None, total: float | None, state: str, message: str, elapsed: float) -> str:
    """`<label> <state> <pct>% (<done>/<total>) <message> [<elapsed>]`; parts without data are left out."""
    parts = [label, state]
    if total:
        parts.append(f"{100.0 * (done or 0) / total:.1f}% ({done or 0:g}/{total:g})")
    elif done is not None:
        parts.append(f"{done:g}")
    if message:
        parts.append(message)
    parts.append(f"[{_elapsed(elapsed)}]")
    return " ".join(parts)


class PlainDisplay:
    def __init__(self, label: str, since: float) -> None:
        self._label, self._since, self._last = label, since, None

    def show(self, done: float | None, total: float | None, state: str, message: str) -> None:
        key = (done, total, state, message)
        if key != self._last:  # one line per change, not per poll
            self._last = key
            click.echo(plain_line(self._label, done, total, state, message, time.time() - self._since), err=True)

    def close(self) -> None:
        pass


class BarDisplay:
    def __init__(self, label: str, since: float) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        self._since = since
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                             TextColumn("{task.fields[elapsed]}"), TextColumn("{task.fields[message]}"),
                             console=Console(stderr=True), transient=False)
        self._task = self._bar.add_task(label, total=None, message="", elapsed="")
        self._bar.start()

    def show(self, done: float | None, total: float | None, state: str, message: str) -> None:
        self._bar.update(self._task, total=total or None, completed=done or 0, message=message or state,
                         elapsed=_elapsed(time.time() - self._since))

    def close(self) -> None:
        self._bar.stop()


def make_display(label: str, since: float) -> Display:
    return BarDisplay(label, since) if sys.stderr.isatty() else PlainDisplay(label, since)


def _poll(fetch: Callable[[float], dict[str, Any]], first: dict[str, Any], deadline: float | None,
          show: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    status = first
    show(status)
    while not status["done"]:
        remaining = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
        if remaining <= 0:
            break
        status = fetch(remaining)
        show(status)
    return status


def follow_progress(client: Any, job_id: str, timeout: float | None, quiet: bool = False) -> dict[str, Any]:
    """Until the job ends (or `timeout` passes); returns its last status."""
    deadline = None if timeout is None else time.monotonic() + timeout
    status = client.status(job_id)

    def fetch(remaining: float) -> dict[str, Any]:
        return client.wait(job_id, timeout=remaining)

    if quiet or status["done"]:
        return _poll(fetch, status, deadline, lambda s: None)
    since = _epoch(status.get("started_at")) or _epoch(status.get("requested_at")) or time.time()
    display = make_display(f"{status['job']} {job_id}", since)

    def show(s: dict[str, Any]) -> None:
        display.show(s.get("progress"), s.get("total"), s["state"], terminal_safe(s.get("message") or ""))

    try:
        return _poll(fetch, status, deadline, show)
    finally:
        display.close()


def batch_message(summary: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in summary["counts"].items() if n)
    callbacks = summary.get("callbacks")
    if callbacks:
        counts += "; callbacks: " + ", ".join(f"{n} {state}" for state, n in callbacks.items() if n)
    return counts


def follow_batch(client: Any, batch_id: str, quiet: bool = False) -> dict[str, Any]:
    """Until every item of the batch has ended; returns the batch summary (without items)."""
    def fetch(remaining: float) -> dict[str, Any]:
        time.sleep(remaining)
        return client.batch(batch_id, limit=0)

    summary = client.batch(batch_id, limit=0)
    if quiet:
        return _poll(fetch, summary, None, lambda s: None)
    display = make_display(f"batch {batch_id}", _epoch(summary.get("created_at")) or time.time())

    def show(s: dict[str, Any]) -> None:
        display.show(s["ended"], s["size"], "done" if s["done"] else "running", batch_message(s))

    try:
        return _poll(fetch, summary, None, show)
    finally:
        display.close()
