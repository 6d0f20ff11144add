"""Durations people type (`90`, `10m`, `1h30m`, `30 days`), parsed by pytimeparse; used by the CLI and settings."""

from __future__ import annotations

import math


def parse_duration(text: str) -> float:
    """Seconds; ValueError (naming the text and the forms accepted) for anything else."""
    text = text.strip()
    try:
        seconds: float | None = float(text)
    except ValueError:
        from pytimeparse import parse  # imported here: commands that take no duration never load it

        seconds = parse(text)
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{text!r} is not a duration (e.g. 90 for seconds, 10m, 1h30m, 2d, 30 days)")
    return float(seconds)
