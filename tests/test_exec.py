"""`runspace exec` (CONTRACT §14): the caller's command line in the caller's directory, as the
caller, with every supervision rule: timeouts, tree kill, logs, the progress protocol."""

from __future__ import annotations

import json
import os
import pwd
import signal
from pathlib import Path

import psutil
import pytest

from supervisor.errors import NotAllowed
from tests.conftest import DaemonProcess, wait_until
from tests.users import LocalUsers, as_user, multiuser, needs_root, shared_base, users, value  # noqa: F401


def test_exec_runs_in_the_callers_directory_with_the_chosen_environment(daemon: DaemonProcess,
                                                                         tmp_path: Path) -> None:
    work = tmp_path / "checkout"
    work.mkdir()
    script = 'pwd; echo "FOO=$FOO LANG=$LANG"; echo "::progress 1 2 half way"; echo "::log from exec"; exit 0'
    out = daemon.cli("exec", "--cwd", str(work), "--env", "FOO=bar", "--env", "LANG", "--label", "try it",
                     "--wait", "30", "--json", "--", "sh", "-c", script)
    assert out.returncode == 0, out.stdout + out.stderr
    status = json.loads(out.stdout)
    assert status["job"] == "exec" and status["state"] == "succeeded" and status["result"] == {"exit_code": 0}
    assert status["params"]["argv"] == ["sh", "-c", script] and status["params"]["label"] == "try it"
    log = daemon.cli("logs", status["id"]).stdout
    assert str(work) in log and f"FOO=bar LANG={daemon.env.get('LANG', '')}" in log and "::progress" not in log
    assert status["percent_complete"] == 50.0
    user_log = (daemon.log_dir / "users" / f"{status['log_user']}.log").read_text()
    assert f"{status['id']} exec from exec" in user_log
    listed = daemon.cli("list").stdout
    assert "try it" in listed


def test_exec_defaults_to_the_current_directory_and_reports_a_failing_command(daemon: DaemonProcess) -> None:
    out = daemon.cli("exec", "--wait", "30", "--", "sh", "-c", "pwd; exit 3")
    assert out.returncode == 1 and "CommandFailed: sh exited with code 3" in out.stdout, out.stdout + out.stderr
    job_id = out.stdout.split()[0]
    assert str(daemon.base) in daemon.cli("logs", job_id).stdout  # daemon.cli runs in daemon.base
    missing = daemon.cli("exec", "--cwd", "/nonexistent-dir", "--wait", "30", "--", "true")
    assert missing.returncode == 1 and "/nonexistent-dir" in missing.stdout


def test_exec_timeout_kills_the_whole_tree(daemon: DaemonProcess) -> None:
    pidfile = daemon.base / "pids"
    script = f'sleep 60 & echo $! >> {pidfile}; setsid sleep 60 & echo $! >> {pidfile}; echo $$ >> {pidfile}; wait'
    out = daemon.cli("exec", "--timeout", "4", "--wait", "30", "--", "sh", "-c", script)
    assert out.returncode == 124, out.stdout + out.stderr
    assert "timed_out" in out.stdout and "reason: timeout" in out.stdout
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 3
    wait_until(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                               for p in pids), timeout=10, what="every process of the tree to end")


def test_exec_idle_timeout_ends_a_silent_command_as_hung(daemon: DaemonProcess) -> None:
    out = daemon.cli("exec", "--idle-timeout", "2", "--wait", "30", "--json", "--", "sleep", "60")
    assert out.returncode == 124
    assert json.loads(out.stdout)["state"] == "hung"


def test_exec_waits_like_any_job_and_bad_input_is_one_line(daemon: DaemonProcess) -> None:
    first = daemon.submit("sleep", {"seconds": 30})["id"]
    queued = json.loads(daemon.cli("exec", "--after", first, "--json", "--", "true").stdout)
    assert queued["waiting_for"] == f"after {first}"
    unset = daemon.cli("exec", "--env", "RUNSPACE_NOT_SET_ANYWHERE", "--", "true")
    assert unset.returncode == 2 and "RUNSPACE_NOT_SET_ANYWHERE is not set" in unset.stderr
    bad_name = daemon.cli("exec", "--env", "1X=y", "--", "true")
    assert bad_name.returncode == 2 and "env" in bad_name.stderr and "Traceback" not in bad_name.stderr
    assert daemon.cli("exec").returncode == 2


def test_exec_policy_off_refuses_it(make_daemon) -> None:
    d = make_daemon(RUNSPACE_EXEC="off")
    out = d.cli("exec", "--", "true")
    assert out.returncode == 2 and "RUNSPACE_EXEC=off" in out.stderr
    assert d.client.list()["items"] == []


