"""Job types for the identity tests: who am I, and a type that may run as root."""

from __future__ import annotations

import os

from pydantic import BaseModel

from supervisor import JobContext, job


class Nothing(BaseModel):
    pass


def _identity(ctx: JobContext) -> dict:
    probe = ctx.tmpdir / "probe"
    probe.write_text("ok")  # the private tmp dir is the job user's
    ctx.log("identity checked")
    return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
            "env": dict(os.environ), "cwd": os.getcwd(), "tmpdir": str(ctx.tmpdir), "requestor": ctx.requestor}


@job()
def whoami(params: Nothing, ctx: JobContext) -> dict:
    """Reports the uid, gid, groups, environment and cwd the job runs with."""
    ctx.progress(1, 2, "halfway")
    return _identity(ctx)


@job(run_as="root", allow_root=True)
def whoami_root(params: Nothing, ctx: JobContext) -> dict:
    """Runs as root: only admins may submit it."""
    return _identity(ctx)


@job(run_as="root")
def whoami_root_undeclared(params: Nothing, ctx: JobContext) -> dict:
    """Asks for root without allow_root: never runs."""
    return _identity(ctx)


class Plant(BaseModel):
    kind: str  # "symlink" or "fifo"
    target: str = ""


@job()
def plant_result(params: Plant, ctx: JobContext) -> None:
    """Swaps its result.json for a symlink or a FIFO and exits without a result: a hostile job."""
    result = ctx.tmpdir.parent / "result.json"
    if params.kind == "symlink":
        os.symlink(params.target, result)
    else:
        os.mkfifo(result)
    os._exit(0)
