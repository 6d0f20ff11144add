"""Job types for the batch, progress and follow tests."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pydantic import BaseModel, Field

from supervisor import CallbackPayload, JobContext, job


class Square(BaseModel):
    n: int = Field(ge=0, le=1000)
    fail: bool = False


@job()
def square(params: Square, ctx: JobContext) -> dict:
    """n², or a ValueError when asked to fail."""
    if params.fail:
        raise ValueError(f"cannot square {params.n}")
    return {"square": params.n * params.n}


class Collected(CallbackPayload):
    record: str | None = None


@job()
def collect(params: Collected, ctx: JobContext) -> dict:
    """A batch callback that appends its whole payload to `record` (or $DEMO_ROOT/callbacks.jsonl)."""
    import os

    path = Path(params.record or Path(os.environ["DEMO_ROOT"]) / "callbacks.jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(params.model_dump(mode="json", exclude={"record"})) + "\n")
    return {"seen": params.job_id}


class Timed(BaseModel):
    steps: int = 4
    delay: float = 0.7


@job()
def timed_steps(params: Timed, ctx: JobContext) -> dict:
    """Reports progress step by step and returns the wall time of each report."""
    times = []
    for n in range(1, params.steps + 1):
        time.sleep(params.delay)
        times.append(time.time())
        ctx.progress(n, params.steps, f"step {n} of {params.steps}")
    return {"times": times}


class Lines(BaseModel):
    count: int = 10
    every: float = 0.2


@job(timeout=120)
def print_lines(params: Lines, ctx: JobContext) -> dict:
    """Prints `line <n>` every `every` seconds."""
    for n in range(params.count):
        print(f"line {n}", flush=True)
        time.sleep(params.every)
    return {"lines": params.count}


class Slow(BaseModel):
    seconds: float = 30.0


@job(timeout=1, kill_grace=0.5)
def too_slow(params: Slow, ctx: JobContext) -> None:
    """Outlives its 1 s timeout."""
    ctx.log("starting something slow")
    time.sleep(params.seconds)


class Chatter(BaseModel):
    user: str
    text: str = "hello"
    lines: int = 50
    every: float = 0.01


@job(log_user="user")
def chatty(params: Chatter, ctx: JobContext) -> dict:
    """Writes `lines` lines to the user's log, `every` seconds apart (so concurrent jobs interleave)."""
    for i in range(params.lines):
        ctx.log(f"{params.text} {i}")
        time.sleep(params.every)
    return {}
