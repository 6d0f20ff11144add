"""Job types for the dashboard's browser tests (tests/test_dashboard.py)."""

from __future__ import annotations

import enum
import time

from pydantic import BaseModel, Field

from supervisor import JobContext, job


class Work(BaseModel):
    items: int = Field(8, ge=1, le=1000, description="How many items to work through.")
    delay: float = Field(0.5, ge=0, description="Seconds per item.")


@job(timeout=300)
def dash_work(params: Work, ctx: JobContext) -> dict:
    """Works through items: a log line and a progress report for each."""
    for n in range(1, params.items + 1):
        print(f"working on item {n}", flush=True)
        time.sleep(params.delay)
        ctx.progress(n, params.items, f"item {n} of {params.items} done")
    return {"items": params.items}


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


class Shape(BaseModel):
    name: str = Field(pattern=r"^[a-z]+$", description="Lower-case letters only.")
    colour: Colour = Colour.RED
    sides: int = Field(4, ge=3)
    filled: bool = False
    tags: list[str] = Field(default_factory=list)
    note: str | None = None


@job()
def dash_shape(params: Shape, ctx: JobContext) -> dict:
    """Returns the shape it was given (every kind of form field)."""
    return params.model_dump(mode="json")
