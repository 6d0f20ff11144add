"""Who may do what: allowed users and groups, admins. Identity comes from the socket peer."""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervisor.errors import NotAllowed, NotAuthenticated, NotFound
from supervisor.models import JobRecord
from supervisor.names import user_name
from supervisor.settings import Settings

if TYPE_CHECKING:
    from supervisor.store.base import Store


@dataclass(frozen=True)
class Caller:
    uid: int
    name: str
    admin: bool

    def may_see(self, rec: JobRecord) -> bool:
        return self.admin or rec.requestor == self.name

    def may_see_id(self, store: Store, job_id: str) -> bool:
        if self.admin:
            return True
        rec = store.get(job_id)
        return rec is not None and self.may_see(rec)

    def check_sees(self, rec: JobRecord | None, job_id: str) -> JobRecord:
        """Another user's job is reported exactly like a missing one, so ids don't leak."""
        if rec is None or not self.may_see(rec):
            raise NotFound(f"no job {job_id}")
        return rec


def _groups_of(name: str, uid: int) -> set[str]:
    try:
        gid = pwd.getpwuid(uid).pw_gid
        return {grp.getgrgid(g).gr_name for g in os.getgrouplist(name, gid)}
    except (KeyError, OSError):
        return set()


def identify(uid: int | None, settings: Settings) -> Caller:
    if uid is None:
        raise NotAuthenticated("this listener cannot tell who is calling")
    name = user_name(uid)
    admin = uid in (0, os.geteuid()) or name in settings.admins
    if admin or name in settings.allowed_users:
        return Caller(uid, name, admin)
    if settings.allowed_groups and _groups_of(name, uid) & set(settings.allowed_groups):
        return Caller(uid, name, False)
    raise NotAllowed(f"user {name!r} may not use this runspace daemon; ask an admin to add you to allowed_users")
