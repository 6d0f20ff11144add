"""User names of uids, and who is an admin by name: light (pwd only), for the CLI and job processes,
which must not import the daemon's auth and settings."""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def admin_names(admins: Iterable[str]) -> frozenset[str]:
    """Who is an admin, by name: root, the daemon's own user, and those the `admins` setting names."""
    return frozenset({user_name(0), user_name(os.geteuid()), *admins})
