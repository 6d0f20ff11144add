"""Integrity of job code (CONTRACT §9): what runs is exactly what passed the trust check, and
importing a job module can neither hang nor end the daemon.

The attacks come from issue 17: a module made writable and rewritten after it was loaded (run
on reload, or by a job too big for a spare's pipe), a POSIX ACL the mode bits do not show, a
sticky world-writable job directory, a planted `__pycache__`; and modules that block or exit
at import.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from supervisor.errors import NotFound
from supervisor.import_probe import probe
from supervisor.jobsource import ModuleChanged
from supervisor.registry import load_job_type, preload_job_types
from supervisor.runner.files import ENV_MARKER, MARKER_PLACEHOLDER
from supervisor.trust import Trust
from tests.conftest import TEST_JOBS, DaemonProcess, wait_until
from tests.users import LocalUsers, users  # noqa: F401  (the fixture)

_JOB = '''
import os
from pathlib import Path
from pydantic import BaseModel
from supervisor import job

{at_import}

class P(BaseModel):
    blob: str = ""

@job()
def {name}(params: P, ctx) -> str:
    return {result!r}
'''
# What a hostile rewrite does at import: leave proof that it ran, and as whom.
_PWN = 'Path({proof!r}).write_text(str(os.getuid()))'
_OVER_A_PIPE = "x" * (1 << 20 | 4096)  # a param over 1 MiB: the job no longer fits a spare's pipe


def _write(path: Path, name: str, result: str, at_import: str = "", mode: int = 0o644) -> Path:
    path.write_text(_JOB.format(name=name, result=result, at_import=at_import))
    os.chmod(path, mode)
    return path


def _jobs_dir(tmp_path: Path, mode: int = 0o755, name: str = "extra_jobs") -> Path:
    jobs = tmp_path / name
    jobs.mkdir()
    os.chmod(jobs, mode)
    return jobs


def _types(d: DaemonProcess) -> set[str]:
    return {t["name"] for t in d.client.job_types()["items"]}


def _broken(d: DaemonProcess) -> dict[str, str]:
    return {Path(b["module"]).name: b["error"] for b in d.client.job_types()["broken"]}


def _reload(d: DaemonProcess) -> None:
    reloads = d.log().count("job definitions reloaded")
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: d.log().count("job definitions reloaded") > reloads, timeout=30, what="the reload")


def _fork_server_ready(d: DaemonProcess) -> None:
    wait_until(lambda: d.client.request("GET", "/healthz").json()["fork_server"] == "ready", timeout=30,
               what="the fork server to warm up")


# -- 1, 2: a module changed after the check --------------------------------------------


def test_reload_drops_the_types_of_a_module_that_now_fails_the_check(tmp_path: Path, make_daemon) -> None:
    jobs = _jobs_dir(tmp_path)
    module = _write(jobs / "mod.py", "integrity_one", "checked")
    d = make_daemon(RUNSPACE_JOBS_PATH=f"{TEST_JOBS}:{jobs}")
    assert "integrity_one" in _types(d)

    proof = tmp_path / "pwned"
    os.chmod(module, 0o666)  # now anyone may rewrite it
    _write(module, "integrity_one", "rewritten", _PWN.format(proof=str(proof)), mode=0o666)
    _reload(d)
    assert "integrity_one" not in _types(d), "a refused module must lose its types at once"
    assert "writable by every user" in _broken(d)["mod.py"]
    _fork_server_ready(d)  # the new fork server is up: it imported what the daemon trusted, only
    assert not proof.exists(), "nothing may import a refused module: not the daemon, not the fork server"
    with pytest.raises(NotFound):
        d.client.submit("integrity_one", {})


def test_a_job_runs_the_checked_source_or_refuses_the_changed_file(tmp_path: Path, make_daemon) -> None:
    jobs = _jobs_dir(tmp_path)
    module = _write(jobs / "mod.py", "integrity_two", "checked")
    d = make_daemon(RUNSPACE_JOBS_PATH=f"{TEST_JOBS}:{jobs}")
    _fork_server_ready(d)

    proof = tmp_path / "pwned"
    os.chmod(module, 0o666)
    _write(module, "integrity_two", "rewritten", _PWN.format(proof=str(proof)), mode=0o666)
    # Forked from the fork server, which compiled the checked source: that is what runs.
    assert d.submit("integrity_two", {}, wait=30)["result"] == "checked"
    # Too big for a spare: a freshly spawned process imports the module, and must refuse the file.
    big = d.wait(d.submit("integrity_two", {"blob": _OVER_A_PIPE})["id"], timeout=60)
    assert big["state"] == "failed", big
    assert big["error"]["type"] == "ModuleChanged" and str(module) in big["error"]["message"]
    assert "changed since the daemon checked it" in big["error"]["message"]
    assert not proof.exists(), "the rewritten module ran"


def test_every_importer_refuses_a_source_changed_since_the_check(tmp_path: Path) -> None:
    """The fork server's preload, a job's own import and the import probe each get the hash
    the check saw, and name the file when it no longer matches."""
    module = _write(tmp_path / "unit.py", "integrity_unit", "checked")
    checked = Trust.of_admins([]).check_module(module)
    assert b"checked" in checked.source
    _write(module, "integrity_unit", "changed")
    for importer in (lambda: preload_job_types(module, checked.sha256),
                     lambda: load_job_type(module, "integrity_unit", checked.sha256)):
        with pytest.raises(ModuleChanged, match=f"{module} changed since the daemon checked it"):
            importer()
    [report] = probe([(module, checked.sha256)], timeout=30)
    assert report["error"].startswith("ModuleChanged") and str(module) in report["error"]


# -- 3, 4: ACLs, a sticky job directory, bytecode caches -------------------------------


def _setfacl(*args: str) -> None:
    if not shutil.which("setfacl"):
        pytest.skip("setfacl is not installed (scripts/setup installs the acl package as root)")
    done = subprocess.run(["setfacl", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"this file system takes no POSIX ACLs: {done.stderr.strip()}")


def test_a_posix_acl_letting_a_non_admin_write_is_refused(users: LocalUsers, tmp_path: Path,  # noqa: F811
                                                          make_daemon) -> None:
    jobs = _jobs_dir(tmp_path)
    _write(jobs / "acl_file.py", "acl_file", "x")
    _write(jobs / "acl_read.py", "acl_read", "x")
    _write(jobs / "acl_masked.py", "acl_masked", "x")
    _setfacl("-m", f"u:{users.bob.name}:rw", str(jobs / "acl_file.py"))
    _setfacl("-m", f"u:{users.bob.name}:r", str(jobs / "acl_read.py"))  # may read: harmless
    _setfacl("-m", f"u:{users.bob.name}:rw,m::r", str(jobs / "acl_masked.py"))  # the mask takes the w away
    sub = _jobs_dir(tmp_path, name="acl_dir_jobs")
    _write(sub / "acl_dir.py", "acl_dir", "x")
    _setfacl("-m", f"g:{users.group}:rwx", str(sub))
    d = make_daemon(RUNSPACE_JOBS_PATH=f"{TEST_JOBS}:{jobs}:{sub}")

    broken = _broken(d)
    assert f"ACL entry letting {users.bob.name}" in broken["acl_file.py"], broken
    assert f"group {users.group}" in broken["acl_dir.py"] and str(sub) in broken["acl_dir.py"], broken
    assert {"acl_read", "acl_masked"} <= _types(d) and not {"acl_file", "acl_dir"} & _types(d)


def test_a_sticky_world_writable_job_directory_is_refused(tmp_path: Path, make_daemon) -> None:
    jobs = _jobs_dir(tmp_path, mode=0o1777)
    _write(jobs / "sticky.py", "integrity_sticky", "x")
    d = make_daemon(RUNSPACE_JOBS_PATH=f"{TEST_JOBS}:{jobs}")
    assert "integrity_sticky" not in _types(d)
    assert f"{jobs} is writable by every user (mode 1777)" in _broken(d)["sticky.py"]


def test_a_planted_bytecode_cache_is_never_run(tmp_path: Path, make_daemon) -> None:
    """A `.pyc` whose header matches the source's mtime and size is what plain `import`
    would run; every importer must compile the checked source instead."""
    jobs = _jobs_dir(tmp_path)
    module = _write(jobs / "cached.py", "integrity_cached", "source")
    evil = _JOB.format(name="integrity_cached", result="bytecode", at_import="")
    st = module.stat()
    pyc = Path(importlib.util.cache_from_source(str(module)))
    pyc.parent.mkdir()
    code = compile(evil, str(module), "exec")
    pyc.write_bytes(importlib._bootstrap_external._code_to_timestamp_pyc(code, st.st_mtime, st.st_size))  # type: ignore[attr-defined]
    d = make_daemon(RUNSPACE_JOBS_PATH=f"{TEST_JOBS}:{jobs}")
    _fork_server_ready(d)
    assert d.submit("integrity_cached", {}, wait=30)["result"] == "source"  # forked
    assert d.wait(d.submit("integrity_cached", {"blob": _OVER_A_PIPE})["id"], timeout=60)["result"] == "source"


# -- 12: imports that block, exit or crash ----------------------------------------------

_BLOCKS = "import time\nwhile True:\n    time.sleep(0.1)\n"
_EXITS = "import os\nos._exit(3)\n"


def test_modules_that_block_or_exit_at_import_are_reported_and_the_rest_serve(tmp_path: Path,
                                                                               make_daemon) -> None:
    jobs = _jobs_dir(tmp_path)
    (jobs / "blocks.py").write_text(_BLOCKS)
    (jobs / "exits.py").write_text(_EXITS)
    (jobs / "crashes.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    _write(jobs / "fine.py", "integrity_fine", "fine")
    started = time.monotonic()
    d = make_daemon(RUNSPACE_JOBS_PATH=f"{TEST_JOBS}:{jobs}", RUNSPACE_IMPORT_TIMEOUT="2")
    assert time.monotonic() - started < 20, "one slow module may cost the start-up its timeout, no more"
    broken = _broken(d)
    assert "ImportTimeout" in broken["blocks.py"] and "within 2 s" in broken["blocks.py"], broken
    assert "ImportExit" in broken["exits.py"] and "exit code 3" in broken["exits.py"], broken
    assert "ImportCrash" in broken["crashes.py"] and "SIGSEGV" in broken["crashes.py"], broken
    assert "blocks.py" in d.log() and "exits.py" in d.log()
    assert d.submit("integrity_fine", {}, wait=30)["result"] == "fine"
    assert d.submit("echo", {"value": 1}, wait=30)["result"]["value"] == 1


def test_a_reload_meeting_a_module_that_blocks_or_exits_keeps_the_daemon(tmp_path: Path, make_daemon) -> None:
    jobs = _jobs_dir(tmp_path)
    _write(jobs / "fine.py", "integrity_fine", "fine")
    d = make_daemon(RUNSPACE_JOBS_PATH=f"{TEST_JOBS}:{jobs}", RUNSPACE_IMPORT_TIMEOUT="2")
    (jobs / "exits.py").write_text(_EXITS)
    _reload(d)
    assert d.proc is not None and d.proc.poll() is None, "a module's os._exit() ended the daemon"
    assert "exit code 3" in _broken(d)["exits.py"] and "integrity_fine" in _types(d)

    (jobs / "blocks.py").write_text(_BLOCKS)
    d.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "importing did not finish" in d.log(), timeout=30, what="the blocking module reported")
    assert d.submit("integrity_fine", {}, wait=30)["result"] == "fine"
    # SIGTERM is heard even while a reload waits on a module that blocks.
    d.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: _probing(d), timeout=15, interval=0.01, what="the reload's import probe to run")
    t0 = time.monotonic()
    assert d.stop(timeout=10) == 0 and time.monotonic() - t0 < 5


def _probing(d: DaemonProcess) -> bool:
    """A reload is under way: the daemon's import probe runs (it needs 2 s to give up on blocks.py)."""
    assert d.proc is not None
    try:
        return any("supervisor.import_probe" in " ".join(child.cmdline())
                   for child in psutil.Process(d.proc.pid).children())
    except psutil.Error:
        return False


def test_a_fork_server_that_dies_or_blocks_importing_leaves_jobs_running(tmp_path: Path, make_daemon) -> None:
    """A module may behave otherwise in the fork server than in the probe (here: it reads the
    fork server's marker placeholder). Its jobs then start another way; nothing is left behind."""
    for behaviour, code in (("dies", "os._exit(3)"), ("blocks", "import time\n    while True: time.sleep(0.1)")):
        jobs = _jobs_dir(tmp_path, name=f"{behaviour}_jobs")
        at_import = f"if os.environ.get({ENV_MARKER!r}) == {MARKER_PLACEHOLDER!r}:\n    {code}"
        _write(jobs / "moody.py", "integrity_moody", behaviour, at_import)
        d = make_daemon(RUNSPACE_JOBS_PATH=f"{TEST_JOBS}:{jobs}", RUNSPACE_IMPORT_TIMEOUT="2")
        assert d.submit("integrity_moody", {}, wait=30)["result"] == behaviour
        assert d.submit("echo", {"value": 2}, wait=30)["result"]["value"] == 2
        assert d.stop() == 0  # make_daemon's leak check: no fork server stuck in its import outlives this

