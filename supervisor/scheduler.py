"""Decides what runs when: queue order, concurrency limits, per-key serialisation, retries.

Owns the running jobs: it launches them, supervises each in its own task and records
how each ended. The store is the truth; the queue and running table are its live view.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup
from loguru import logger

from supervisor.dependencies import DEPENDENCY_FAILED, DependencyView
from supervisor.eligibility import Eligibility
from supervisor.errors import NotAllowed, NotFound, QueueFull, StoreUnavailable
from supervisor.exec_policy import EXEC_TYPE, check_exec
from supervisor.ids import is_job_id
from supervisor.metrics import JobStats
from supervisor.models import JobRecord, JobState, KillReason
from supervisor.names import admin_names
from supervisor.queue import JobQueue, Turns
from supervisor.queue_control import QueueControl, QueueState
from supervisor.waiting import explain
from supervisor.registry import JobOptions, Registry
from supervisor.runner.adopt import Leader, ever_ran, find_leaders
from supervisor.runner.cgroups import JobCgroups, cgroup_kill, process_cgroup
from supervisor.runner.spares import spare_cgroup_owner
from supervisor.reports import MAX_REPORT_BYTES, Progress, parse_progress, signal_name
from supervisor.runner.files import RunFiles, Trash, read_json
from supervisor.runner.forkserver import ForkServer
from supervisor.runner.identity import job_identity
from supervisor.runner.launch import LaunchPaths, launch
from supervisor.runner.reap import Reaper, wait_adopted
from supervisor.runner.supervise import Limits, Outcome, RunningJob, supervise
from supervisor.runner.tree import JobTree
from supervisor.settings import Settings
from supervisor.store.guard import StoreGuard
from supervisor.userlog import UserLog

if TYPE_CHECKING:  # psycopg is optional; only a shared store imports it
    from supervisor.shared_queue import SharedQueue

_TRASH_INTERVAL = 0.25
_SUBMIT_CHUNK = 256  # jobs of a batch queued between two turns of the event loop
_FINAL_FIELDS = ("state", "result", "error_type", "error_message", "exit_code", "signal",
                 "reason", "killed_at", "finished_at", "pid")


@dataclass
class Services:
    settings: Settings
    store: StoreGuard  # store faults stop there: updates are kept while it is down
    user_log: UserLog
    reaper: Reaper
    cgroups: JobCgroups | None
    events_socket: Path | None
    forkserver: ForkServer | None = None
    shim: Path | None = None  # runner/shim.py: the native command-job shim, if built and enabled


class Scheduler:
    def __init__(self, services: Services, registry: Callable[[], Registry],
                 queue: JobQueue | SharedQueue | None = None) -> None:
        self.s = services
        self._registry = registry
        # A shared store brings its own queue: the rows themselves, claimed in SQL (supervisor/shared_queue.py).
        self.queue = queue if queue is not None else JobQueue()
        self._admins = admin_names(services.settings.admins)
        self.running: dict[str, RunningJob] = {}
        self._done: dict[str, anyio.Event] = {}
        self._changed: dict[str, anyio.Event] = {}
        self._wake = anyio.Event()
        self._tg: TaskGroup | None = None
        self._adopted: list[tuple[int, RunningJob]] = []
        self._trash = Trash(services.settings.state_dir)
        self._unrecorded: dict[str, RunFiles] = {}  # run dirs of ended jobs whose end the store has not taken yet
        self._abandoned = False  # the lease was taken over: start nothing, record nothing (abandon())
        self._stats = JobStats()
        # Called with each job's final record after it is persisted (batch callbacks hook in here).
        self._end_hooks: list[Callable[[JobRecord], None]] = [self._end_dependents_of]
        self._ending: list[JobRecord] | None = None  # jobs whose dependents a cascade has yet to end
        self.control = QueueControl()  # pause and parallel, as the store keeps them (recover, change_control)

    # -- what others may ask --------------------------------------------------------

    def is_running(self, job_id: str) -> bool:
        """Running on this host (a job of another host sharing the store is not)."""
        return job_id in self.running

    def running_count(self, requestor: str | None = None) -> int:
        """Jobs running on this host: all, or `requestor`'s."""
        if requestor is None:
            return len(self.running)
        return sum(1 for run in self.running.values() if run.rec.requestor == requestor)

    def queued_count(self, requestor: str | None = None) -> int:
        """Jobs waiting: all, or `requestor`'s. A shared queue counts its rows (StoreUnavailable
        while the store is down)."""
        return len(self.queue) if requestor is None else self.queue.queued_by(requestor)

    def command_shim(self) -> str:
        """How command jobs relay their output: the native shim (runner/shim.c) or Python."""
        return "native" if self.s.shim else "python"

    def stats(self) -> JobStats:
        return self._stats

    def add_end_hook(self, hook: Callable[[JobRecord], None]) -> None:
        """`hook(rec)` runs after each job's end is persisted; its errors are logged, never raised."""
        self._end_hooks.append(hook)

    def ended_elsewhere(self, rec: JobRecord) -> None:
        """A dead host's job that this host settled as lost: counted, and the end hooks run."""
        self._stats.job_ended(rec, ran_here=False)
        self._run_end_hooks(rec)

    # -- submissions ---------------------------------------------------------------

    def check_room(self, records: list[JobRecord], capped: bool = False) -> None:
        """429 when the queue, or (`capped`: a non-admin's submission) the requestor's share of it, is full."""
        s = self.s.settings
        if len(self.queue) + len(records) > s.max_queue:
            raise QueueFull(f"the queue holds {len(self.queue)} jobs and max_queue is {s.max_queue}; retry later")
        if not capped:
            return
        for requestor, count in Counter(r.requestor for r in records).items():
            queued = self.queue.queued_by(requestor)
            if queued + count > s.max_queued_per_user:
                raise QueueFull(f"{requestor} has {queued} jobs queued and max_queued_per_user is "
                                f"{s.max_queued_per_user} (this submission adds {count}); retry when some have "
                                "started, or ask an admin to raise RUNSPACE_MAX_QUEUED_PER_USER")

    def submit(self, records: list[JobRecord], capped: bool = False) -> None:
        """Persist, then queue, then start what may start now."""
        self.accept(records, capped)
        self._queue(records)

    def accept(self, records: list[JobRecord], capped: bool = False) -> None:
        """Check room and identities, then persist: the commit point of a submission."""
        self.check_room(records, capped)
        for job, requestor in {(r.job, r.requestor) for r in records}:  # 403 now, not a failed job later
            if job == EXEC_TYPE:
                check_exec(requestor, self.s.settings)
            job_identity(self._registry().get(job).options, requestor, self.s.settings)
        self.s.store.insert(records)

    async def queue_stored(self, records: list[JobRecord]) -> None:
        """Queue accepted jobs of a batch of any size: their user-log lines are written in a worker
        thread (a new user's file costs a file creation) and the event loop serves between chunks."""
        for start in range(0, len(records), _SUBMIT_CHUNK):
            chunk = records[start:start + _SUBMIT_CHUNK]
            await anyio.to_thread.run_sync(self._log_queued, chunk)
            self._queue(chunk, logged=True)

    def _queue(self, records: list[JobRecord], logged: bool = False) -> None:
        dependencies = DependencyView(self.s.store)
        for rec in records:
            if not logged:
                self.s.user_log.event(rec, "queued")
            self._enqueue(rec, dependencies)
        self._settle_dependencies([rec for rec in records if rec.after_ids], dependencies)
        if any(rec.not_before for rec in records):
            self.wake()  # the run loop sleeps until the next due time it knows of
        self.dispatch()

    def _enqueue(self, rec: JobRecord, dependencies: DependencyView) -> None:
        """Into the queue; a job that waits for another to succeed is held until it has (a shared
        queue is the store's rows: its claim's SQL holds such jobs itself)."""
        if not rec.after_ids or not isinstance(self.queue, JobQueue):
            self.queue.push(rec)
            return
        try:
            held, unfinished = dependencies.waiting_for(rec) is not None, dependencies.unfinished(rec)
        except StoreUnavailable:  # not held, then: each pick judges its `after` jobs again
            held, unfinished = False, rec.after_ids
        self.queue.push(rec, held, unfinished)

    def _log_queued(self, records: list[JobRecord]) -> None:
        for rec in records:
            self.s.user_log.event(rec, "queued")

    def rank(self, rec: JobRecord) -> int:
        """A job's priority against other users' jobs (supervisor/queue.py): an admin's as given;
        a non-admin's is the type's default, whatever they asked for."""
        return rec.priority if rec.requestor in self._admins else self.options_of(rec.job).priority

    # -- recovery after a restart -------------------------------------------------

    def recover(self) -> None:
        """Queued jobs go back in the queue; running ones are re-adopted, finished or re-queued."""
        host = self.s.settings.host_id
        self.reload_control()
        queued = self.s.store.in_states(JobState.QUEUED)
        dependencies = DependencyView(self.s.store)
        for rec in queued:
            self._enqueue(rec, dependencies)
        self._settle_dependencies([rec for rec in queued if rec.after_ids], dependencies)  # ended while we were down
        mine = [rec for rec in self.s.store.in_states(JobState.RUNNING) if rec.processed_by in (None, host)]
        leaders = find_leaders(mine)
        for rec in mine:
            self._recover_running(rec, leaders.get(rec.id))
        self._trash.delete_all()
        self._remove_stale_run_dirs()
        self._remove_stale_cgroups()

    def _remove_stale_run_dirs(self) -> None:
        """Run dirs of jobs that are no longer running: left by a crash during clean-up."""
        run_root = RunFiles.root(self.s.settings.state_dir)
        if run_root.is_dir():
            for path in run_root.iterdir():
                if path.name not in self.running and is_job_id(path.name):
                    RunFiles(path).remove()

    def _remove_stale_cgroups(self) -> None:
        """Cgroups of ended jobs (a crash during clean-up) and of earlier fork servers' spares
        (the daemon starts its fork server after this)."""
        live = {run.tree.cgroup for run in self.running.values()}
        for path in self.s.cgroups.all() if self.s.cgroups else []:
            if _our_cgroup_name(path.name) and path not in live:
                cgroup_kill(path)  # anything inside is a stray of an ended job
                self.s.cgroups.remove(path)

    def _recover_running(self, rec: JobRecord, leader: Leader | None) -> None:
        files = RunFiles.of(self.s.settings.state_dir, rec.id)
        cgroup = self._recovered_cgroup(rec, leader)
        if leader is not None:
            if (rec.pid, rec.pid_started) != (leader.pid, leader.started):  # found by its marker
                rec.pid, rec.pid_started = leader.pid, leader.started
                self.s.store.update(rec, "pid", "pid_started")
            run = self._track(rec, JobTree(rec.id, leader.pid, leader.started, cgroup))
            self._adopted.append((leader.pidfd, run))
            self.s.user_log.event(rec, f"re-adopted after a daemon restart (pid {leader.pid})")
        elif ever_ran(files):
            run = self._track(rec, JobTree(rec.id, None, rec.started_at, cgroup))
        else:  # the daemon died between claiming and starting it: job code never ran
            rec.state, rec.attempt, rec.pid = JobState.QUEUED, max(rec.attempt - 1, 0), None
            self.s.store.update(rec, "state", "attempt", "pid")
            self.queue.push(rec)
            return
        if rec.reason in set(KillReason):  # a kill was decided before the crash: carry it out
            run.kill_reason, run.killed_at = KillReason(rec.reason), rec.killed_at

    def _recovered_cgroup(self, rec: JobRecord, leader: Leader | None) -> Path | None:
        """Where its leader is; else as recorded at launch (the leader has ended); else the
        job's own name (a posix_spawned job's, if the daemon died before recording it)."""
        if self.s.cgroups is None:
            return None
        root = self.s.cgroups.root
        candidates = [process_cgroup(leader.pid, root) if leader else None,
                      Path(rec.cgroup) if rec.cgroup else None, root / rec.id]
        return next((c for c in candidates if c is not None and c.parent == root and _our_cgroup_name(c.name)
                     and c.exists()), None)

    # -- cancel ---------------------------------------------------------------------

    def cancel(self, rec: JobRecord) -> None:
        if self.queue.remove(rec.id) is not None:
            self._record_end(rec, Outcome(JobState.CANCELLED, reason="cancelled", error_type="Cancelled",
                                        error_message="cancelled before it started"))
            return
        run = self.running.get(rec.id)
        if run is None:
            if not isinstance(self.queue, JobQueue) and self.queue.forward_cancel(rec):
                return  # running on another host of the shared store, which now kills it
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

    def on_remote_change(self, job_id: str, done: bool) -> None:
        """Another host changed a job of the shared store: wake this host's waiters."""
        self._notify(job_id, done)

    def release_waiters(self) -> None:
        """Wake every long-poll (they answer with the current status): used when the daemon stops."""
        for events in (self._changed, self._done):
            for event in events.values():
                event.set()
            events.clear()

    def _notify(self, job_id: str, done: bool = False) -> None:
        changed = self._changed.pop(job_id, None)
        if changed:
            changed.set()
        if done:
            event = self._done.pop(job_id, None)
            if event:
                event.set()

    # -- progress ------------------------------------------------------------------

    def on_progress(self, report: Progress) -> None:
        run = self.running.get(report.job_id)
        if run is None:
            return
        rec = run.rec
        rec.progress, rec.total, rec.message = report.done, report.total, report.message or rec.message
        run.last_progress = time.time()
        self.s.store.update(rec, "progress", "total", "message")
        self._notify(rec.id)

    def on_progress_ping(self, job_id: str) -> None:
        """A job says it rewrote its progress.json. The ping's own values are not trusted (any
        local user may send to the socket): the report is what the job's run dir holds."""
        run = self.running.get(job_id)
        if run is not None:
            self._read_progress(run)

    def _read_progress(self, run: RunningJob) -> None:
        """The job's last report from its progress.json, if it is one not read before: after a
        ping, and when the job ends (a report sent while the daemon was down, or dropped by a
        full socket, never pinged). A file no one rewrote is no sign of life for the idle timeout."""
        try:
            st = run.files.progress.stat()
        except OSError:
            return
        # Each report is a new file renamed into place; a new inode number and time tell a
        # repeated report apart, the content one within the same clock tick and a reused inode.
        seen = (st.st_ino, st.st_mtime_ns, read_json(run.files.progress, MAX_REPORT_BYTES))
        if seen == run.progress_seen:
            return
        run.progress_seen = seen
        report = parse_progress(seen[2], run.rec.id)
        if report is not None:
            self.on_progress(report)

    # -- dispatching ---------------------------------------------------------------

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for run in list(self.running.values()):
                tg.start_soon(self._supervise, run)
            for pidfd, run in self._adopted:
                tg.start_soon(wait_adopted, pidfd, run.on_exit)
            self._adopted.clear()
            tg.start_soon(self._empty_trash)
            while True:
                self.dispatch()
                try:
                    next_at = self.queue.next_not_before()
                except StoreUnavailable:  # the store guard wakes this loop when it recovers
                    next_at = None
                delay = max(next_at - time.time(), 0.01) if next_at else 3600.0
                with anyio.move_on_after(delay):
                    await self._wake.wait()
                self._wake = anyio.Event()

    async def abandon(self) -> None:
        """This host lost its shared-store lease: other hosts have re-queued or settled its
        jobs. Start nothing more, and kill every job it runs, whose ends no one records."""
        self._abandoned = True
        for run in self.running.values():
            run.abandon()
        grace = max((run.limits.kill_grace for run in self.running.values()), default=0.0)
        with anyio.move_on_after(grace + 5.0):
            while self.running:
                await anyio.sleep(0.05)

    def wake(self) -> None:
        self._wake.set()

    def dispatch(self) -> None:
        # Nothing starts while the store cannot record it: a job started then could run
        # again after a crash (its start never written), and its end could not be kept.
        if self._tg is None or self._abandoned or not self.s.store.accepts_writes:
            return
        if self.control.paused:
            return
        while len(self.running) < self.max_running():
            turns = Turns(self.rank, Counter(run.rec.requestor for run in self.running.values()))
            try:
                rec = self.queue.pick(self._eligibility(), turns)
            except StoreUnavailable:
                return
            if rec is None:
                return
            self._start(rec)

    def _eligibility(self) -> Eligibility:
        control = self.control
        dependencies = DependencyView(self.s.store)
        return Eligibility((run.rec for run in self.running.values()),
                           lambda job: control.limit_of(job, self.options_of(job).concurrency), control.holds,
                           lambda rec: bool(rec.after_ids and dependencies.waiting_for(rec)))

    # -- queue control ----------------------------------------------------------------

    def queue_state(self) -> QueueState:
        return QueueState(**self.control.model_dump(), max_concurrency=self.max_running(),
                          running=len(self.running), queued=len(self.queue))

    def max_running(self) -> int:
        return self.control.parallel or self.s.settings.max_concurrency

    def change_control(self, change: Callable[[QueueControl], QueueControl]) -> None:
        """Apply `change` to the settings the store holds, in one of its transactions (a change made
        at the same time, here or on another host, is never undone); then start what may start now."""
        stored = self.s.store.change_queue_control(lambda value: change(QueueControl.from_stored(value)).model_dump())
        self.control = QueueControl.model_validate(stored)
        logger.info("queue control: {}", self.control.model_dump_json())
        self.wake()

    def why_waiting(self, rec: JobRecord, shows: Callable[[str], bool]) -> tuple[str, int] | None:
        """(waiting_for, queue_position) of a queued job, for its status to a caller who may see
        the jobs for which `shows(job_id)`."""
        opts = self.options_of(rec.job)
        return explain(rec, self.s.store, self.control, opts.concurrency, opts.concurrency_key, shows)

    def reload_control(self) -> None:
        """From the store: at start, and when another host of a shared store changed it."""
        self.control = QueueControl.from_stored(self.s.store.queue_control())

    def options_of(self, job: str) -> JobOptions:
        jt = self._registry().types.get(job)
        return jt.options if jt else JobOptions()

    def limits_for(self, rec: JobRecord) -> Limits:
        """Its type's limits; an exec job may ask for its own timeouts (`runspace exec --timeout`)."""
        limits = self.limits_of(rec.job)
        if rec.job == EXEC_TYPE:
            limits = dataclasses.replace(limits, timeout=rec.params.get("timeout") or limits.timeout,
                                         idle_timeout=rec.params.get("idle_timeout") or limits.idle_timeout)
        return limits

    def limits_of(self, job: str) -> Limits:
        opts = self.options_of(job).applied(self.s.settings)
        assert opts.timeout is not None and opts.kill_grace is not None  # applied() fills both
        return Limits(timeout=opts.timeout, idle_timeout=opts.idle_timeout, max_memory=opts.max_memory,
                      kill_grace=opts.kill_grace, max_result_bytes=self.s.settings.max_result_bytes)

    def _start(self, rec: JobRecord) -> None:
        jt = self._registry().types.get(rec.job)
        if jt is None:
            self._record_end(rec, Outcome(JobState.FAILED, error_type="UnknownJob",
                                        error_message=f"job type {rec.job!r} is no longer defined"))
            return
        rec.state, rec.attempt, rec.started_at = JobState.RUNNING, rec.attempt + 1, time.time()
        rec.processed_by, rec.pid, rec.pid_started, rec.cgroup = self.s.settings.host_id, None, None, None
        rec.progress = rec.total = rec.message = None
        self.s.store.update(rec, "state", "attempt", "started_at", "processed_by", "pid", "pid_started",
                            "cgroup", "progress", "total", "message")
        try:
            run_as = job_identity(jt.options, rec.requestor, self.s.settings)
            paths = LaunchPaths(self.s.settings.state_dir, self.s.settings.logs,
                                self.s.events_socket, self.s.cgroups, run_as, self.s.shim,
                                jt.options.applied(self.s.settings).max_log_bytes)
            launched = launch(rec, jt, paths, self.s.forkserver)
        except (OSError, NotAllowed) as exc:
            logger.exception("cannot start job {}", rec.id)
            self._record_end(rec, Outcome(JobState.FAILED, error_type="LaunchError", error_message=str(exc)))
            return
        rec.pid, rec.pid_started = launched.pid, launched.started
        rec.cgroup = str(launched.cgroup) if launched.cgroup else None
        self.s.store.update(rec, "pid", "pid_started", "cgroup")
        run = self._track(rec, JobTree(rec.id, launched.pid, launched.started or rec.started_at,
                                            launched.cgroup))
        self.s.reaper.watch_child(launched.pid, run.on_exit)
        if launched.forked:
            self._watch_by_pidfd(launched.pid, run)
        self._notify(rec.id)
        assert self._tg is not None
        self._tg.start_soon(self._supervise, run)

    def _watch_by_pidfd(self, pid: int, run: RunningJob) -> None:
        """A fork-server child is not ours to wait for; its pidfd says when it ends."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            run.on_exit(None)
            return
        assert self._tg is not None
        self._tg.start_soon(wait_adopted, pidfd, run.on_exit)

    def _track(self, rec: JobRecord, tree: JobTree) -> RunningJob:
        """Make a job (just launched, or found again after a restart) one this scheduler supervises."""
        run = RunningJob(rec, tree, RunFiles.of(self.s.settings.state_dir, rec.id), self.limits_for(rec),
                         self.s.settings.logs)
        self.running[rec.id] = run
        if tree.leader_pid is None:  # recovered after its process ended: straight to the outcome
            run.on_exit(None)
        return run

    async def _supervise(self, run: RunningJob) -> None:
        outcome = await supervise(run, self._record_kill)
        if run.tree.leader_pid is not None:
            self.s.reaper.forget(run.tree.leader_pid, run.on_exit)
        self._read_progress(run)
        del self.running[run.rec.id]
        if not self._abandoned:
            self._end_or_retry(run.rec, outcome)
        if self.s.cgroups and run.tree.cgroup:
            self.s.cgroups.remove(run.tree.cgroup)
        if run.rec.state.done:  # a retry has removed the run dir already, before re-queueing
            self._discard_run_dir(run)
        self.dispatch()

    def _discard_run_dir(self, run: RunningJob) -> None:
        """Once the job's end is in the store: until then its result.json is the only record of
        it that outlives this daemon (the next start reads it there)."""
        if self.s.store.is_kept(run.rec.id):
            self._unrecorded[run.rec.id] = run.files
        else:
            self._trash.put(run.files)

    def on_store_recovered(self) -> None:
        for job_id, files in list(self._unrecorded.items()):
            if not self.s.store.is_kept(job_id):
                del self._unrecorded[job_id]
                self._trash.put(files)
        self.wake()

    async def _empty_trash(self) -> None:
        while True:
            await anyio.sleep(_TRASH_INTERVAL)
            batch = self._trash.take()
            if batch:
                await anyio.to_thread.run_sync(Trash.delete, batch)

    def _record_kill(self, run: RunningJob) -> None:
        rec = run.rec
        rec.reason = run.kill_reason.value if run.kill_reason else None
        rec.killed_at = run.killed_at
        self.s.store.update(rec, "reason", "killed_at")
        self._notify(rec.id)

    # -- endings -----------------------------------------------------------------

    def _end_or_retry(self, rec: JobRecord, outcome: Outcome) -> None:
        opts = self.options_of(rec.job)
        retryable = outcome.state in (JobState.FAILED, JobState.TIMED_OUT, JobState.HUNG, JobState.LOST)
        if retryable and rec.attempt <= opts.retries:
            self._retry(rec, outcome, opts)
        else:
            self._record_end(rec, outcome)

    def _retry(self, rec: JobRecord, outcome: Outcome, opts: JobOptions) -> None:
        delay = opts.retry_backoff * 2 ** (rec.attempt - 1)
        # The next attempt must find no `started` guard of this one, even if we crash right here.
        RunFiles.of(self.s.settings.state_dir, rec.id).remove()
        rec.state, rec.not_before, rec.pid = JobState.QUEUED, time.time() + delay, None
        rec.error_type, rec.error_message = outcome.error_type, outcome.error_message
        rec.reason, rec.killed_at = None, None
        self.s.store.update(rec, "state", "not_before", "pid", "error_type", "error_message", "reason", "killed_at")
        self.s.user_log.event(rec, f"attempt {rec.attempt} {outcome.state}: {outcome.error_type}: "
                                   f"{outcome.error_message}; retrying in {delay:g} s")
        self.queue.push(rec)
        self._notify(rec.id)
        self.wake()

    def _record_end(self, rec: JobRecord, outcome: Outcome) -> None:
        for name, value in vars(outcome).items():
            setattr(rec, name, value)
        rec.finished_at = rec.finished_at or time.time()
        self.s.store.update(rec, *_FINAL_FIELDS)
        self.s.user_log.event(rec, _ending_text(rec))
        self._stats.job_ended(rec)
        self._notify(rec.id, done=True)
        self._run_end_hooks(rec)

    def _run_end_hooks(self, rec: JobRecord) -> None:
        for hook in self._end_hooks:
            try:
                hook(rec)
            except Exception:  # a hook must never stop the scheduler
                logger.exception("end hook {} failed for job {}", hook, rec.id)

    # -- dependencies ---------------------------------------------------------------

    def _end_dependents_of(self, rec: JobRecord) -> None:
        """An end hook, so a job settled for a dead host (ended_elsewhere) counts too. Its dependents
        are found in the in-memory queue (SQLite) or in SQL (shared store), once per ended job."""
        if rec.state == JobState.SUCCEEDED:
            if isinstance(self.queue, JobQueue):
                self._release_dependents(self.queue, rec.id)
            return
        if self._ending is not None:  # inside a cascade: its loop below takes this one too
            self._ending.append(rec)
            return
        # A worklist, not recursion through the end hooks: a chain of 10,000 jobs each after the
        # previous one would exceed Python's recursion limit and leave the rest queued forever.
        self._ending = [rec]
        try:
            while self._ending:
                ended = self._ending.pop()
                for dependent in self.queue.dependents_of(ended.id):
                    self._end_dependent(dependent, f"job {ended.id} it was to run after ended {ended.state}")
        finally:
            self._ending = None

    def _release_dependents(self, queue: JobQueue, job_id: str) -> None:
        dependencies = DependencyView(self.s.store)
        released = False
        for dependent in queue.dependents_of(job_id):
            if queue.is_held(dependent.id) and dependencies.waiting_for(dependent) is None:
                queue.release(dependent)
                released = True
        if released:
            self.wake()

    def _settle_dependencies(self, records: list[JobRecord], dependencies: DependencyView) -> None:
        """End the jobs among `records` that wait for a job that already ended other than succeeded
        (`dependencies`: what _enqueue read already is not read again; the rest in one query)."""
        dependencies.read(records)
        for rec in records:
            why = dependencies.failed(rec)
            if why is not None:
                self._end_dependent(rec, why)

    def _end_dependent(self, rec: JobRecord, why: str) -> None:
        queued = self.queue.remove(rec.id)  # None: started or ended meanwhile (another host's doing)
        if queued is not None:
            self._record_end(queued, Outcome(JobState.CANCELLED, reason=DEPENDENCY_FAILED,
                                             error_type="DependencyFailed", error_message=why))


def _our_cgroup_name(name: str) -> bool:
    """A cgroup we made for a job: named after it, or after the fork server that made it."""
    return is_job_id(name) or spare_cgroup_owner(name) is not None


def _ending_text(rec: JobRecord) -> str:
    text = str(rec.state)
    if rec.error_type:
        text += f": {rec.error_type}: {rec.error_message}"
    if rec.signal:
        text += f" (ended by {signal_name(rec.signal)})"
    return text
