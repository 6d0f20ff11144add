"""Decides what runs when: queue order, concurrency limits, per-key serialisation, retries.

Owns the running jobs: it launches them, supervises each in its own task and records
how each ended. The store is the truth; the queue and running table are its live view.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import TaskGroup
from loguru import logger

from supervisor.errors import NotFound, QueueFull
from supervisor.models import JobRecord, JobState
from supervisor.queue import JobQueue
from supervisor.registry import JobOptions, Registry
from supervisor.runner.adopt import ever_ran, find_leader
from supervisor.runner.cgroups import JobCgroups
from supervisor.runner.files import RunFiles
from supervisor.runner.launch import LaunchPaths, launch
from supervisor.runner.reap import Reaper, wait_adopted
from supervisor.runner.supervise import Limits, Outcome, RunningJob, supervise
from supervisor.runner.tree import JobTree
from supervisor.settings import Settings
from supervisor.store import Store
from supervisor.userlog import UserLog

_FINAL_FIELDS = ("state", "result", "error_type", "error_message", "exit_code", "signal",
                 "reason", "killed_at", "finished_at", "pid")


@dataclass
class Services:
    settings: Settings
    store: Store
    user_log: UserLog
    reaper: Reaper
    cgroups: JobCgroups | None
    events_socket: Path | None


class Scheduler:
    def __init__(self, services: Services, registry: Callable[[], Registry]) -> None:
        self.s = services
        self._registry = registry
        self.queue = JobQueue()
        self.running: dict[str, RunningJob] = {}
        self._done: dict[str, anyio.Event] = {}
        self._changed: dict[str, anyio.Event] = {}
        self._wake = anyio.Event()
        self._tg: TaskGroup | None = None
        self._adopted: list[tuple[int, RunningJob]] = []
        self.stats: Counter[str] = Counter()

    # -- submissions ---------------------------------------------------------------

    def check_room(self, count: int) -> None:
        if len(self.queue) + count > self.s.settings.max_queue:
            raise QueueFull(
                f"the queue holds {len(self.queue)} jobs and max_queue is {self.s.settings.max_queue}; retry later"
            )

    def submit(self, records: list[JobRecord]) -> None:
        """Persist, then queue, then start what may start now."""
        self.check_room(len(records))
        self.s.store.insert(records)
        for rec in records:
            self.s.user_log.event(rec, "queued")
            self.queue.push(rec)
        self.dispatch()

    # -- recovery after a restart -------------------------------------------------

    def recover(self) -> None:
        """Queued jobs go back in the queue; running ones are re-adopted, finished or re-queued."""
        host = self.s.settings.host_id
        for rec in self.s.store.in_states(JobState.QUEUED):
            self.queue.push(rec)
        for rec in self.s.store.in_states(JobState.RUNNING):
            if rec.processed_by in (None, host):
                self._recover_running(rec)

    def _recover_running(self, rec: JobRecord) -> None:
        files = RunFiles.of(self.s.settings.state_dir, rec.id)
        cgroup = self.s.cgroups.path(rec.id) if self.s.cgroups else None
        if cgroup is not None and not cgroup.exists():
            cgroup = None
        leader = find_leader(rec)
        if leader is not None:
            run = self.adopt(rec, JobTree(rec.id, leader.pid, leader.started, cgroup))
            self._adopted.append((leader.pidfd, run))
            self.s.user_log.event(rec, f"re-adopted after a daemon restart (pid {leader.pid})")
        elif ever_ran(files):
            self.adopt(rec, JobTree(rec.id, None, rec.started_at, cgroup))
        else:  # the daemon died between claiming and starting it: job code never ran
            rec.state, rec.attempt, rec.pid = JobState.QUEUED, max(rec.attempt - 1, 0), None
            self.s.store.update(rec, "state", "attempt", "pid")
            self.queue.push(rec)

    # -- cancel ---------------------------------------------------------------------

    def cancel(self, rec: JobRecord) -> None:
        if self.queue.remove(rec.id) is not None:
            self._finalize(rec, Outcome(JobState.CANCELLED, reason="cancelled", error_type="Cancelled",
                                        error_message="cancelled before it started"))
            return
        run = self.running.get(rec.id)
        if run is None:
            raise NotFound(f"job {rec.id} has already ended ({rec.state})")
        run.request_cancel()

    # -- waiting -------------------------------------------------------------------

    async def wait_done(self, job_id: str, timeout: float) -> None:
        event = self._done.setdefault(job_id, anyio.Event())
        with anyio.move_on_after(timeout):
            await event.wait()

    async def wait_change(self, job_id: str, timeout: float) -> None:
        event = self._changed.setdefault(job_id, anyio.Event())
        with anyio.move_on_after(timeout):
            await event.wait()

    def _notify(self, job_id: str, done: bool = False) -> None:
        changed = self._changed.pop(job_id, None)
        if changed:
            changed.set()
        if done:
            event = self._done.pop(job_id, None)
            if event:
                event.set()

    # -- progress ------------------------------------------------------------------

    def on_progress(self, job_id: str, done: float, total: float | None, message: str | None) -> None:
        run = self.running.get(job_id)
        if run is None:
            return
        rec = run.rec
        rec.progress, rec.total, rec.message = done, total, message or rec.message
        run.last_progress = time.time()
        self.s.store.update(rec, "progress", "total", "message")
        self._notify(job_id)

    # -- dispatching ---------------------------------------------------------------

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for run in list(self.running.values()):
                tg.start_soon(self._supervise, run)
            for pidfd, run in self._adopted:
                tg.start_soon(wait_adopted, pidfd, run.on_exit)
            self._adopted.clear()
            while True:
                self.dispatch()
                next_at = self.queue.next_not_before()
                delay = max(next_at - time.time(), 0.01) if next_at else 3600.0
                with anyio.move_on_after(delay):
                    await self._wake.wait()
                self._wake = anyio.Event()

    def wake(self) -> None:
        self._wake.set()

    def dispatch(self) -> None:
        if self._tg is None:
            return
        while len(self.running) < self.s.settings.max_concurrency:
            rec = self.queue.pick(self._eligibility())
            if rec is None:
                return
            self._start(rec)

    def _eligibility(self) -> Callable[[JobRecord], bool]:
        now = time.time()
        per_type = Counter(run.rec.job for run in self.running.values())
        busy_keys = {(r.rec.job, r.rec.concurrency_key) for r in self.running.values() if r.rec.concurrency_key}
        types = self._registry().types

        def eligible(rec: JobRecord) -> bool:
            key = (rec.job, rec.concurrency_key) if rec.concurrency_key is not None else None
            if key in busy_keys:
                return False
            if key is not None:
                busy_keys.add(key)  # later jobs with this key wait behind this one (FIFO per key)
            if rec.not_before > now:
                return False
            jt = types.get(rec.job)
            limit = jt.options.concurrency if jt else None
            return not (limit and per_type[rec.job] >= limit)

        return eligible

    def options_of(self, job: str) -> JobOptions:
        jt = self._registry().types.get(job)
        return jt.options if jt else JobOptions()

    def limits_of(self, job: str) -> Limits:
        opts, settings = self.options_of(job), self.s.settings
        return Limits(
            timeout=opts.timeout or settings.default_timeout,
            idle_timeout=opts.idle_timeout,
            max_memory=opts.max_memory,
            kill_grace=settings.kill_grace if opts.kill_grace is None else opts.kill_grace,
        )

    def _start(self, rec: JobRecord) -> None:
        jt = self._registry().types.get(rec.job)
        if jt is None:
            self._finalize(rec, Outcome(JobState.FAILED, error_type="UnknownJob",
                                        error_message=f"job type {rec.job!r} is no longer defined"))
            return
        rec.state, rec.attempt, rec.started_at = JobState.RUNNING, rec.attempt + 1, time.time()
        rec.processed_by, rec.pid, rec.pid_started = self.s.settings.host_id, None, None
        rec.progress = rec.total = rec.message = None
        self.s.store.update(rec, "state", "attempt", "started_at", "processed_by", "pid", "pid_started",
                            "progress", "total", "message")
        cgroup = self.s.cgroups.create(rec.id) if self.s.cgroups else None
        paths = LaunchPaths(self.s.settings.state_dir, self.s.settings.logs,
                            self.s.events_socket, cgroup)
        try:
            launched = launch(rec, jt, paths)
        except OSError as exc:
            logger.exception("cannot start job {}", rec.id)
            self._finalize(rec, Outcome(JobState.FAILED, error_type="LaunchError", error_message=str(exc)))
            return
        rec.pid, rec.pid_started = launched.pid, launched.started
        self.s.store.update(rec, "pid", "pid_started")
        run = self.adopt(rec, JobTree(rec.id, launched.pid, launched.started or rec.started_at, cgroup))
        self.s.reaper.watch_child(launched.pid, run.on_exit)
        self.s.user_log.event(rec, f"started (pid {launched.pid}, attempt {rec.attempt})")
        self._notify(rec.id)
        assert self._tg is not None
        self._tg.start_soon(self._supervise, run)

    def adopt(self, rec: JobRecord, tree: JobTree) -> RunningJob:
        run = RunningJob(rec, tree, RunFiles.of(self.s.settings.state_dir, rec.id), self.limits_of(rec.job),
                         self.s.settings.logs)
        self.running[rec.id] = run
        if tree.leader_pid is None:  # recovered after its process ended: straight to the outcome
            run.on_exit(None)
        return run

    async def _supervise(self, run: RunningJob) -> None:
        outcome = await supervise(run)
        del self.running[run.rec.id]
        self._finish(run.rec, outcome)
        run.files.remove()
        if self.s.cgroups:
            self.s.cgroups.remove(run.rec.id)
        self.dispatch()

    # -- endings -----------------------------------------------------------------

    def _finish(self, rec: JobRecord, outcome: Outcome) -> None:
        opts = self.options_of(rec.job)
        retryable = outcome.state in (JobState.FAILED, JobState.TIMED_OUT, JobState.HUNG, JobState.LOST)
        if retryable and rec.attempt <= opts.retries:
            self._retry(rec, outcome, opts)
        else:
            self._finalize(rec, outcome)

    def _retry(self, rec: JobRecord, outcome: Outcome, opts: JobOptions) -> None:
        delay = opts.retry_backoff * 2 ** (rec.attempt - 1)
        rec.state, rec.not_before, rec.pid = JobState.QUEUED, time.time() + delay, None
        rec.error_type, rec.error_message = outcome.error_type, outcome.error_message
        self.s.store.update(rec, "state", "not_before", "pid", "error_type", "error_message")
        self.s.user_log.event(rec, f"attempt {rec.attempt} {outcome.state}: {outcome.error_message}; "
                                   f"retrying in {delay:g} s")
        self.queue.push(rec)
        self._notify(rec.id)
        self.wake()

    def _finalize(self, rec: JobRecord, outcome: Outcome) -> None:
        for name, value in vars(outcome).items():
            setattr(rec, name, value)
        rec.finished_at = time.time()
        self.s.store.update(rec, *_FINAL_FIELDS)
        self.s.user_log.event(rec, _ending_text(rec))
        self.stats[f"{rec.job}|{rec.state}"] += 1
        if rec.reason:
            self.stats[f"kill|{rec.reason}"] += 1
        self._notify(rec.id, done=True)


def _ending_text(rec: JobRecord) -> str:
    text = str(rec.state)
    if rec.error_type:
        text += f": {rec.error_type}: {rec.error_message}"
    if rec.signal:
        text += f" (ended by {signal.Signals(rec.signal).name})"
    return text
