"""runspace: a supervised job runner. Job modules import `job`, `command_job` and `JobContext` from here."""

from supervisor.context import JobContext
from supervisor.registry import command_job, job

__all__ = ["JobContext", "command_job", "job"]
