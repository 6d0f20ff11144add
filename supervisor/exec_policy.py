"""Who may submit the built-in `exec` type (daemon process). It runs a command line as its
requestor, so it must never run as anyone else: a daemon that cannot switch users (not root)
takes it only from its own user. `RUNSPACE_EXEC` narrows it further: users | admins | off."""

from __future__ import annotations

import os
import pwd

from supervisor.names import admin_names, user_name
from supervisor.errors import NotAllowed
from supervisor.settings import Settings

EXEC_TYPE = "exec"  # supervisor/builtin_jobs/exec_job.py (a job module: not imported by the daemon's code)


def check_exec(requestor: str, settings: Settings) -> None:
    if settings.exec == "off":
        raise NotAllowed("runspace exec is off on this host (RUNSPACE_EXEC=off)")
    if settings.exec == "admins" and requestor not in admin_names(settings.admins):
        raise NotAllowed(f"runspace exec is for admins on this host (RUNSPACE_EXEC=admins); {requestor!r} is not one")
    if os.geteuid() != 0 and _uid(requestor) != os.geteuid():
        daemon_user = user_name(os.geteuid())
        raise NotAllowed(f"this daemon runs as {daemon_user!r} and cannot run commands as {requestor!r}; "
                         f"only {daemon_user!r} may use exec here (a root daemon runs each user's own)")


def check_restart(job: str, requestor: str, caller: str) -> None:
    """An exec job's command line was chosen by its requestor: nobody else runs it as themselves."""
    if job == EXEC_TYPE and requestor != caller:
        raise NotAllowed(f"an exec job runs its requestor's command line; only {requestor!r} may restart it")


def _uid(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None
