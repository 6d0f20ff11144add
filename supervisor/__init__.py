"""runspace: a supervised job runner. Job modules import `job`, `command_job`, `JobContext` and
`CallbackPayload` (a batch callback's params) from here."""

from __future__ import annotations

# typing.TYPE_CHECKING without importing typing (2 ms of `runspace status`; supervisor/cli_main.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from supervisor.context import JobContext
    from supervisor.models import CallbackPayload
    from supervisor.registry import command_job, job

__all__ = ["CallbackPayload", "JobContext", "command_job", "job"]


def __getattr__(name: str) -> Any:
    # Lazy (PEP 562): `import supervisor.cli` must not pay for pydantic, so the CLI starts fast.
    if name == "JobContext":
        from supervisor.context import JobContext

        return JobContext
    if name == "CallbackPayload":
        from supervisor.models import CallbackPayload

        return CallbackPayload
    if name in ("job", "command_job"):
        from supervisor import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'supervisor' has no attribute {name!r}")
