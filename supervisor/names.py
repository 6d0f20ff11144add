"""User names of uids; its own module because the CLI needs one and must not import the daemon's auth."""

from __future__ import annotations

import pwd


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
