"""The source of a job module as checked: read once, hashed, and compiled by every importer.

The daemon, the import probe, the fork server and a freshly spawned job each compile the
bytes they were given or read, never a `__pycache__` file (which a non-admin could plant
next to a trusted source), and a process that reads the file again refuses it, naming the
file, when its hash is not the one the trust check saw.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.util
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from supervisor.errors import RunspaceError


class ModuleChanged(RunspaceError):
    title, slug = "Job module changed", "module-changed"


@dataclass(frozen=True)
class ModuleSource:
    path: Path
    source: bytes
    sha256: str

    @classmethod
    def of(cls, path: Path, source: bytes) -> ModuleSource:
        return cls(path, source, hashlib.sha256(source).hexdigest())


def read_regular(fd: int, path: Path) -> bytes:
    """All of an open file, which must be a regular file (a FIFO would block the reader)."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise ModuleChanged(f"{path} is not a regular file")
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def open_module(path: Path) -> int:
    # O_NONBLOCK: opening a FIFO put in place of the module must not wait for a writer.
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)


def read_source(path: Path) -> ModuleSource:
    """A module read without a trust check (`runspace run`: the caller's own code, as the caller)."""
    fd = open_module(path)
    try:
        return ModuleSource.of(path, read_regular(fd, path))
    finally:
        os.close(fd)


def read_verified(path: Path, sha256: str | None) -> ModuleSource:
    """The module as it is now, refused when it is not what the trust check saw."""
    found = read_source(path)
    if sha256 is not None and found.sha256 != sha256:
        raise ModuleChanged(f"{path} changed since the daemon checked it (sha256 {found.sha256[:12]}…, "
                            f"checked {sha256[:12]}…); it is not run until the daemon reloads (SIGHUP)")
    return found


class _SourceLoader(importlib.abc.InspectLoader):
    """Executes the given bytes: no bytecode cache is read or written."""

    def __init__(self, module: ModuleSource) -> None:
        self._module = module

    def get_source(self, fullname: str) -> str:  # tracebacks and inspect show what ran
        return self._module.source.decode("utf-8", "replace")

    def exec_module(self, module: ModuleType) -> None:
        code = compile(self._module.source, str(self._module.path), "exec", dont_inherit=True)
        exec(code, module.__dict__)


def module_name(path: Path) -> str:
    return "runspace_jobs." + "_".join(path.with_suffix("").parts[1:]).replace("-", "_").replace(".", "_")


def import_source(module: ModuleSource, reuse: bool = False) -> ModuleType:
    """Import the given source under a name unique to its path.

    `reuse` returns the module already imported from that very source (a job forked from the
    pre-warmed fork server); the daemon always re-imports, so SIGHUP sees new code.
    """
    name = module_name(module.path)
    loaded = sys.modules.get(name)
    if reuse and loaded is not None and getattr(loaded, "__runspace_sha256__", None) == module.sha256:
        return loaded
    spec = importlib.util.spec_from_loader(name, _SourceLoader(module), origin=str(module.path))
    assert spec is not None
    spec.has_location = True  # __file__ is set: modules may find files next to themselves
    imported = importlib.util.module_from_spec(spec)
    imported.__runspace_sha256__ = module.sha256  # type: ignore[attr-defined]
    sys.modules[name] = imported
    try:
        spec.loader.exec_module(imported)  # type: ignore[union-attr]
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return imported
