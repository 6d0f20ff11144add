"""Watch one running job until it ends: enforce timeout, idle timeout, memory limit and cancel."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from supervisor.logs import job_log_path
from supervisor.models import JobRecord, JobState, KillReason
from supervisor.reports import (MAX_REPORT_BYTES, MAX_RESULT_BYTES, InvalidReport, check_result, parse_exit_status,
                               signal_name)
from supervisor.runner.files import RunFiles, read_json
from supervisor.runner.kill import kill_tree
from supervisor.runner.tree import JobTree, tree_rss

_REASON_STATE = {
    KillReason.TIMEOUT: JobState.TIMED_OUT,
    KillReason.HUNG: JobState.HUNG,
    KillReason.CANCELLED: JobState.CANCELLED,
    KillReason.MEMORY: JobState.FAILED,
    KillReason.DAEMON_LOST: JobState.LOST,
}
_EXIT_WAIT = 5.0  # after the tree is gone, the leader's exit is reported within this


@dataclass(frozen=True)
class Limits:
    timeout: float
    idle_timeout: float | None
    max_memory: int | None
    kill_grace: float
    max_result_bytes: int = MAX_RESULT_BYTES


@dataclass
class Outcome:
    state: JobState
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None
    killed_at: float | None = None
    finished_at: float | None = None  # when the job wrote its result (unset: when the daemon noticed)


@dataclass
class RunningJob:
    rec: JobRecord
    tree: JobTree
    files: RunFiles
    limits: Limits
    log_dir: Any
    exited: bool = False
    exit_status: int | None = None  # raw wait status; None when the job was not our child
    kill_reason: KillReason | None = None
    kill_signal: int | None = None
    killed_at: float | None = None
    cancel_requested: bool = False
    last_progress: float = 0.0
    progress_seen: tuple[int, int, Any] | None = None  # progress.json's inode, mtime and report last read
    _attention: anyio.Event = field(default_factory=anyio.Event)

    def on_exit(self, status: int | None) -> None:
        """Called by whoever learns first (pidfd, or our reaper with the status); a status,
        once known, stays."""
        self.exited = True
        if status is not None:
            self.exit_status = status
        self._attention.set()

    def request_cancel(self) -> None:
        self.cancel_requested = True
        self._attention.set()

    def abandon(self) -> None:
        """Kill now, recording nothing: the daemon lost its lease, other hosts own the job."""
        if self.kill_reason is None:
            self.kill_reason, self.killed_at = KillReason.DAEMON_LOST, time.time()
        self._attention.set()

    async def nap(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self._attention.wait()
        if self._attention.is_set():
            self._attention = anyio.Event()

    def last_activity(self) -> float:
        times = [self.rec.started_at or 0.0, self.last_progress]
        # `started` is created when job code is about to run: a slow interpreter start is not idleness.
        for path in (job_log_path(self.log_dir, self.rec.id), self.files.progress, self.files.started):
            with contextlib.suppress(OSError):
                times.append(path.stat().st_mtime)
        return max(times)

    def due_kill(self, now: float) -> KillReason | None:
        if self.cancel_requested:
            return KillReason.CANCELLED
        if now >= (self.rec.started_at or now) + self.limits.timeout:
            return KillReason.TIMEOUT
        if self.limits.idle_timeout and now - self.last_activity() >= self.limits.idle_timeout:
            return KillReason.HUNG
        if self.limits.max_memory and tree_rss(self.tree) > self.limits.max_memory:
            return KillReason.MEMORY
        return None

    def next_check_in(self, now: float) -> float:
        until_timeout = (self.rec.started_at or now) + self.limits.timeout - now
        if self.limits.idle_timeout or self.limits.max_memory:
            return max(min(until_timeout, 0.5), 0.0)
        return max(until_timeout, 0.0)


KillRecorder = Callable[[RunningJob], None]


async def supervise(run: RunningJob, record_kill: KillRecorder) -> Outcome:
    """`record_kill` persists the kill decision before any signal: a daemon that dies while
    killing leaves a successor that finishes the kill and reports the right reason."""
    while not run.exited:
        reason = run.kill_reason or run.due_kill(time.time())  # kill_reason: a kill recovered from the store
        if reason is not None:
            # After the daemon was stopped or slow, a timer may fire before the exit is heard
            # of: a job that has ended on its own was not ended by us, and gets no reason.
            if run.kill_reason is None and run.tree.leader_ended():
                break
            await _kill(run, reason, record_kill)
            break
        await run.nap(run.next_check_in(time.time()))
    with anyio.move_on_after(_EXIT_WAIT):
        while not run.exited:
            await run.nap(0.05)
    if run.exit_status is None and not run.files.result.exists():
        run.exit_status = await _forked_exit_status(run)
    # The leader is gone: whatever of the job is left (daemonised grandchildren) goes too.
    await kill_tree(run.tree, run.limits.kill_grace)
    return outcome_of(run)


async def _forked_exit_status(run: RunningJob, wait: float = 0.5) -> int | None:
    """The fork server reaps its children and records their status a moment after they end;
    if it has exited (a reload), the job was re-parented to us and our reaper reports it."""
    with anyio.move_on_after(wait):
        while run.exit_status is None:
            status = parse_exit_status(read_json(run.files.exit_status, MAX_REPORT_BYTES))
            if status is not None:
                return status
            if not run.files.dir.exists():
                break
            await run.nap(0.02)
    return run.exit_status


async def _kill(run: RunningJob, reason: KillReason, record_kill: KillRecorder) -> None:
    if run.kill_reason is None:
        run.kill_reason, run.killed_at = reason, time.time()
        record_kill(run)
    run.kill_signal = await kill_tree(run.tree, run.limits.kill_grace)


def _kill_message(run: RunningJob) -> str:
    limits = run.limits
    return {
        KillReason.TIMEOUT: f"exceeded its timeout of {limits.timeout:g} s",
        KillReason.HUNG: f"no output or progress for {limits.idle_timeout or 0:g} s",
        KillReason.CANCELLED: "cancelled on request",
        KillReason.MEMORY: f"memory of its process tree exceeded max_memory ({limits.max_memory} bytes)",
        KillReason.DAEMON_LOST: "was killed: its host lost its lease to other hosts",
    }[run.kill_reason]  # type: ignore[index]


def _status_fields(status: int | None) -> tuple[int | None, int | None]:
    if status is None:
        return None, None
    try:
        code = os.waitstatus_to_exitcode(status)
    except ValueError:  # not an exit (a forged exit_status.json)
        return None, None
    return (None, -code) if code < 0 else (code, None)


def _result_written_at(run: RunningJob) -> float | None:
    """A job that ended while the daemon was down ended then, not when the daemon came back.
    (Bounded: the job's own user could set the file's time to anything.)"""
    try:
        written = run.files.result.lstat().st_mtime  # the link itself, as read_json never follows one
    except OSError:
        return None
    return min(max(written, run.rec.started_at or written), time.time())


def _result_size(run: RunningJob) -> int:
    try:
        return run.files.result.lstat().st_size
    except OSError:
        return 0


def outcome_of(run: RunningJob) -> Outcome:
    exit_code, sig = _status_fields(run.exit_status)
    size, cap = _result_size(run), run.limits.max_result_bytes
    if size > cap and run.kill_reason is None:  # never read, never stored
        return Outcome(JobState.FAILED, error_type="ResultTooLarge", exit_code=exit_code, signal=sig,
                       error_message=f"the job's result is {size} bytes, over max_result_bytes ({cap}); return "
                                     "less (write large data to a file and return its path) or ask an admin to "
                                     "raise RUNSPACE_MAX_RESULT_BYTES")
    try:
        report = check_result(read_json(run.files.result, cap))
    except InvalidReport as exc:
        if run.kill_reason is None:
            return Outcome(JobState.FAILED, error_type="InvalidResult", exit_code=exit_code, signal=sig,
                           error_message=f"the job's result cannot be recorded: {exc}")
        report = None
    # A job we killed is reported as killed even when it wrote a failure of its own: a
    # command's shim outlives the SIGTERM to report that its command died of it.
    if report is not None and (run.kill_reason is None or report.state == JobState.SUCCEEDED):
        return Outcome(
            state=report.state,
            result=report.result,
            error_type=report.error_type,
            error_message=report.error_message,
            exit_code=report.exit_code,
            signal=report.signal,
            reason=run.kill_reason.value if run.kill_reason else None,
            killed_at=run.killed_at,
            finished_at=_result_written_at(run),
        )
    if run.kill_reason is not None:
        if report is not None:  # how the command itself ended, not its shim
            exit_code, sig = report.exit_code, report.signal
        kind = "MemoryLimit" if run.kill_reason == KillReason.MEMORY else run.kill_reason.name.title()
        return Outcome(
            state=_REASON_STATE[run.kill_reason],
            error_type=kind.replace("_", ""),
            error_message=f"{run.rec.job} {_kill_message(run)}",
            exit_code=exit_code,
            signal=sig or run.kill_signal,
            reason=run.kill_reason.value,
            killed_at=run.killed_at,
        )
    if run.exit_status is not None:
        how = f"signal {signal_name(sig)}" if sig else f"exit code {exit_code}"
        return Outcome(JobState.FAILED, error_type="ProcessDied",
                       error_message=f"the job process ended with {how} before reporting a result",
                       exit_code=exit_code, signal=sig)
    return Outcome(JobState.LOST, error_type="Lost", reason=KillReason.DAEMON_LOST.value,
                   error_message="the job process ended while the daemon was down and left no result")
