"""The functions RQ workers run in the peer benchmarks (same work as bench/jobs/benchjobs.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

TREE_SCRIPT = str(Path(__file__).resolve().parent / "tree.py")


def noop() -> None:
    return None


def stamp(path: str) -> None:
    now = time.time()
    Path(path).write_text(repr(now))


def tree(pidfile: str, size: int = 20) -> None:
    subprocess.run([sys.executable, TREE_SCRIPT, pidfile, str(size)], check=False)
