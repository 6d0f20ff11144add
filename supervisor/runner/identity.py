"""Who a job runs as: the requestor (or a type's run_as user), and how root becomes that user.

Only a daemon running as root changes identities. The daemon decides the user (`job_identity`);
the job process, still root, claims its run dir, hands it to that user and drops privileges
before any job code runs (`hand_over`, then `drop_privileges`).
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor.errors import NotAllowed
from supervisor.names import admin_names
from supervisor.registry import JobOptions
from supervisor.runner.files import RunFiles

if TYPE_CHECKING:  # pydantic-settings costs every job process ~80 ms of start-up; annotations only
    from supervisor.runner.spec import JobSpec
    from supervisor.settings import Settings

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class RunAs:
    """The Unix identity a job gets, and the few variables it inherits from the daemon."""

    uid: int
    gid: int
    name: str
    home: str
    keep_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_user(cls, name: str, keep_env: dict[str, str] | None = None) -> RunAs:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            raise NotAllowed(f"cannot run the job as {name!r}: no such user on this host") from None
        return cls(pw.pw_uid, pw.pw_gid, pw.pw_name, pw.pw_dir, keep_env or {})

    @classmethod
    def from_spec(cls, spec: JobSpec) -> RunAs | None:
        if spec.run_as_uid is None:
            return None
        return cls(spec.run_as_uid, int(spec.run_as_gid or 0), str(spec.run_as_name), str(spec.run_as_home))

    def spec_fields(self) -> dict[str, Any]:
        return {"run_as_uid": self.uid, "run_as_gid": self.gid, "run_as_name": self.name, "run_as_home": self.home}

    def environment(self, tmpdir: Path) -> dict[str, str]:
        """A login-like environment: nothing of the daemon's leaks into another user's job."""
        env = {"PATH": SAFE_PATH, "LANG": os.environ.get("LANG", "C.UTF-8"), **self.keep_env}
        env.update(HOME=self.home, USER=self.name, LOGNAME=self.name, TMPDIR=str(tmpdir))
        return env


def job_identity(opts: JobOptions, requestor: str, settings: Settings) -> RunAs | None:
    """Whom a job runs as when the daemon is root; None when the daemon cannot switch users.

    Never root, unless the type says `allow_root=True` and the requestor is an admin. Root's
    own requests for other types run as `root_run_as` when it is set (root asking for root
    is no escalation, so unset keeps them as root). None also means "stay as the daemon".
    """
    if os.geteuid() != 0:
        return None
    admins, root_run_as = settings.admins, settings.run_as
    kept = {name: os.environ[name] for name in settings.job_env_passthrough if name in os.environ}
    target = RunAs.of_user(opts.run_as or requestor, kept)
    if target.uid != 0:
        return target
    if opts.run_as and not opts.allow_root:
        raise NotAllowed(f"this job type runs as {opts.run_as!r}, which is root, without allow_root=True")
    if opts.allow_root and requestor not in admin_names(admins):
        raise NotAllowed(f"only admins may run this job as root; {requestor!r} is not one")
    if opts.allow_root or not root_run_as:
        return None  # stays root, the daemon's own identity and environment
    fallback = RunAs.of_user(root_run_as, kept)
    return fallback if fallback.uid != 0 else None


# -- inside the job process, still root ------------------------------------------------


def read_root_spec(path: Path) -> dict[str, Any]:
    """The spec, provided it is the regular, single-linked file root wrote (not a user's swap)."""
    import json

    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink != 1:
            raise PermissionError(f"{path} is not a file this process wrote; refusing to run")
        with os.fdopen(os.dup(fd), "rb") as f:
            return json.loads(f.read())
    finally:
        os.close(fd)


def hand_over(run_dir: Path, who: RunAs) -> None:
    """Give the job user its run dir (progress/result; its tmp dir is made in it later, as the
    user), and its log on stdout."""
    os.chown(run_dir, who.uid, who.gid, follow_symlinks=False)
    os.chmod(run_dir, 0o700, follow_symlinks=False)
    if stat.S_ISREG(os.fstat(1).st_mode):
        os.fchown(1, who.uid, -1)  # the job log: readable by its user, and by no other user
        os.fchmod(1, 0o640)


def drop_privileges(who: RunAs | None) -> None:
    """Become the job user with its groups; no-op unless root and asked. Irreversible."""
    if who is None or os.geteuid() != 0:
        return
    if who.uid == 0:
        return
    os.setgroups(os.getgrouplist(who.name, who.gid))
    os.setgid(who.gid)
    os.setuid(who.uid)
    if os.getuid() != who.uid or os.geteuid() != who.uid:
        raise PermissionError(f"could not become {who.name}")


# -- in the daemon ---------------------------------------------------------------------


def prepare_shared_dirs(state_dir: Path, log_dir: Path, sqlite_db: Path | None) -> None:
    """As root: job users may pass through the state and log dirs to their own run dir and
    log (0711: no listing, so other jobs' ids stay hidden), but read nothing else there."""
    if os.geteuid() != 0:
        return
    for path, mode in ((state_dir, 0o711), (RunFiles.root(state_dir), 0o711), (log_dir, 0o711),
                       (log_dir / "jobs", 0o711), (log_dir / "users", 0o700)):
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, mode)
    if sqlite_db is not None:
        # SQLite gives its -wal and -shm files the database file's mode, so set it first.
        os.close(os.open(sqlite_db, os.O_CREAT | os.O_WRONLY, 0o600))
        for path in (sqlite_db, *sqlite_db.parent.glob(sqlite_db.name + "-*")):
            os.chmod(path, 0o600)
