"""`runspace list` as a table (CLI process): id, type, state, progress, started, duration,
requestor (when someone else's jobs are shown, i.e. to admins), and a label or params summary."""

from __future__ import annotations

import json
import shlex
import sys
import time
from datetime import datetime
from typing import Any

from supervisor.output import terminal_safe

_SUMMARY_WIDTH = 40
_STATE_STYLE = {"succeeded": "green", "failed": "red", "timed_out": "red", "hung": "red", "lost": "red",
                "cancelled": "yellow", "running": "cyan"}


def _epoch(rfc3339: str | None) -> float | None:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() if rfc3339 else None


def started(status: dict[str, Any], now: float) -> str:
    at = _epoch(status.get("started_at"))
    if at is None:
        return ""
    local = datetime.fromtimestamp(at)
    return local.strftime("%H:%M:%S" if now - at < 86400 else "%Y-%m-%d %H:%M")


def duration(status: dict[str, Any], now: float) -> str:
    begin = _epoch(status.get("started_at"))
    if begin is None:
        return ""
    seconds = int((_epoch(status.get("finished_at")) or now) - begin)
    minutes, secs = divmod(max(seconds, 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def summary(status: dict[str, Any]) -> str:
    """The job's label param if it has one, an exec job's command line, else `key=value, …`."""
    params = status.get("params") or {}
    label, argv = params.get("label"), params.get("argv")
    if isinstance(label, str) and label:
        text = label
    elif isinstance(argv, list) and all(isinstance(a, str) for a in argv):  # exec: the command line
        text = shlex.join(argv)
    else:
        text = ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in params.items())
    text = terminal_safe(text)  # params and labels are the submitter's text
    if len(text) > _SUMMARY_WIDTH:
        text = text[:_SUMMARY_WIDTH - 1] + "…"
    return text


def progress(status: dict[str, Any]) -> str:
    percent = status.get("percent_complete")
    return f"{percent:g}%" if percent is not None else ""


def print_jobs(items: list[dict[str, Any]], me: str) -> None:
    now = time.time()
    others = any(item["requestor"] != me for item in items)
    header = ["ID", "TYPE", "STATE", "PROGRESS", "STARTED", "DURATION", *(["REQUESTOR"] if others else []),
              "LABEL / PARAMS"]
    rows = [[item["id"], item["job"], item["state"], progress(item), started(item, now), duration(item, now),
             *([item["requestor"]] if others else []), summary(item)] for item in items]
    if sys.stdout.isatty():
        _print_rich(header, rows)
    else:  # piped: plain columns, no colours and no wrapping, so scripts and grep see whole lines
        _print_plain(header, rows)


_RIGHT = ("PROGRESS", "DURATION")


def _print_plain(header: list[str], rows: list[list[str]]) -> None:
    """The table rich draws without a box, in plain text: scripts loop on `runspace list`, and
    importing rich would cost more than the rest of the command (issue 22)."""
    widths = [max(len(row[n]) for row in [header, *rows]) for n in range(len(header))]
    for row in [header, *rows]:
        cells = [cell.rjust(width) if name in _RIGHT else cell.ljust(width)
                 for name, cell, width in zip(header, row, widths, strict=True)]
        print("  ".join(cells).rstrip())


def _print_rich(header: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in header:
        table.add_column(name, justify="right" if name in _RIGHT else "left", no_wrap=name != "LABEL / PARAMS")
    state_at = header.index("STATE")
    for row in rows:
        cells = [escape(cell) for cell in row]
        style = _STATE_STYLE.get(row[state_at])
        if style:
            cells[state_at] = f"[{style}]{row[state_at]}[/]"
        table.add_row(*cells)
    Console().print(table)
