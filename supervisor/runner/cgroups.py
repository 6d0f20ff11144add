"""Per-job cgroup v2 directories, used where a writable (delegated) cgroup v2 tree exists."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from pathlib import Path


def _cgroup2_mount() -> Path | None:
    with open("/proc/self/mounts") as f:
        for line in f:
            _, mountpoint, fstype, *_ = line.split()
            if fstype == "cgroup2":
                return Path(mountpoint)
    return None


def _own_cgroup(pid: int | str = "self") -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip()
    return "/"


def process_cgroup(pid: int, root: Path) -> Path | None:
    """The cgroup v2 of a live process, if it is one of ours (under `root`)."""
    mount = _cgroup2_mount()
    try:
        path = mount / _own_cgroup(pid).lstrip("/") if mount else None
    except OSError:
        return None
    return path if path is not None and path.parent == root else None


def cgroup_root_name(state_dir: Path) -> str:
    """Named after the state dir, so a restarted daemon finds the cgroups of the jobs it re-adopts."""
    return "runspace-" + hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:10]


def cgroup_root_path(name: str) -> Path | None:
    """`<our cgroup>/<name>`, made or not; None without a cgroup2 mount."""
    mount = _cgroup2_mount()
    return mount / _own_cgroup().lstrip("/") / name if mount is not None else None


def detect_cgroup_root(name: str) -> Path | None:
    """`<our cgroup>/<name>` when we may create cgroups there and cgroup.kill exists (Linux ≥ 5.14)."""
    root = cgroup_root_path(name)
    if root is None:
        return None
    try:
        root.mkdir(exist_ok=True)
    except OSError:
        return None
    return root if (root / "cgroup.kill").exists() and os.access(root / "cgroup.procs", os.W_OK) else None


class JobCgroups:
    """One cgroup per job under `root`: named after the job when the daemon creates it for a
    posix_spawned job, after the fork server when it made it (runner/spares.py)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self, job_id: str) -> Path:
        path = self.root / job_id
        path.mkdir(exist_ok=True)
        return path

    def remove(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            path.rmdir()

    def all(self) -> list[Path]:
        with contextlib.suppress(OSError):
            return [p for p in self.root.iterdir() if p.is_dir()]
        return []

    def close(self) -> None:
        """Remove empty job cgroups, then our root if it is empty; cgroups of running jobs stay
        (rmdir refuses populated ones) so the next daemon finds them when it re-adopts."""
        for path in self.all():
            self.remove(path)
        with contextlib.suppress(OSError):
            self.root.rmdir()


def _gone(exc: OSError) -> bool:
    """ENODEV: the cgroup was removed while we had its file open (ENOENT: before)."""
    return exc.errno in (errno.ENOENT, errno.ENODEV)


def cgroup_pids(cgroup: Path) -> list[int]:
    try:
        return [int(line) for line in (cgroup / "cgroup.procs").read_text().split()]
    except OSError as exc:
        if _gone(exc):
            return []
        raise


def cgroup_kill(cgroup: Path) -> None:
    try:
        (cgroup / "cgroup.kill").write_text("1")
    except OSError as exc:
        if not _gone(exc):
            raise
