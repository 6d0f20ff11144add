"""The daemon's file descriptors at start (daemon process): a soft limit as high as allowed,
and nothing inherited but stdin, stdout, stderr and systemd's listening sockets."""

from __future__ import annotations

import os
import resource

from supervisor.systemd import SD_LISTEN_FDS_START


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit: connections and log files of many users need
    descriptors, and the unit's LimitNOFILE is the real bound. Returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def close_inherited_fds() -> list[int]:
    """Close every descriptor a parent left open (a root pipe would reach every job through the
    fork server), except 0-2 and the sockets systemd passes (LISTEN_FDS, when meant for us)."""
    keep = {0, 1, 2}
    if os.environ.get("LISTEN_PID") == str(os.getpid()):
        count = int(os.environ.get("LISTEN_FDS", "0") or 0)
        keep.update(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))
    closed = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in keep:
            continue
        try:
            os.fstat(fd)  # listdir's own descriptor is gone by now
        except OSError:
            continue
        os.close(fd)
        closed.append(fd)
    return closed
