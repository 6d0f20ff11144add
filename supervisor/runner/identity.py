"""Who a job runs as: dropping root to the requestor (or a type's run_as user)."""

from __future__ import annotations

import os


def drop_privileges(uid: int | None, gid: int | None, name: str | None) -> None:
    """Called in the job process before any job code runs; no-op when not root or not asked."""
    if uid is None or os.geteuid() != 0 or uid == 0:
        return
    assert gid is not None and name is not None
    os.setgid(gid)
    os.initgroups(name, gid)
    os.setuid(uid)
