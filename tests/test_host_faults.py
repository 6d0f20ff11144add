"""The host misbehaves under a running daemon: a full disk, a store file deleted or replaced,
a second daemon on the same state dir (CONTRACT §13)."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import psutil
import pytest

from supervisor.errors import NoSpace, StoreUnavailable
from supervisor.ids import new_job_id
from supervisor.models import JobRecord, JobState
from supervisor.runner.files import RunFiles
from supervisor.runner.supervise import Limits, Outcome, RunningJob, supervise
from supervisor.runner.tree import JobTree

from conftest import wait_until


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, unmounted afterwards."""
    where = tmp_path / "small"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _ended(pid: int) -> bool:
    """The process has exited: gone, or a zombie its parent has not reaped yet."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def _health(d) -> tuple[int, dict]:
    answer = d.raw("GET", "/healthz")
    return answer.status_code, answer.json()


def _submit_until_refused(d) -> Exception:
    """Submissions go on until the store refuses one (its WAL may still have room for a few)."""
    for _ in range(2000):
        try:
            d.client.submit("echo", {"value": "x" * 4000})
        except (NoSpace, StoreUnavailable) as exc:
            return exc
    pytest.fail("the full store accepted 2,000 submissions")


def _gated_job_on_a_small_disk(make_daemon, small_disk: Path, tmp_path: Path):
    """A daemon whose store is on the small disk, running one job that ends once `gate` exists
    (it appends a line to `ledger` first: how many times it ran)."""
    d = make_daemon(RUNSPACE_STORE=str(small_disk / "runspace.db"), RUNSPACE_MAX_CONCURRENCY="1")
    gate, ledger = tmp_path / "gate", tmp_path / "ledger"
    job = d.submit("gated", {"gate": str(gate), "ledger": str(ledger)})
    wait_until(lambda: d.client.status(job["id"])["state"] == "running", 15, what="the gated job to run")
    return d, job, gate, ledger


def test_a_full_disk_degrades_the_daemon_and_a_job_ending_meanwhile_is_recorded_later(
        make_daemon, small_disk: Path, tmp_path: Path) -> None:
    d, job, gate, ledger = _gated_job_on_a_small_disk(make_daemon, small_disk, tmp_path)

    filler = _fill(small_disk)
    refused = _submit_until_refused(d)
    assert isinstance(refused, NoSpace), refused
    assert "no space" in str(refused)
    answer = d.raw("POST", "/v1/jobs", json={"job": "echo", "params": {}})
    assert answer.status_code == 507
    assert answer.headers["content-type"] == "application/problem+json"
    assert int(answer.headers["retry-after"]) > 0
    status, body = _health(d)
    assert (status, body["status"]) == (503, "degraded") and "no space" in body["problem"]

    gate.touch()  # the job ends while nothing can be written
    wait_until(ledger.exists, 15, what="the gated job to finish its work")
    wait_until(lambda: d.client.status(job["id"])["done"], 15, what="the job's end to be seen")
    assert d.proc.poll() is None, f"the daemon died on a full disk:\n{d.log()}"
    seen = d.client.status(job["id"])
    assert (seen["state"], seen["reason"]) == ("succeeded", None)

    filler.unlink()  # space returns: the kept end is written, the daemon takes jobs again
    wait_until(lambda: _health(d)[0] == 200, 30, what="/healthz to recover")
    d.stop()
    assert "job store degraded: no space left" in d.log()
    assert "unhandled error" not in d.log()
    d.start()  # what the store holds now, not what the old daemon kept in memory
    final = d.client.status(job["id"])
    assert (final["state"], final["exit_code"], final["reason"]) == ("succeeded", 0, None)
    assert d.wait(d.submit("echo", {"value": 1})["id"])["state"] == "succeeded"
    never_ran = d.client.list(state="lost")["items"]
    assert never_ran == []


def test_a_daemon_restarted_on_a_full_disk_starts_degraded_and_loses_no_job_that_ended(
        make_daemon, small_disk: Path, tmp_path: Path) -> None:
    d, job, gate, ledger = _gated_job_on_a_small_disk(make_daemon, small_disk, tmp_path)
    filler = _fill(small_disk)
    _submit_until_refused(d)
    gate.touch()
    wait_until(lambda: d.client.status(job["id"])["done"], 15, what="the job's end to be seen")

    d.stop()  # its end is still only in memory: the run dir must outlive this daemon
    assert "1 job update(s) not written" in d.log()
    d.start(health=503)  # on a disk still full: it starts, degraded
    assert d.client.status(job["id"])["state"] == "succeeded"
    filler.unlink()
    wait_until(lambda: _health(d)[0] == 200, 30, what="/healthz to recover")
    d.stop()
    d.start()
    final = d.client.status(job["id"])
    assert (final["state"], final["reason"], final["attempt"]) == ("succeeded", None, 1), final
    assert len(ledger.read_text().splitlines()) == 1, "the job ran again"


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_store_file_deleted_or_replaced_under_the_daemon_is_noticed(make_daemon, tmp_path: Path,
                                                                      how: str) -> None:
    d = make_daemon()
    db = d.state_dir / "runspace.db"
    d.wait(d.submit("echo", {"value": 1})["id"])
    if how == "deleted":
        db.unlink()
    else:
        shutil.copy(db, tmp_path / "copy.db")
        os.replace(tmp_path / "copy.db", db)

    status, body = _health(d)  # health looks at the file before it answers
    assert status == 503 and how in body["problem"] and str(db) in body["problem"]
    with pytest.raises(StoreUnavailable, match=how):
        d.client.submit("echo", {"value": 2})
    assert d.proc.poll() is None
    assert f"job store file {db} was {how}" in d.log()


@pytest.mark.parametrize("other_state_dir", [False, True])
def test_a_second_daemon_touches_nothing_of_the_running_one(make_daemon, other_state_dir: bool) -> None:
    d = make_daemon()
    events = d.state_dir / "events.sock"
    before = events.stat().st_ino
    env = {**d.env, "RUNSPACE_STATE_DIR": str(d.base / "other-state")} if other_state_dir else d.env
    # One line even with --debug, a descriptor left open by the parent and a setting it warns about
    # (the test's RUNSPACE_TEST_MARKER): the lock and the socket are checked before anything is said.
    read_end, write_end = os.pipe()
    try:
        second = subprocess.run([sys.executable, "-m", "supervisor", "daemon", "--debug"], env=env,
                                capture_output=True, text=True, timeout=60, cwd=d.base, pass_fds=(write_end,))
    finally:
        os.close(read_end)
        os.close(write_end)
    assert second.returncode == 1
    lines = second.stderr.splitlines()
    assert len(lines) == 1, second.stderr
    expected = "already listening" if other_state_dir else f"pid {d.proc.pid}) is running on the state dir"
    assert expected in lines[0]
    assert events.stat().st_ino == before, "the running daemon's events socket was replaced"

    job = d.submit("steps", {"steps": 40, "delay": 0.1})  # its progress still reaches the first daemon
    wait_until(lambda: (d.client.status(job["id"])["progress"] or 0) >= 3, 15,
               what="progress reported while the job runs")
    assert d.wait(job["id"])["state"] == "succeeded"
    assert _health(d)[0] == 200


def test_jobs_that_ended_while_the_daemon_was_stopped_carry_no_kill_reason(make_daemon) -> None:
    # too_slow's timeout is 1 s. Each job ends on its own while the daemon is stopped (SIGSTOP),
    # after its timeout (the daemon was not there to kill it): the timers the daemon finds due
    # when it resumes must not claim them. (The next test makes the race certain.)
    seconds = 1.8
    d = make_daemon()
    ids = [d.submit("too_slow", {"seconds": seconds})["id"] for _ in range(4)]
    wait_until(lambda: all(d.client.status(i)["state"] == "running" for i in ids), 15, interval=0.01,
               what="the jobs to run")
    pids = [d.client.status(i)["pid"] for i in ids]
    d.proc.send_signal(signal.SIGSTOP)
    try:  # until every job has ended on its own (a zombie: the stopped daemon cannot reap it)
        wait_until(lambda: all(_ended(pid) for pid in pids), seconds + 30, what="the jobs to end while stopped")
    finally:
        d.proc.send_signal(signal.SIGCONT)
    for job_id in ids:
        final = d.wait(job_id, 15)
        assert (final["state"], final["reason"], final["killed_at"]) == ("succeeded", None, None), final


def test_a_timeout_due_when_the_daemon_resumes_does_not_claim_a_job_that_already_ended(tmp_path: Path) -> None:
    """The race behind the SIGSTOP test, made certain: the job has ended on its own (a zombie
    not yet reaped, its result written) and its timeout is long past when supervision looks;
    the exit is heard of only afterwards, as when the SIGCHLD is handled after the timer."""
    files = RunFiles(tmp_path / "run")
    files.dir.mkdir()
    job = subprocess.Popen([sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write("
                            "'{\"state\": \"succeeded\", \"result\": 7}')", str(files.result)])
    wait_until(lambda: psutil.Process(job.pid).status() == psutil.STATUS_ZOMBIE, 10, what="the job to end")
    rec = JobRecord(id=new_job_id(), job="too_slow", params={}, requestor="root", log_user="root",
                    state=JobState.RUNNING, started_at=time.time() - 30)
    run = RunningJob(rec, JobTree(rec.id, job.pid, psutil.Process(job.pid).create_time()), files,
                     Limits(timeout=1, idle_timeout=None, max_memory=None, kill_grace=0.5), tmp_path)
    kills: list[object] = []

    async def supervised() -> Outcome:
        async with anyio.create_task_group() as tg:
            async def exit_heard_late() -> None:
                await anyio.sleep(0.2)
                run.on_exit(job.wait())
            tg.start_soon(exit_heard_late)
            return await supervise(run, lambda r: kills.append(r.kill_reason))

    outcome = anyio.run(supervised)
    assert kills == []
    assert (outcome.state, outcome.result, outcome.reason, outcome.killed_at) == (JobState.SUCCEEDED, 7, None, None)


def test_an_immutable_shm_file_degrades_the_store_instead_of_crashing_the_daemon(daemon) -> None:
    """SQLite writes its -shm through a mapping: `chattr +i` on it makes the next write a SIGBUS."""
    shm = daemon.state_dir / "runspace.db-shm"
    frozen = subprocess.run(["chattr", "+i", str(shm)], capture_output=True, text=True)
    if frozen.returncode != 0:
        pytest.skip(f"chattr +i is not possible here: {frozen.stderr.strip()}")
    try:
        status, body = _health(daemon)
        assert status == 503 and "immutable" in body["problem"] and str(shm) in body["problem"]
        with pytest.raises(StoreUnavailable, match="chattr -i"):
            daemon.client.submit("echo", {"value": 1})
        assert daemon.proc.poll() is None
    finally:
        subprocess.run(["chattr", "-i", str(shm)], capture_output=True)
    wait_until(lambda: _health(daemon)[0] == 200, 15, what="the store to recover")
    assert daemon.wait(daemon.submit("echo", {"value": 2})["id"])["state"] == "succeeded"
