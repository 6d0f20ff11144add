"""Run-time queue control (daemon process): pause and resume, whole queue or one type, and
`parallel` (global or per-type concurrency). Admins change it over PUT /v1/queue; the store
keeps it, so it survives restarts (and every host of a shared store follows it)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from supervisor.errors import FieldError, InvalidParams

Slots = Annotated[int, Field(ge=1, le=1_000_000)]


class QueueControl(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paused: bool = Field(False, description="No new starts at all; running jobs go on.")
    paused_types: list[str] = Field(default_factory=list, description="Job types that start nothing new.")
    parallel: Slots | None = Field(None, description="Jobs running at once on each host (unset: max_concurrency).")
    parallel_types: dict[str, Slots] = Field(
        default_factory=dict, description="Per-type concurrency, in place of what the type declares.")

    def holds(self, job: str) -> bool:
        """Whether a queued job of this type waits because of a pause."""
        return self.paused or job in self.paused_types

    def limit_of(self, job: str, declared: int | None) -> int | None:
        return self.parallel_types.get(job, declared)

    def check_types(self, known: set[str]) -> None:
        """A typo must not pause nothing silently: every type named must exist."""
        errors = [FieldError(["body", "paused_types", i], f"no job type {name!r}")
                  for i, name in enumerate(self.paused_types) if name not in known]
        errors += [FieldError(["body", "parallel_types", name], f"no job type {name!r}")
                   for name in self.parallel_types if name not in known]
        if errors:
            raise InvalidParams("unknown job type in the queue settings (`runspace jobs` lists them)", errors)


class QueueState(QueueControl):
    """GET /v1/queue: the settings, with what they mean right now on this host."""

    max_concurrency: int = Field(description="This host's limit now: `parallel` if set, else the setting.")
    running: int = Field(description="Jobs running on this host: everyone's for admins, else the caller's own.")
    queued: int = Field(description="Jobs waiting: everyone's for admins, else the caller's own.")
