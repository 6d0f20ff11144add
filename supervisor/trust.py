"""What the daemon trusts on disk: job modules and config that only admins can change.

A job module runs with the daemon's privileges when it is imported, so a file (or any
directory above it) that a non-admin can write is a way to root. Like OpenSSH's
StrictModes, every path component is checked for its owner, its write bits and its POSIX
ACL; the source of a module is read once, from the very file checked (supervisor/jobsource.py).
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import RunspaceError
from supervisor.jobsource import ModuleSource, open_module, read_regular

# The kernel's binary form of an access ACL (linux/posix_acl_xattr.h): a version word, then
# (tag, permissions, uid or gid) entries.
_ACL_XATTR = "system.posix_acl_access"
_ACL_HEADER, _ACL_ENTRY = struct.Struct("<I"), struct.Struct("<HHI")
_ACL_USER, _ACL_GROUP, _ACL_MASK = 0x02, 0x08, 0x10
_ACL_WRITE = 0x02


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
        # The file's own directory may not even be sticky: there a non-admin could add a
        # `__pycache__`, or a module of their own, next to ours.
        homes = {path.absolute().parent, path.resolve().parent}
        for component in _components(path):
            self._refuse_if(path, self._problem(component, os.lstat(component), sticky_ok=component not in homes))

    def check_module(self, path: Path) -> ModuleSource:
        """The module's source, read from the very file that passed the check (not by name
        again, which could lead elsewhere by then). Never its bytecode cache: importers
        compile this source (supervisor/jobsource.py)."""
        self.check(path)
        fd = open_module(path)
        try:
            self._refuse_if(path, self._problem(path.resolve(), os.fstat(fd), sticky_ok=False, fd=fd))
            return ModuleSource.of(path, read_regular(fd, path))
        finally:
            os.close(fd)

    @staticmethod
    def _refuse_if(path: Path, problem: str | None) -> None:
        if problem:
            raise UntrustedFile(f"{path}: {problem}; only admins may be able to change what the daemon loads")

    def _problem(self, path: Path, st: os.stat_result, sticky_ok: bool, fd: int | None = None) -> str | None:
        if st.st_uid not in self.uids:
            return f"{path} is owned by {_user(st.st_uid)}, who is not an admin"
        if stat.S_ISLNK(st.st_mode):
            return None  # a symlink's own mode means nothing; its target is checked too
        # In a sticky directory others may add entries but not replace ours (like /tmp); fine
        # above a module's own directory, not as that directory.
        sticky_dir = sticky_ok and stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
        if st.st_mode & stat.S_IWOTH and not sticky_dir:
            return f"{path} is writable by every user (mode {stat.S_IMODE(st.st_mode):04o})"
        if st.st_mode & stat.S_IWGRP and not sticky_dir:
            outsider = self._outsider_in_group(st.st_gid)
            if outsider is not None:
                return (f"{path} is writable by group {_group(st.st_gid)} "
                        f"(mode {stat.S_IMODE(st.st_mode):04o}), which includes non-admin {outsider}")
        return None if sticky_dir else self._acl_problem(path, fd if fd is not None else path)

    def _acl_problem(self, path: Path, target: Path | int) -> str | None:
        """A named user or group that the POSIX ACL lets write (the mode bits do not show it)."""
        entries = _acl_entries(target)
        mask = next((perm for tag, perm, _ in entries if tag == _ACL_MASK), _ACL_WRITE)
        for tag, perm, qualifier in entries:
            if not perm & mask & _ACL_WRITE:
                continue
            if tag == _ACL_USER and qualifier not in self.uids:
                return f"{path} has an ACL entry letting {_user(qualifier)}, who is not an admin, write to it"
            if tag == _ACL_GROUP and (outsider := self._outsider_in_group(qualifier)) is not None:
                return (f"{path} has an ACL entry letting group {_group(qualifier)} write to it, "
                        f"which includes non-admin {outsider}")
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


def _acl_entries(target: Path | int) -> list[tuple[int, int, int]]:
    """(tag, permissions, id) of each entry of the access ACL; [] when it has none."""
    try:
        data = os.getxattr(target, _ACL_XATTR)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return []  # only the mode bits, or a file system without ACLs
        raise
    if len(data) < _ACL_HEADER.size or (len(data) - _ACL_HEADER.size) % _ACL_ENTRY.size:
        raise OSError(errno.EINVAL, f"unreadable POSIX ACL on {target}")
    return [entry for entry in _ACL_ENTRY.iter_unpack(data[_ACL_HEADER.size:])]


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
