"""A module that imports only with the daemon's environment when a test asks it to
(tests/test_fork_server.py): the fork server runs without that environment."""

from __future__ import annotations

import os

from pydantic import BaseModel

from supervisor import JobContext, job

if os.environ.get("RUNSPACE_TEST_IMPORT_NEEDS_DAEMON_ENV") and "RUNSPACE_STATE_DIR" not in os.environ:
    raise RuntimeError("imported without the daemon's environment")


class Nothing(BaseModel):
    pass


@job()
def parent_of_job(params: Nothing, ctx: JobContext) -> dict:
    """Reports which process started this job."""
    return {"ppid": os.getppid()}
