"""Run-time queue control (daemon process): pause and resume, whole queue or one type, and
`parallel` (global or per-type concurrency). Admins change it over PUT or PATCH /v1/queue; the
store keeps it, so it survives restarts (and every host of a shared store follows it).

A change names only what it changes and is applied to the stored settings inside one store
transaction: two admins changing different things at once both get their change (reading the
whole document, changing it and writing it back would undo one of them)."""

from __future__ import annotations

from typing import Annotated, Any

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supervisor.errors import FieldError, InvalidParams

Slots = Annotated[int, Field(ge=1, le=1_000_000)]


def _refuse_unknown(errors: list[FieldError]) -> None:
    if errors:
        raise InvalidParams("unknown job type in the queue settings (`runspace jobs` lists them)", errors)


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
        errors = [FieldError(["paused_types", i], f"no job type {name!r}")
                  for i, name in enumerate(self.paused_types) if name not in known]
        errors += [FieldError(["parallel_types", name], f"no job type {name!r}")
                   for name in self.parallel_types if name not in known]
        _refuse_unknown(errors)

    @classmethod
    def from_stored(cls, value: dict[str, Any]) -> QueueControl:
        """The stored settings; invalid ones (written by another runspace version) read as none."""
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            logger.error("queue control in the store is not valid, ignored: {}", exc)
            return cls()

    def given(self) -> dict[str, Any]:
        """The fields a request named (PUT /v1/queue replaces those and keeps the others)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class QueueChange(BaseModel):
    """PATCH /v1/queue: only what changes (what `runspace pause`, `resume` and `parallel` send)."""

    model_config = ConfigDict(extra="forbid")

    paused: bool | None = Field(None, description="Pause (true) or resume (false) the whole queue.")
    pause_types: list[str] = Field(default_factory=list, description="Job types to add to `paused_types`.")
    resume_types: list[str] = Field(
        default_factory=list, description="Job types to take out of `paused_types` (each must be paused).")
    parallel: Slots | None = Field(None, description="Jobs running at once on each host; null: back to the setting.")
    parallel_types: dict[str, Slots | None] = Field(
        default_factory=dict, description="Per-type concurrency to set; null: back to what the type declares.")

    def check_types(self, known: set[str]) -> None:
        """Types being paused or limited must exist (resuming a type that is gone is fine)."""
        errors = [FieldError(["pause_types", i], f"no job type {name!r}")
                  for i, name in enumerate(self.pause_types) if name not in known]
        errors += [FieldError(["parallel_types", name], f"no job type {name!r}")
                   for name, slots in self.parallel_types.items() if slots is not None and name not in known]
        _refuse_unknown(errors)

    def applied_to(self, control: QueueControl) -> QueueControl:
        not_paused = [FieldError(["resume_types", i], f"job type {name!r} is not paused")
                      for i, name in enumerate(self.resume_types) if name not in control.paused_types]
        if not_paused:
            raise InvalidParams(f"{', '.join(e.msg for e in not_paused)} "
                                f"(paused: {', '.join(control.paused_types) or 'none'})", not_paused)
        changed = control.model_copy(deep=True)
        if self.paused is not None:
            changed.paused = self.paused
        changed.paused_types += [name for name in dict.fromkeys(self.pause_types) if name not in changed.paused_types]
        changed.paused_types = [name for name in changed.paused_types if name not in self.resume_types]
        if "parallel" in self.model_fields_set:
            changed.parallel = self.parallel
        for name, slots in self.parallel_types.items():
            if slots is None:
                changed.parallel_types.pop(name, None)
            else:
                changed.parallel_types[name] = slots
        return changed


class QueueState(QueueControl):
    """GET /v1/queue: the settings, with what they mean right now on this host."""

    max_concurrency: int = Field(description="This host's limit now: `parallel` if set, else the setting.")
    running: int = Field(description="Jobs running on this host: everyone's for admins, else the caller's own.")
    queued: int = Field(description="Jobs waiting: everyone's for admins, else the caller's own.")
