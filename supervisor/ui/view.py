"""How the pages show a status object's fields: times, durations, JSON (Jinja filters)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any


def epoch(stamp: str | None) -> float | None:
    return datetime.fromisoformat(stamp).timestamp() if stamp else None


def clock(stamp: str | None) -> str:
    """RFC 3339 UTC to `2026-12-03 22:45:51` (UTC, as the CLI and the logs show times)."""
    return stamp[:19].replace("T", " ") if stamp else ""


def duration(job: dict[str, Any]) -> str:
    """Run time so far, or in all once ended; nothing for a job that never started."""
    started = epoch(job.get("started_at"))
    if started is None:
        return ""
    seconds = int((epoch(job.get("finished_at")) or time.time()) - started)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def percent(value: float) -> str:
    """26%, 12.5%: the API rounds to one decimal; a whole number needs none."""
    return f"{value:g}%"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def summary(params: dict[str, Any], limit: int = 60) -> str:
    text = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in params.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


FILTERS = {"percent": percent, "clock": clock, "duration": duration, "pretty": pretty, "summary": summary}
