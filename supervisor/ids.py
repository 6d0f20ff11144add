"""Job ids: time-ordered hex, safe in paths. Kept free of heavy imports for the CLI's sake."""

from __future__ import annotations

import os
import re
import time

JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{20}$")


def new_job_id() -> str:
    """12 hex digits of milliseconds, then 8 random ones."""
    return f"{int(time.time() * 1000):012x}{os.urandom(4).hex()}"


def is_job_id(value: str) -> bool:
    return bool(JOB_ID_PATTERN.fullmatch(value))  # `$` alone would let a trailing newline through
