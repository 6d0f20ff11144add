"""Job types for the shared-queue (PostgreSQL) tests: each run leaves a line in a file."""

from __future__ import annotations

import os
import time

from pydantic import BaseModel

from supervisor import JobContext, job


class Mark(BaseModel):
    path: str
    delay: float = 0.0


def _append(path: str, ctx: JobContext, delay: float) -> None:
    started = time.time()
    time.sleep(delay)
    line = f"{ctx.job_id} {os.environ.get('RUNSPACE_HOST_ID', '?')} {started:.6f} {time.time():.6f}\n"
    # One short O_APPEND write: lines of concurrent jobs on several hosts never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@job(timeout=60)
def shared_mark(params: Mark, ctx: JobContext) -> None:
    """Appends `<job id> <host> <start> <end>` to `path` after `delay` seconds."""
    _append(params.path, ctx, params.delay)


@job(timeout=60, retries=1, retry_backoff=0.1)
def shared_mark_retry(params: Mark, ctx: JobContext) -> None:
    """As shared_mark, with one retry."""
    _append(params.path, ctx, params.delay)


class Keyed(Mark):
    key: str


@job(timeout=60, concurrency_key="key")
def shared_keyed(params: Keyed, ctx: JobContext) -> None:
    """As shared_mark; jobs with the same key never overlap, whatever host runs them."""
    _append(params.path, ctx, params.delay)


@job(timeout=60, concurrency=2)
def shared_limited(params: Mark, ctx: JobContext) -> None:
    """As shared_mark; at most two run at once across all hosts."""
    _append(params.path, ctx, params.delay)


class Nap(BaseModel):
    seconds: float


@job(timeout=120)
def shared_sleep(params: Nap, ctx: JobContext) -> dict:
    """Sleeps; for status, log and cancel across hosts."""
    print("sleeping", flush=True)
    time.sleep(params.seconds)
    return {"slept": params.seconds}
