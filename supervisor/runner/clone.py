"""fork() straight into a job's cgroup: clone3(CLONE_INTO_CGROUP), as os.fork() does it otherwise.

Moving a running process into a cgroup (writing cgroup.procs) makes the kernel wait for an
RCU grace period: ~12 ms per idle job start here, more than everything else a start costs.
A child created inside its cgroup pays nothing (Linux ≥ 5.7). Python has no clone3, so this
calls the syscall through ctypes, wrapped in the interpreter's own before/after-fork hooks,
which is what os.fork() does around fork(). PyDLL keeps the GIL held across the call, so the
child resumes as the only thread, holding it. glibc ≥ 2.34 reads the real tid for raise()
and abort(), so its stale cached tid in the child does not matter.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import signal
from pathlib import Path

_CLONE_INTO_CGROUP = 0x200000000
_SYS_CLONE3 = {"x86_64": 435, "aarch64": 435}.get(platform.machine())


def _glibc_reads_real_tid() -> bool:
    """Older glibc (and other libcs) may signal the parent from raise() in a raw-cloned child."""
    name, version = platform.libc_ver()
    try:
        return name == "glibc" and tuple(map(int, version.split(".")[:2])) >= (2, 34)
    except ValueError:
        return False

# Errors that mean "this kernel or this cgroup cannot do it": fall back to fork + cgroup.procs.
_UNSUPPORTED = {errno.ENOSYS, errno.E2BIG, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES, errno.EBUSY}


class _CloneArgs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size",
        "tls", "set_tid", "set_tid_size", "cgroup")]


class CgroupFork:
    def __init__(self) -> None:
        self._libc = ctypes.PyDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long
        self.supported = _SYS_CLONE3 is not None and _glibc_reads_real_tid()

    def fork(self, cgroup: Path | None) -> tuple[int, bool]:
        """(pid, placed): like os.fork(); `placed` says the child already is in `cgroup`."""
        # A raw clone skips glibc's fork handlers (malloc and other locks): safe only while
        # this process has a single thread, which a job module's import could change.
        if cgroup is not None and self.supported and len(os.listdir("/proc/self/task")) == 1:
            try:
                fd = os.open(cgroup, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                return os.fork(), False
            try:
                return self._clone_into(fd), True
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED:
                    raise
                self.supported = False  # once refused, always refused: stop asking
            finally:
                os.close(fd)
        return os.fork(), False

    def _clone_into(self, cgroup_fd: int) -> int:
        args = _CloneArgs(flags=_CLONE_INTO_CGROUP, exit_signal=signal.SIGCHLD, cgroup=cgroup_fd)
        api = ctypes.pythonapi
        api.PyOS_BeforeFork()
        pid = self._libc.syscall(_SYS_CLONE3, ctypes.byref(args), ctypes.sizeof(args))
        if pid == 0:
            api.PyOS_AfterFork_Child()
            return 0
        err = ctypes.get_errno()
        api.PyOS_AfterFork_Parent()
        if pid < 0:
            raise OSError(err, os.strerror(err))
        return pid
