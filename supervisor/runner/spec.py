"""JobSpec: what the daemon tells a job process, the one shape both sides write and read.

It travels as JSON: spec.json in the run dir for a posix_spawned job process, or inside the
fork server's request for a forked one (runner/launch.py builds it, job_main.py reads it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JobSpec:
    id: str
    job: str
    kind: str  # "python" or "command"
    module: str
    module_sha256: str | None  # the source the daemon checked (supervisor/jobsource.py)
    params: dict[str, Any]
    attempt: int
    requestor: str
    log_user: str
    tmpdir: str
    user_log: str
    events_socket: str | None
    cgroup: str | None  # to join: set for posix_spawned jobs only (a forked one is born in it)
    run_as: str | None
    shim: str | None  # the native command-job shim, for command jobs
    max_log_bytes: int | None
    # who the job runs as, when a root daemon runs it as another user (runner/identity.py RunAs)
    run_as_uid: int | None = None
    run_as_gid: int | None = None
    run_as_name: str | None = None
    run_as_home: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        return cls(**data)
