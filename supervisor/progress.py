"""Show a job's progress until it ends: a rich progress bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

_POLL = 0.5


def _plain_line(status: dict[str, Any]) -> str:
    pct = status.get("percent_complete")
    share = f"{pct:g}%" if pct is not None else status["state"]
    return f"{status['id']} {share} {status.get('message') or ''}".rstrip()


def follow_progress(client, job_id: str, timeout: float | None, quiet: bool = False) -> dict[str, Any]:
    deadline = None if timeout is None else time.monotonic() + timeout
    status = client.status(job_id)
    if quiet or status["done"]:
        return _poll_until_done(client, job_id, status, deadline, lambda s: None)
    if not sys.stderr.isatty():
        last = [""]

        def show(s: dict[str, Any]) -> None:
            line = _plain_line(s)
            if line != last[0]:
                click.echo(line, err=True)
                last[0] = line

        return _poll_until_done(client, job_id, status, deadline, show)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
               TimeElapsedColumn(), TextColumn("{task.fields[message]}"))
    with Progress(*columns, console=None, transient=False) as bar:
        task = bar.add_task(f"{status['job']} {job_id[-8:]}", total=None, message="")

        def update(s: dict[str, Any]) -> None:
            bar.update(task, total=s.get("total"), completed=s.get("progress") or 0,
                       message=s.get("message") or s["state"])

        return _poll_until_done(client, job_id, status, deadline, update)


def _poll_until_done(client, job_id, status, deadline, show) -> dict[str, Any]:
    show(status)
    while not status["done"]:
        remaining = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
        if remaining <= 0:
            break
        status = client.wait(job_id, timeout=remaining)
        show(status)
    return status
