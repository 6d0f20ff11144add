"""The built-in command type `exec` (job process): run the caller's own command line in a
directory of theirs, supervised like any command job. It always runs as its requestor's uid
(supervisor/exec_policy.py decides who may submit it)."""

from __future__ import annotations

import os

from typing import Annotated

from pydantic import BaseModel, Field

from supervisor import JobContext, command_job

EXEC_TYPE = "exec"  # supervisor/exec_policy.py says who may submit it
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class ExecParams(BaseModel):
    argv: list[str] = Field(min_length=1, description="The command and its arguments; never run through a shell.")
    cwd: str | None = Field(None, pattern=r"^/", description="Absolute directory to run in (default: the user's home).")
    env: dict[EnvName, str] = Field(default_factory=dict, description="Variables set for the command.")
    label: str | None = Field(None, max_length=200, description="Shown by `runspace list` instead of the argv.")
    timeout: float | None = Field(None, gt=0, description="Hard timeout (s) in place of RUNSPACE_DEFAULT_TIMEOUT.")
    idle_timeout: float | None = Field(None, gt=0, description="No output and no progress for this long: hung.")


@command_job(EXEC_TYPE, allow_root=True)
def exec_command(params: ExecParams, ctx: JobContext) -> list[str]:
    """Run a command line as yourself, in your directory: `runspace exec -- make test`."""
    # This process exists for this one job and already runs as the requestor, so the chdir is
    # checked with their rights, and the command inherits both (supervisor/command.py).
    os.chdir(params.cwd or os.path.expanduser("~"))
    os.environ.update(params.env)
    return params.argv
