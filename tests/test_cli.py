"""The `runspace` command line: output, --json, and the exit codes of CONTRACT §6."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

from tests.conftest import ROOT, DaemonProcess, wait_until


def test_submit_wait_succeeded_exits_0_and_prints_result(daemon: DaemonProcess) -> None:
    out = daemon.cli("submit", "echo", "value=7", "--wait", "20", "--json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["state"] == "succeeded" and status["result"]["value"] == "7"


def test_submit_without_wait_prints_id_then_status_and_wait_work(daemon: DaemonProcess) -> None:
    out = daemon.cli("submit", "echo", "value=1", "delay=0.3")
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip()
    waited = daemon.cli("wait", job_id, "--json")
    assert waited.returncode == 0 and json.loads(waited.stdout)["state"] == "succeeded"
    shown = daemon.cli("status", job_id)
    assert shown.returncode == 0 and "succeeded" in shown.stdout


def test_failed_job_exits_1(daemon: DaemonProcess) -> None:
    out = daemon.cli("submit", "fail", "message=nope", "--wait", "20")
    assert out.returncode == 1
    assert "ValueError: nope" in out.stdout


def test_invalid_params_exit_2_with_one_line_per_field(daemon: DaemonProcess) -> None:
    out = daemon.cli("submit", "sleep", "seconds=later")
    assert out.returncode == 2
    assert "params.seconds" in out.stderr and "Traceback" not in out.stderr
    assert daemon.cli("submit", "no_such_job").returncode == 2
    assert daemon.cli("submit", "echo", "novalue").returncode == 2


def test_timed_out_job_exits_124(daemon: DaemonProcess) -> None:
    out = daemon.cli("submit", "spawn_tree", f"pidfile={daemon.base / 'pids'}", "seconds=60", "--wait", "30")
    assert out.returncode == 124, out.stdout + out.stderr


def test_cancel_kills_the_job_and_exit_code_1_on_wait(daemon: DaemonProcess) -> None:
    job_id = daemon.cli("submit", "sleep", "seconds=60").stdout.strip()
    from tests.conftest import wait_until

    pid = wait_until(lambda: daemon.client.status(job_id)["pid"], what="job to start")
    out = daemon.cli("cancel", job_id, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["state"] == "cancelled"
    assert not _alive(pid)
    assert daemon.cli("wait", job_id).returncode == 1


def test_daemon_unreachable_exits_3_naming_socket(tmp_path: Path) -> None:
    sock = tmp_path / "nobody.sock"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RUNSPACE_SOCKET": str(sock)}
    out = subprocess.run([sys.executable, "-m", "supervisor", "status", "0123456789abcdef0123"],
                         env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 3
    assert str(sock) in out.stderr and "runspace daemon" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_bad_settings_refuse_to_start_with_one_line_naming_where_they_came_from(tmp_path: Path) -> None:
    cases = [
        ({"RUNSPACE_MAX_CONCURRENCY": "lots"}, None, "RUNSPACE_MAX_CONCURRENCY='lots': Input should be a valid integer"),
        ({}, "max_concurrency = 0\n", "max_concurrency = 0 in "),
        ({}, "max_concurrency = \n", "not valid TOML"),
        ({}, "max_concurency = 4\n", "unknown setting 'max_concurency'"),
        ({"RUNSPACE_CONFIG": str(tmp_path / "absent.toml")}, None, "absent.toml: no such file"),
        ({}, "max_concurrency = 'caf\udcff'\n", "cannot read it"),  # not UTF-8
        ({"runspace_max_concurrency": "lots"}, None, "runspace_max_concurrency='lots': Input should be"),
        # settings that name things on this host (supervisor/preflight.py)
        ({"RUNSPACE_SOCKET_GROUP": "no-such-group"}, None, "RUNSPACE_SOCKET_GROUP='no-such-group': no such group"),
        ({"RUNSPACE_RUN_AS": "no-such-user"}, None, "RUNSPACE_RUN_AS='no-such-user': no such user"),
        ({"RUNSPACE_CGROUP_ROOT": str(tmp_path / "none")}, None, "not a cgroup v2 directory this daemon may write"),
        ({"RUNSPACE_STORE": "mysql://db/runspace"}, None, "RUNSPACE_STORE='mysql://db/runspace': the store is"),
        # named like every other setting, and no raw OverflowError for a port beyond 65535
        ({"RUNSPACE_TCP_LISTEN": "999.1.1.1:x"}, None, "RUNSPACE_TCP_LISTEN='999.1.1.1:x': Value error, expected"),
        ({"RUNSPACE_TCP_LISTEN": "127.0.0.1:99999"}, None, "RUNSPACE_TCP_LISTEN='127.0.0.1:99999': Value error"),
        ({"RUNSPACE_TCP_LISTEN": "999.1.1.1:80"}, None, "RUNSPACE_TCP_LISTEN='999.1.1.1:80': Value error"),
    ]
    for n, (extra, toml, expected) in enumerate(cases):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RUNSPACE_SOCKET": str(tmp_path / "rs.sock"),
               "RUNSPACE_STATE_DIR": str(tmp_path / f"state{n}"), **extra}
        if toml is not None:
            (tmp_path / f"c{n}.toml").write_bytes(toml.encode("utf-8", "surrogateescape"))
            env["RUNSPACE_CONFIG"] = str(tmp_path / f"c{n}.toml")
        out = subprocess.run([sys.executable, "-m", "supervisor", "daemon"], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 2, out.stderr
        assert expected in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert not (tmp_path / "rs.sock").exists() and not (tmp_path / f"state{n}").exists()


def test_a_daemon_that_cannot_start_says_why_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    for extra in ({"RUNSPACE_STATE_DIR": "/proc/runspace-state"},  # cannot be created
                  {"RUNSPACE_STORE": str(tmp_path / "file" / "x.db")}):  # under a file
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RUNSPACE_SOCKET": str(tmp_path / "rs.sock"),
               "RUNSPACE_STATE_DIR": str(tmp_path / "state"), **extra}
        out = subprocess.run([sys.executable, "-m", "supervisor", "daemon"], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.strip().splitlines()[-1].startswith("runspace: error: the daemon could not start: ")
        assert not (tmp_path / "rs.sock").exists()


def test_a_runspace_variable_that_is_no_setting_is_named_in_the_daemon_log(make_daemon) -> None:
    d = make_daemon(RUNSPACE_MAX_CONCURENCY="3",  # sic: the typo would otherwise do nothing at all
                    RUNSPACE_ADMINS="no-such-admin", RUNSPACE_ALLOWED_GROUPS="no-such-group")
    assert "RUNSPACE_MAX_CONCURENCY is not a runspace setting and is ignored" in d.log()
    assert "RUNSPACE_MAX_CONCURRENCY is not" not in d.log()
    assert "RUNSPACE_ADMINS names 'no-such-admin', which is no user on this host" in d.log()
    assert "RUNSPACE_ALLOWED_GROUPS names 'no-such-group', which is no group on this host" in d.log()


def test_params_from_stdin_and_json_values(daemon: DaemonProcess) -> None:
    out = daemon.cli("submit", "echo", "--params", "-", "--wait", "20", "--json", input='{"value": [1, 2]}')
    assert json.loads(out.stdout)["result"]["value"] == [1, 2]
    out = daemon.cli("submit", "echo", 'value={"a": 1}', "--wait", "20", "--json")
    assert json.loads(out.stdout)["result"]["value"] == {"a": 1}


def test_list_logs_and_jobs_commands(daemon: DaemonProcess) -> None:
    job_id = json.loads(daemon.cli("submit", "fail", "--wait", "20", "--json").stdout)["id"]
    listed = json.loads(daemon.cli("list", "--json").stdout)
    assert listed["items"][0]["id"] == job_id
    assert "about to fail" in daemon.cli("logs", job_id).stdout
    types = daemon.cli("jobs")
    assert types.returncode == 0 and "create_home_dir(" in types.stdout
    # choices and defaults, not a bare `string`
    assert "region?: eu|us = 'eu'" in types.stdout and "delay?: number = 1.0" in types.stdout, types.stdout


def test_daemon_help_shows_every_default_and_choice() -> None:
    from supervisor.settings import Settings

    out = subprocess.run([sys.executable, "-m", "supervisor", "daemon", "--help"], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip().startswith("RUNSPACE_")}
    assert "[default: 8]" in lines["RUNSPACE_MAX_CONCURRENCY"] and "[default: 5.0]" in lines["RUNSPACE_KILL_GRACE"]
    assert "[default:" not in lines["RUNSPACE_TCP_LISTEN"], "off by default: no value to show"
    for name, field in Settings.model_fields.items():
        for choice in getattr(field.annotation, "__args__", ()) if "Literal" in str(field.annotation) else ():
            assert choice in lines[f"RUNSPACE_{name.upper()}"], (name, choice)


def test_run_inline_without_daemon(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RUNSPACE_SOCKET": str(tmp_path / "none.sock"),
           "RUNSPACE_JOBS_PATH": str(ROOT / "tests" / "jobs")}
    out = subprocess.run([sys.executable, "-m", "supervisor", "run", "steps", "steps=2", "delay=0", "--debug"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"steps": 2}
    assert "[progress] 2/2 step 2" in out.stderr
    bad = subprocess.run([sys.executable, "-m", "supervisor", "run", "steps", "steps=many"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "params.steps" in bad.stderr


def test_run_inline_enforces_the_timeout_and_exits_124(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RUNSPACE_JOBS_PATH": str(ROOT / "tests" / "jobs"),
           "RUNSPACE_DEFAULT_TIMEOUT": "1", "RUNSPACE_KILL_GRACE": "0.5"}
    # A Python job, and a command that ignores SIGTERM (so only the SIGKILL after the grace ends it).
    # A Python job; a command that ignores SIGTERM (so only the SIGKILL after the grace ends it); a
    # command whose child is a process of its own (the whole tree ends, not just the shell).
    tag = f"61.{uuid.uuid4().int % 10**9}"  # a sleep no other process runs: found by its argv
    for args in (["echo", "value=1", "delay=60"], ["sh_script", "script=trap '' TERM; exec sleep 60"],
                 ["sh_script", f"script=sleep {tag}; echo never"]):
        started = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "supervisor", "run", *args], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 124, out.stderr
        assert "timed out" in out.stderr and "timeout of 1 s" in out.stderr
        assert json.loads(out.stdout)["type"] == "Timeout"
        assert time.monotonic() - started < 30  # not the job's 60 s
    assert not [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", tag]]
    # A Python job's setsid, double-forked and SIGTERM-ignoring children end with it too.
    pidfile = tmp_path / "tree.pids"
    out = subprocess.run([sys.executable, "-m", "supervisor", "run", "spawn_tree", f"pidfile={pidfile}"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 124, out.stderr
    pids = [int(pid) for pid in pidfile.read_text().split()]
    assert len(pids) == 3 and not [pid for pid in pids if _alive(pid)]


def test_run_inline_ended_by_sigterm_removes_its_tmp_dir(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RUNSPACE_JOBS_PATH": str(ROOT / "tests" / "jobs"),
           "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "supervisor", "run", "sleep", "seconds=60"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: list(tmp.glob("runspace-*")), timeout=30, what="the job's tmp dir")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert list(tmp.iterdir()) == []


def test_run_debug_breakpoint_stops_in_pdb(tmp_path: Path) -> None:
    """`breakpoint()` inside a job drops into pdb in this terminal process."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "bp.py").write_text(
        "from pydantic import BaseModel\nfrom supervisor import job\n"
        "class P(BaseModel):\n    x: int = 1\n"
        "@job()\ndef bp(params: P, ctx) -> int:\n    y = params.x * 21\n    breakpoint()\n    return y\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RUNSPACE_JOBS_PATH": str(jobs)}
    env.pop("PYTHONBREAKPOINT", None)
    out = subprocess.run([sys.executable, "-m", "supervisor", "run", "bp", "x=2", "--debug"], env=env,
                         input="p y\nc\n", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "(Pdb)" in out.stdout and "42" in out.stdout
    # Without --debug the type's timeout applies, but not while you are in the debugger.
    env["RUNSPACE_DEFAULT_TIMEOUT"] = "0.5"
    out = subprocess.run([sys.executable, "-m", "supervisor", "run", "bp", "x=2"], env=env,
                         input="import time; time.sleep(1.5)\np y\nc\n", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "timed out" not in out.stderr, out.stderr
    assert "42" in out.stdout


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_unreadable_params_file_is_one_line_exit_2(daemon: DaemonProcess) -> None:
    out = daemon.cli("submit", "echo", "--params", str(daemon.base / "missing.json"))
    assert out.returncode == 2
    assert "missing.json" in out.stderr and "Traceback" not in out.stderr


def test_wait_that_runs_out_exits_124_and_the_job_goes_on(daemon: DaemonProcess) -> None:
    out = daemon.cli("submit", "sleep", "seconds=3", "--wait", "0.2")
    assert out.returncode == 124
    job_id = out.stdout.split()[0]
    assert "runspace wait" in out.stderr
    assert daemon.cli("wait", job_id, "--timeout", "0.2").returncode == 124
    assert daemon.cli("wait", job_id).returncode == 0


def test_status_of_a_malformed_id_is_a_usage_error(daemon: DaemonProcess) -> None:
    out = daemon.cli("status", "../etc")
    assert out.returncode == 2 and "runspace list" in out.stderr


def test_run_debug_opens_post_mortem_on_exception(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RUNSPACE_JOBS_PATH": str(ROOT / "tests" / "jobs")}
    out = subprocess.run([sys.executable, "-m", "supervisor", "run", "fail", "message=deep", "--debug"], env=env,
                         input="p params.message\nc\n", capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "(Pdb)" in out.stdout and "'deep'" in out.stdout


def test_reads_name_unknown_ids_and_carry_filters_and_pages_larger_than_one_read(daemon: DaemonProcess) -> None:
    # status, list and cancel go through the CLI's lean client (supervisor/client.py)
    unknown = "0123456789abcdef0123"
    for command in ("status", "cancel"):
        out = daemon.cli(command, unknown)
        assert out.returncode == 2 and f"no job {unknown}" in out.stderr and "Traceback" not in out.stderr
    _, batch = daemon.client.submit_batch("echo", [{"value": f"{i:03} " + "x" * 600} for i in range(150)])
    for job_id in batch["job_ids"]:
        daemon.wait(job_id)
    out = daemon.cli("list", "--batch", batch["batch_id"], "--state", "succeeded", "--limit", "1000", "--json")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout) > 65536  # more than one read of the socket
    page = json.loads(out.stdout)
    assert sorted(item["id"] for item in page["items"]) == sorted(batch["job_ids"])
    assert json.loads(daemon.cli("list", "--state", "failed", "--json").stdout)["items"] == []


def test_status_without_click_prints_what_the_click_cli_prints(daemon: DaemonProcess) -> None:
    # `runspace status ID` with RUNSPACE_SOCKET set skips click (supervisor/cli_main.py);
    # `--socket` sends the same read through the click CLI.
    ended = [daemon.submit("echo", {"value": 7}, wait=20), daemon.submit("fail", wait=20),
             daemon.submit("sleep", {"seconds": 30})]
    for status in ended:
        for extra in ([], ["--json"]):
            fast = daemon.cli("status", status["id"], *extra)
            slow = daemon.cli("--socket", str(daemon.socket), "status", status["id"], *extra)
            assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr)
            assert status["id"] in fast.stdout
    assert [daemon.cli("status", s["id"]).returncode for s in ended] == [0, 1, 0]
    traced = subprocess.run([sys.executable, "-X", "importtime", "-m", "supervisor", "status", ended[0]["id"]],
                            env=daemon.env, capture_output=True, text=True, timeout=30)
    assert traced.returncode == 0 and "supervisor.client" in traced.stderr
    assert " click" not in traced.stderr  # the fast path really skipped it


def _imported(daemon: DaemonProcess, *args: str, env: dict[str, str] | None = None,
              input: str | None = None) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the CLI with -X importtime: its result and the modules it imported."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "supervisor", *args], env=env or daemon.env,
                         input=input, capture_output=True, text=True, timeout=60, cwd=daemon.base)
    modules = {line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    return out, modules


def test_scripted_commands_start_without_httpx_or_the_settings_model(daemon: DaemonProcess) -> None:
    # Scripts loop on these (issue 22): httpx and pydantic-settings cost more to import than the
    # command takes, so every one of them talks to the daemon through supervisor/client.py.
    job_id = daemon.submit("echo", {"value": 1}, wait=20)["id"]
    items = daemon.base / "items.jsonl"
    items.write_text('{"value": 1}\n{"value": 2}\n')
    commands = [("submit", "echo", "value=2", "--wait", "20"), ("submit", "echo", "--params", "-"),
                ("status", job_id), ("list", "--limit", "5"), ("wait", job_id, "--timeout", "20"),
                ("logs", job_id), ("logs", job_id, "-f"), ("cancel", job_id, "--json"),
                ("batch", "echo", "--items", str(items)), ("batch", "echo", "--items", str(items), "--detach"),
                ("jobs",), ("user-log",), ("restart", job_id), ("queue",), ("exec", "--wait", "20", "--", "true")]
    for command in commands:
        out, modules = _imported(daemon, "--socket", str(daemon.socket), *command, input='{"value": 3}')
        # the job has ended: cancelling it is a request the daemon refuses (409), exit 2
        assert out.returncode in ((2,) if command[0] == "cancel" else (0, 1)), (command, out.stderr[-2000:])
        heavy = {m for m in modules if m.split(".")[0] in ("httpx", "pydantic_settings", "pydantic", "rich", "anyio")}
        assert not heavy, (command, sorted(heavy)[:5])
        assert "Traceback" not in out.stderr, (command, out.stderr[-2000:])
    chatty = daemon.submit("chatty", {"user": "u", "text": "é" * 3000, "lines": 3, "every": 0.3})
    followed = daemon.cli("logs", chatty["id"], "-f")  # streamed while the job writes
    assert followed.returncode == 0 and followed.stdout.count("é" * 3000) == 3  # split characters rejoined


def test_the_cli_finds_the_socket_in_the_config_file_or_names_what_is_wrong(daemon: DaemonProcess) -> None:
    env = {key: value for key, value in daemon.env.items() if key.upper() != "RUNSPACE_SOCKET"}
    config = daemon.base / "config.toml"
    config.write_text(f'socket = "{daemon.socket}"\nmax_concurrency = 4\n')
    out, modules = _imported(daemon, "submit", "echo", "value=5", "--wait", "20", "--json",
                             env={**env, "RUNSPACE_CONFIG": str(config)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["result"]["value"] == "5"
    assert "pydantic_settings" not in modules and "tomllib" in modules
    # pydantic-settings reads env names in any case, so the CLI does too
    lower = subprocess.run([sys.executable, "-m", "supervisor", "list"], capture_output=True, text=True,
                           env={**env, "runspace_socket": str(daemon.socket)}, timeout=60)
    assert lower.returncode == 0, lower.stderr
    config.write_text("socket = \n")
    out = subprocess.run([sys.executable, "-m", "supervisor", "list"], capture_output=True, text=True,
                         env={**env, "RUNSPACE_CONFIG": str(config)}, timeout=60)
    assert out.returncode == 2 and "not valid TOML" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = subprocess.run([sys.executable, "-m", "supervisor", "list"], capture_output=True, text=True,
                         env={**env, "RUNSPACE_CONFIG": str(daemon.base / "absent.toml")}, timeout=60)
    assert out.returncode == 2 and "absent.toml: no such file" in out.stderr
