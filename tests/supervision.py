"""Helpers shared by the supervision tests: tree-tracking modes, pid files, process checks."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from supervisor.runner.cgroups import detect_cgroup_root
from tests.conftest import DaemonProcess


def writable_cgroup2() -> bool:
    """What the daemon's auto-detection will find: a cgroup v2 we may create children in, with cgroup.kill."""
    root = detect_cgroup_root(f"runspace-probe-{uuid.uuid4().hex[:8]}")
    if root is None:
        return False
    root.rmdir()
    return True


@pytest.fixture(params=["cgroup", "scan"])
def tree_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Daemon env for each tree-tracking path: per-job cgroup v2, or session/pgid + marker sweep."""
    if request.param == "cgroup":
        if not writable_cgroup2():
            pytest.skip("no writable cgroup v2 with cgroup.kill on this machine (needs Delegate=yes or root)")
        return {"RUNSPACE_CGROUPS": "true"}
    return {"RUNSPACE_CGROUPS": "false"}


def assert_tree_mode(d: DaemonProcess, env: dict[str, str]) -> None:
    """The daemon really uses the path the test asked for (its start-up line says which)."""
    line = next(line for line in d.log().splitlines() if "listening on" in line)
    assert ("(cgroups: off)" in line) == (env["RUNSPACE_CGROUPS"] == "false"), line


def read_pids(path: Path) -> list[int]:
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def alive_of(pids: list[int]) -> list[int]:
    return [pid for pid in pids if alive(pid)]


def ledger_ids(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def db_exec(d: DaemonProcess, sql: str, *args: Any) -> list[tuple]:
    """Edit the store directly, as a crash or an operator could leave it (daemon must be down)."""
    with sqlite3.connect(d.state_dir / "runspace.db") as db:
        rows = db.execute(sql, args).fetchall()
    return rows
