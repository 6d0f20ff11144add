"""runspace: a supervised job runner. Job modules import `job`, `command_job` and `JobContext` from here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from supervisor.context import JobContext
    from supervisor.registry import command_job, job

__all__ = ["JobContext", "command_job", "job"]


def __getattr__(name: str) -> Any:
    # Lazy (PEP 562): `import supervisor.cli` must not pay for pydantic, so the CLI starts fast.
    if name == "JobContext":
        from supervisor.context import JobContext

        return JobContext
    if name in ("job", "command_job"):
        from supervisor import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'supervisor' has no attribute {name!r}")
