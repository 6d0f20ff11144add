"""What the daemon trusts on disk: job modules and config that only admins can change.

A job module runs with the daemon's privileges when it is imported, so a file (or any
directory above it) that a non-admin can write is a way to root. Like OpenSSH's
StrictModes, every path component is checked for its owner and its write bits.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import RunspaceError


class UntrustedFile(RunspaceError):
    title, slug = "Untrusted file", "untrusted-file"


@dataclass(frozen=True)
class Trust:
    """The users allowed to change what the daemon loads: root, the daemon's user, admins."""

    uids: frozenset[int]

    @classmethod
    def of_admins(cls, admins: Iterable[str]) -> Trust:
        uids = {0, os.geteuid()}
        for name in admins:
            try:
                uids.add(pwd.getpwnam(name).pw_uid)
            except KeyError:
                continue
        return cls(frozenset(uids))

    def check(self, path: Path) -> None:
        """Raise UntrustedFile naming the first component a non-admin could change."""
        for component in _components(path):
            problem = self._problem(component)
            if problem:
                raise UntrustedFile(f"{path}: {problem}; only admins may be able to change what the daemon loads")

    def check_module(self, path: Path) -> None:
        """A job module, and the bytecode cache Python would load in its place."""
        self.check(path)
        cache = path.parent / "__pycache__"
        if cache.is_dir():
            self.check(cache)

    def _problem(self, path: Path) -> str | None:
        st = os.lstat(path)
        if st.st_uid not in self.uids:
            return f"{path} is owned by {_user(st.st_uid)}, who is not an admin"
        if stat.S_ISLNK(st.st_mode):
            return None  # a symlink's own mode means nothing; its target is checked too
        # In a sticky directory others may add entries but not replace ours (like /tmp).
        sticky_dir = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
        if st.st_mode & stat.S_IWOTH and not sticky_dir:
            return f"{path} is writable by every user (mode {stat.S_IMODE(st.st_mode):04o})"
        if st.st_mode & stat.S_IWGRP and not sticky_dir:
            outsider = self._outsider_in_group(st.st_gid)
            if outsider is not None:
                return (f"{path} is writable by group {_group(st.st_gid)} "
                        f"(mode {stat.S_IMODE(st.st_mode):04o}), which includes non-admin {outsider}")
        return None

    def _outsider_in_group(self, gid: int) -> str | None:
        members: set[str] = set()
        try:
            members.update(grp.getgrgid(gid).gr_mem)
        except KeyError:
            return f"(unknown group {gid})"
        members.update(pw.pw_name for pw in pwd.getpwall() if pw.pw_gid == gid)
        for name in sorted(members):
            try:
                if pwd.getpwnam(name).pw_uid not in self.uids:
                    return name
            except KeyError:
                continue
        return None


def _components(path: Path) -> list[Path]:
    """The path as given and as resolved, each with every directory above it."""
    seen: dict[Path, None] = {}
    for p in (path.absolute(), path.resolve()):
        for component in (p, *p.parents):
            seen.setdefault(component)
    return list(seen)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return f"gid {gid}"