def test_a_daemon_that_is_not_root_takes_exec_only_from_its_own_user(monkeypatch: pytest.MonkeyPatch) -> None:
    from supervisor.exec_policy import check_exec
    from supervisor.settings import Settings

    me = pwd.getpwuid(os.getuid()).pw_name
    other = next(p.pw_name for p in pwd.getpwall() if p.pw_uid not in (0, os.getuid()))
    monkeypatch.setattr(os, "geteuid", lambda: 4242 if os.getuid() == 0 else os.getuid())
    with pytest.raises(NotAllowed, match="cannot run commands as"):
        check_exec(other, Settings())
    if os.getuid() != 0:
        check_exec(me, Settings())


@needs_root
def test_a_root_daemon_runs_exec_as_the_caller_and_only_the_caller_restarts_it(users: LocalUsers,
                                                                                 multiuser) -> None:
    d = multiuser(RUNSPACE_ALLOWED_USERS=f"{users.alice.name},{users.bob.name}")
    ran = as_user(users.alice, d, lambda c: c.submit("exec", {"argv": ["id", "-u"], "cwd": "/"}, wait=30)[1])
    status = ran["value"]
    assert status["state"] == "succeeded" and status["requestor"] == users.alice.name
    assert str(users.alice.uid) in d.client.log(status["id"])
    with pytest.raises(NotAllowed, match="only .* may restart"):
        d.client.restart(status["id"])  # root (an admin) would run alice's command line as root
    again = as_user(users.alice, d, lambda c: c.restart(status["id"]))
    assert again["value"]["restarted_from"] == status["id"]
    admins_only = multiuser(RUNSPACE_ALLOWED_USERS=users.alice.name, RUNSPACE_EXEC="admins")
    refused = as_user(users.alice, admins_only, lambda c: c.submit("exec", {"argv": ["true"]}))
    assert refused["error"] == "NotAllowed" and "RUNSPACE_EXEC=admins" in refused["detail"]


def test_a_command_line_is_bounded_and_refused_at_its_field(daemon: DaemonProcess) -> None:
    """exec is every user's by default and its params are stored and listed with the job (an
    admin's `runspace list` and dashboard read everyone's): a 40 MB argv was taken, so a handful of
    them made the admin's list of 50 jobs a 335 MB answer and the daemon ~1 GB."""
    big = "x" * (129 * 1024)
    cases = {
        "argv": {"argv": ["true", big]},
        "env": {"argv": ["true"], "env": {"BIG": big}},
        "cwd": {"argv": ["true"], "cwd": "/" + "d" * 4095},
    }
    for field, params in cases.items():
        answer = daemon.raw("POST", "/v1/jobs", json={"job": "exec", "params": params})
        assert answer.status_code == 400, (field, answer.status_code)
        assert [e["loc"] for e in answer.json()["errors"]] == [["params", field]], answer.json()
    assert daemon.client.list()["items"] == []  # nothing queued
    cli = daemon.cli("exec", "--", "true", *["y" * 50_000] * 3)  # each within what one exec() takes
    assert cli.returncode == 2 and "argv" in cli.stderr and "Traceback" not in cli.stderr
    fits = daemon.submit("exec", {"argv": ["sh", "-c", 'test ${#1} -eq 100000', "sh", "z" * 100_000],
                                  "env": {"SOME": "v" * 10_000}, "cwd": "/"}, wait=30)
    assert fits["state"] == "succeeded", fits


@needs_root
def test_the_callers_environment_reaches_the_command_not_the_shim_holding_the_user_log(users: LocalUsers,
                                                                                        multiuser) -> None:
    """exec's `env` is the caller's. runspace-shim holds the user log root opened for the job; where
    it is linked dynamically (no static libc), alice's env LD_PRELOAD ran her code inside it: it
    truncated her user log (the admin's lines about her with it) and wrote raw lines there."""
    from supervisor.runner.shim import native_shim

    if native_shim() is None:
        pytest.skip("runspace-shim is not built here: command jobs relay from Python")
    d = multiuser(RUNSPACE_ALLOWED_USERS=users.alice.name)
    # Forked by the fork server, as jobs are once it is up: there the command's env reached the shim.
    wait_until(lambda: d.client.request("GET", "/healthz").json()["fork_server"] == "ready",
               what="the fork server to be ready")
    script = 'echo "probe=$RUNSPACE_EXEC_PROBE"; exec sleep 60'
    params = {"argv": ["sh", "-c", script], "cwd": "/", "env": {"LD_PRELOAD": "", "RUNSPACE_EXEC_PROBE": "chosen"}}
    job = value(as_user(users.alice, d, lambda c: c.submit("exec", params)[1]))
    wait_until(lambda: "probe=chosen" in d.client.log(job["id"]), what="the command to start with its env")
    shim = psutil.Process(d.client.status(job["id"])["pid"])
    assert os.path.basename(shim.exe()) == "runspace-shim" and shim.uids().real == users.alice.uid
    assert "RUNSPACE_EXEC_PROBE" not in shim.environ() and "LD_PRELOAD" not in shim.environ()
    assert [child.environ().get("RUNSPACE_EXEC_PROBE") for child in shim.children()] == ["chosen"]
    d.client.cancel(job["id"])
