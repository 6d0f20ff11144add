"""The queue page's chart: jobs finished per minute over the last hour, stacked by end state,
drawn as inline SVG on the server (no script, no chart library)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from supervisor.ui.view import epoch

MINUTES = 60
WIDTH, HEIGHT, BAR = 600, 120, 10  # 60 bars of 10 px
# End states, bottom to top; the CSS gives each its colour (class "s-<state>").
ENDED = ("succeeded", "failed", "timed_out", "hung", "cancelled", "lost")


@dataclass(frozen=True)
class Rect:
    x: int
    y: float
    height: float
    state: str
    title: str


@dataclass(frozen=True)
class Chart:
    rects: list[Rect]
    peak: int  # jobs in the busiest minute: the y axis' top
    total: dict[str, int]
    width: int = WIDTH
    height: int = HEIGHT


def finished_per_minute(jobs: list[dict[str, Any]], now: float) -> list[dict[str, int]]:
    """Index 0 is the minute an hour ago, 59 the current one."""
    minutes: list[dict[str, int]] = [{} for _ in range(MINUTES)]
    for job in jobs:
        ended = epoch(job.get("finished_at"))
        if ended is None or job.get("state") not in ENDED:
            continue
        index = MINUTES - 1 - int((now - ended) // 60)
        if 0 <= index < MINUTES:
            minutes[index][job["state"]] = minutes[index].get(job["state"], 0) + 1
    return minutes


def draw(minutes: list[dict[str, int]]) -> Chart:
    peak = max((sum(m.values()) for m in minutes), default=0)
    scale = HEIGHT / peak if peak else 0.0
    rects, total = [], {}
    for index, counts in enumerate(minutes):
        y = float(HEIGHT)
        for state in ENDED:
            n = counts.get(state, 0)
            if not n:
                continue
            total[state] = total.get(state, 0) + n
            y -= n * scale
            ago = MINUTES - 1 - index
            rects.append(Rect(index * BAR, round(y, 1), round(n * scale, 1), state,
                              f"{n} {state}, {ago} min ago" if ago else f"{n} {state}, this minute"))
    return Chart(rects, peak, total)

