"""Settings that name things on this host, checked before the daemon starts (daemon process).

The rule (README, Configuration): what the daemon itself needs (socket group, run_as user,
cgroup root, store) is refused in one line that names the setting (exit 2), instead of a
traceback halfway through start-up or a daemon that runs but fails every job; names in the
access lists (allowed users and groups, admins) only warn: such a user may be added later."""

from __future__ import annotations

import grp
import os
import pwd
import re
from collections.abc import Callable

from supervisor.errors import InvalidParams
from supervisor.settings import Settings

_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_STORE_SCHEMES = ("sqlite", "postgres", "postgresql")


def check_settings(settings: Settings) -> None:
    problems = (
        _missing("RUNSPACE_SOCKET_GROUP", settings.socket_group, grp.getgrnam, "group"),
        _missing("RUNSPACE_RUN_AS", settings.run_as, pwd.getpwnam, "user"),
        _cgroup_root(settings),
        _store(settings),
    )
    for problem in problems:
        if problem:
            raise InvalidParams(problem)


def _missing(setting: str, name: str | None, lookup: Callable[[str], object], kind: str) -> str | None:
    """A user or group the setting names that this host does not have."""
    if name is None or _known(lookup, name):
        return None
    return f"{setting}={name!r}: no such {kind} on this host"


def _known(lookup: Callable[[str], object], name: str) -> bool:
    try:
        lookup(name)
    except KeyError:
        return False
    return True


def _cgroup_root(settings: Settings) -> str | None:
    root = settings.cgroup_root
    if root is None or not settings.cgroups:
        return None
    if not (root / "cgroup.kill").exists() or not os.access(root / "cgroup.procs", os.W_OK):
        return (f"RUNSPACE_CGROUP_ROOT={str(root)!r}: not a cgroup v2 directory this daemon may write "
                "(with cgroup.kill, Linux ≥ 5.14); unset it to detect one, or RUNSPACE_CGROUPS=false")
    return None


def _store(settings: Settings) -> str | None:
    scheme = _URL_SCHEME.match(settings.store or "")
    if scheme and scheme.group(1).lower() not in _STORE_SCHEMES:
        return (f"RUNSPACE_STORE={settings.store!r}: the store is a SQLite path (or sqlite://PATH) "
                "or a postgresql:// URL")
    return None


def unknown_env(environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """RUNSPACE_* variables that are no setting: a typo (RUNSPACE_MAX_CONCURENCY) would do
    nothing at all. Only warned about: job code may read RUNSPACE_* variables of its own."""
    known = {f"RUNSPACE_{name.upper()}" for name in Settings.model_fields} | {"RUNSPACE_CONFIG"}
    return sorted(name for name in environ if name.startswith("RUNSPACE_") and name not in known)


def doubtful_settings(settings: Settings) -> list[str]:
    """Names a setting lists that this host does not have: warned about, not refused (a user
    may be added later), but a typo would otherwise lock someone out without a word."""
    doubts = [f"RUNSPACE_{setting.upper()} names {name!r}, which is no user on this host"
              for setting in ("allowed_users", "admins") for name in getattr(settings, setting)
              if not _known(pwd.getpwnam, name)]
    doubts += [f"RUNSPACE_ALLOWED_GROUPS names {name!r}, which is no group on this host"
               for name in settings.allowed_groups if not _known(grp.getgrnam, name)]
    doubts += [f"RUNSPACE_JOBS_PATH names {str(path)!r}, which is no directory" for path in settings.jobs_path
               if not path.is_dir()]
    return doubts
