"""The built-in command type `exec` (job process): run the caller's own command line in a
directory of theirs, supervised like any command job. It always runs as its requestor's uid
(supervisor/exec_policy.py decides who may submit it)."""

from __future__ import annotations

import os

from typing import Annotated

from pydantic import BaseModel, Field, field_validator

from supervisor import JobContext, command_job

EXEC_TYPE = "exec"  # supervisor/exec_policy.py says who may submit it
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
# A command line is stored with its job and shown in every list of jobs (an admin's lists all
# users'): bounded like the one xargs builds by default, far more than any command needs. A
# directory name is bounded by PATH_MAX, beyond which chdir() fails anyway.
MAX_COMMAND_BYTES = 128 * 1024
MAX_CWD_BYTES = 4095


class ExecParams(BaseModel):
    argv: list[str] = Field(min_length=1, description="The command and its arguments; never run through a shell.")
    cwd: str | None = Field(None, pattern=r"^/", max_length=MAX_CWD_BYTES,
                            description="Absolute directory to run in (default: the user's home).")
    env: dict[EnvName, str] = Field(default_factory=dict, description="Variables set for the command.")
    label: str | None = Field(None, max_length=200, description="Shown by `runspace list` instead of the argv.")
    timeout: float | None = Field(None, gt=0, description="Hard timeout (s) in place of RUNSPACE_DEFAULT_TIMEOUT.")
    idle_timeout: float | None = Field(None, gt=0, description="No output and no progress for this long: hung.")

    @field_validator("argv")
    @classmethod
    def _argv_fits(cls, argv: list[str]) -> list[str]:
        _check_size(sum(len(arg.encode("utf-8", "surrogatepass")) + 1 for arg in argv), "the command and its arguments")
        return argv

    @field_validator("env")
    @classmethod
    def _env_fits(cls, env: dict[str, str]) -> dict[str, str]:
        _check_size(sum(len(f"{k}={v}".encode("utf-8", "surrogatepass")) + 1 for k, v in env.items()), "the variables")
        return env

    @field_validator("cwd")
    @classmethod
    def _cwd_fits(cls, cwd: str | None) -> str | None:
        if cwd is not None and len(cwd.encode("utf-8", "surrogatepass")) > MAX_CWD_BYTES:
            raise ValueError(f"a directory name is at most {MAX_CWD_BYTES} bytes (PATH_MAX)")
        return cwd


def _check_size(size: int, what: str) -> None:
    if size > MAX_COMMAND_BYTES:
        raise ValueError(f"{what} take {size} bytes; at most {MAX_COMMAND_BYTES} are accepted")


@command_job(EXEC_TYPE, allow_root=True)
def exec_command(params: ExecParams, ctx: JobContext) -> list[str]:
    """Run a command line as yourself, in your directory: `runspace exec -- make test`."""
    # This process exists for this one job and already runs as the requestor, so the chdir is
    # checked with their rights, and the command inherits both (supervisor/command.py).
    os.chdir(params.cwd or os.path.expanduser("~"))
    os.environ.update(params.env)
    return params.argv
