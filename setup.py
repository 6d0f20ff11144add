"""Builds the native command-job shim (supervisor/runner/shim.c) into the package.

Everything else is declared in pyproject.toml. The shim is a plain executable, not a Python
extension; where no C compiler is found the build goes on without it and command jobs use the
Python relay (supervisor/command.py), which behaves the same with ~3 MB more memory per job.
"""

import os
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import LinkError

SHIM = "supervisor.runner.runspace-shim"


class BuildShim(build_ext):
    def get_ext_filename(self, fullname: str) -> str:
        # Asked with the full name and with its last part alone; an executable takes no
        # `.cpython-311-x86_64-linux-gnu.so` suffix.
        if fullname.rsplit(".", 1)[-1] == "runspace-shim":
            return os.path.join(*fullname.split("."))
        return super().get_ext_filename(fullname)

    def build_extension(self, ext: Extension) -> None:
        if ext.name != SHIM:
            return super().build_extension(ext)
        target = Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)  # never ship a binary of an older shim.c
        try:
            objects = self.compiler.compile(ext.sources, output_dir=self.build_temp, extra_postargs=["-O2"])
            self._link(objects, target)
            # Unreadable to others: exec of a binary its user cannot read leaves the process
            # non-dumpable from the start, so no process of a job's user can take the fds it
            # holds (shim.c also says so itself, first thing). A wheel installer may reset it.
            target.chmod(0o711)
        except Exception as exc:  # CompileError, LinkError, or no compiler at all
            print(f"warning: runspace-shim not built ({exc}); command jobs will use the Python relay")

    def _link(self, objects: list[str], target: Path) -> None:
        """Static where the C library allows: a shim starts per command job, and the dynamic
        loader's work was a third of its exec's CPU (0.63 → 0.44 ms) and most of its private
        memory (PSS 108 → 65 KiB per running shim), measured here (bench/README.md)."""
        try:
            self.compiler.link_executable(objects, target.name, output_dir=str(target.parent), extra_postargs=["-static"])
        except LinkError:  # no static libc (libc6-dev ships one; other C libraries may not)
            self.compiler.link_executable(objects, target.name, output_dir=str(target.parent))


setup(
    ext_modules=[Extension(SHIM, sources=["supervisor/runner/shim.c"], optional=True)],
    cmdclass={"build_ext": BuildShim},
)
