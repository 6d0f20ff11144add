"""An installed runspace (the package without this checkout's jobs/): the installed job module
directory is loaded, the daemon says where it looked when it finds no job types, and a root
daemon makes runspace-shim mode 0711 whatever mode the installer left."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, wait_until

HELLO = '''
from pydantic import BaseModel

from supervisor import JobContext, job


class Nothing(BaseModel):
    pass


@job()
def hello(params: Nothing, ctx: JobContext) -> str:
    return "hello from the installed dir"
'''


@pytest.fixture
def installed() -> Iterator[Path]:
    """A copy of the package as pip installs it (no jobs/ beside it), in a directory trusted like
    the checkout (a module under sticky /tmp would be refused)."""
    site = ROOT / f".test-install-{uuid.uuid4().hex[:8]}"
    shutil.copytree(ROOT / "supervisor", site / "supervisor", ignore=shutil.ignore_patterns("__pycache__"))
    (site / "jobs.d").mkdir()
    yield site
    shutil.rmtree(site, ignore_errors=True)


def test_an_install_without_jobs_says_where_it_looked_then_loads_its_jobs_dir(installed: Path, make_daemon) -> None:
    shim = installed / "supervisor" / "runner" / "runspace-shim"
    if shim.exists():
        os.chmod(shim, 0o755)  # what a wheel installer leaves
    d = make_daemon(PYTHONPATH=str(installed), RUNSPACE_JOBS_PATH="", RUNSPACE_JOBS_DIR=str(installed / "jobs.d"))
    log = d.log()
    assert "no job types found besides the built-in ones; looked in" in log
    assert str(installed / "jobs.d") in log.split("no job types found")[1].splitlines()[0]
    assert [t["name"] for t in d.client.job_types()["items"]] == ["exec"]
    if shim.exists() and os.geteuid() == 0 and "reinstall runspace to rebuild it" not in log:  # a current build
        assert stat.S_IMODE(shim.stat().st_mode) == 0o711
        assert "mode 755 -> 0711" in log
    module = installed / "jobs.d" / "hello.py"
    module.write_text(HELLO)
    os.chmod(module, 0o644)
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "hello" in [t["name"] for t in d.client.job_types()["items"]], timeout=30,
               what="the installed dir's job type after SIGHUP")
    assert d.wait(d.submit("hello")["id"])["result"] == "hello from the installed dir"


def test_the_installed_jobs_dir_is_in_etc_as_root_and_in_the_users_config_otherwise(tmp_path: Path) -> None:
    code = ("import supervisor.settings as s; s.is_root = lambda: {root}; "
            "print(s.Settings().jobs_dir, s.Settings().job_dirs[2])")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    env.pop("RUNSPACE_JOBS_DIR", None)
    user = subprocess.run([sys.executable, "-c", code.format(root=False)], env=env, capture_output=True, text=True)
    assert user.stdout.split() == [str(tmp_path / "cfg/runspace/jobs")] * 2, user.stderr
    root = subprocess.run([sys.executable, "-c", code.format(root=True)], env=env, capture_output=True, text=True)
    assert root.stdout.split() == ["/etc/runspace/jobs"] * 2, root.stderr
