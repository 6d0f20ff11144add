"""Several daemons on one PostgreSQL store: the lease and notification tasks of one member.

`Cluster.join()` takes the lease before the scheduler recovers (so survivors never
settle jobs this host is about to re-adopt); `run()` then keeps the lease, settles
dead hosts, and turns NOTIFY messages into scheduler wake-ups, finished-job events and
forwarded cancels. A member whose lease was taken over kills its jobs and stops.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import psycopg
from loguru import logger

from supervisor.errors import NotFound, StoreUnavailable
from supervisor.hosts import HostLease, LeaseLost, SettledJob
from supervisor.models import JobState
from supervisor.registry import Registry
from supervisor.scheduler import Scheduler
from supervisor.settings import Settings
from supervisor.shared_queue import CANCEL_CHANNEL, FALLBACK_POLL, SharedQueue
from supervisor.store.postgres import JOB_CHANNEL, PostgresStore
from supervisor.userlog import UserLog

_RECONNECT_DELAY, _MAX_RECONNECT_DELAY = 1.0, 8.0


class Cluster:
    def __init__(self, store: PostgresStore, settings: Settings, registry: Callable[[], Registry]) -> None:
        self.store = store
        self.host_id = settings.host_id
        self.lease = HostLease(store, settings.host_id, settings.lease_ttl, settings.state_dir)
        self.queue = SharedQueue(store, self.lease, registry)
        self._listening = False

    def join(self) -> None:
        """Take this host id's lease; HostIdInUse (the daemon does not start) when a live daemon holds it."""
        self.lease.join()
        logger.info("host {} joined the shared queue (lease {:g} s)", self.host_id, self.lease.ttl)

    async def run(self, scheduler: Scheduler, user_log: UserLog, stop: Callable[[str], None]) -> None:
        """Until the lease is taken over: then kill this host's jobs (other hosts own them now) and `stop`."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._keep_lease, scheduler, user_log)
            tg.start_soon(self._listen, scheduler)
            await self.lease.lost.wait()
            tg.cancel_scope.cancel()
        logger.error("host {}: killing its {} running jobs and stopping", self.host_id, scheduler.running_count())
        await scheduler.abandon()
        stop(f"the lease of host {self.host_id} was taken over (the daemon was silent for longer than "
             f"lease_ttl, {self.lease.ttl:g} s) and other hosts settled its jobs; it stopped after killing them")

    # -- lease -------------------------------------------------------------------------

    async def _keep_lease(self, scheduler: Scheduler, user_log: UserLog) -> None:
        interval = self.lease.ttl / 3  # two renewals may fail before the lease expires
        settle_from = 0.0  # monotonic time before which no other host is declared dead
        failing = False
        while True:
            await anyio.sleep(interval)
            try:
                self.lease.renew()
                if failing:
                    # Every lease expired during the outage: give the other hosts a full lease
                    # to renew theirs before any of them is taken for dead.
                    failing, settle_from = False, time.monotonic() + self.lease.ttl
                    logger.info("host {}: lease renewed again after a database outage", self.host_id)
                settled = self.lease.settle_dead_hosts() if time.monotonic() >= settle_from else []
                for item in settled:
                    _report_settled(item, scheduler, user_log)
                self._sweep_cancels(scheduler)
            except LeaseLost:
                return
            except (psycopg.Error, StoreUnavailable) as exc:
                if not failing:
                    logger.error("cannot renew the lease of host {}: {}; retrying every {:g} s", self.host_id,
                                 _one_line(exc), interval)
                failing = True

    def _sweep_cancels(self, scheduler: Scheduler) -> None:
        """Act on cancel requests whose NOTIFY this host missed (listener reconnecting)."""
        rows = self.store.connection().execute(
            "SELECT id FROM jobs WHERE processed_by = %s AND state = 'running' AND cancel_requested",
            (self.host_id,)).fetchall()
        for row in rows:
            self._cancel_here(scheduler, row["id"])

    def _cancel_here(self, scheduler: Scheduler, job_id: str) -> None:
        if not scheduler.is_running(job_id):
            return
        rec = self.store.get(job_id)
        if rec is None:
            return
        logger.info("job {}: cancel requested through another host", job_id)
        try:
            scheduler.cancel(rec)
        except NotFound:
            pass

    # -- notifications ------------------------------------------------------------------

    async def _listen(self, scheduler: Scheduler) -> None:
        delay = _RECONNECT_DELAY
        while True:
            self._listening = False
            try:
                await self._listen_once(scheduler)
            except (psycopg.Error, StoreUnavailable) as exc:
                if self._listening:  # once per outage: the attempts that follow fail alike
                    logger.error("LISTEN connection lost ({}); reconnecting with backoff", _one_line(exc))
            delay = _RECONNECT_DELAY if self._listening else min(delay * 2, _MAX_RECONNECT_DELAY)
            await anyio.sleep(delay)
            scheduler.wake()  # notifications may have been missed meanwhile

    async def _listen_once(self, scheduler: Scheduler) -> None:
        async with await psycopg.AsyncConnection.connect(self.store.url, autocommit=True) as conn:
            await conn.execute(f"LISTEN {JOB_CHANNEL}")
            await conn.execute(f"LISTEN {CANCEL_CHANNEL}")
            self._listening = True
            while True:
                async for note in conn.notifies(timeout=FALLBACK_POLL * 5):
                    self._on_notify(scheduler, note.channel, note.payload)

    def _on_notify(self, scheduler: Scheduler, channel: str, payload: str) -> None:
        first, _, second = payload.partition(" ")
        if channel == CANCEL_CHANNEL:
            if first == self.host_id:
                self._cancel_here(scheduler, second)
            return
        if second == "queue":  # an admin changed pause or parallel on some host
            scheduler.reload_control()
        done = second not in (JobState.QUEUED, JobState.RUNNING)
        if first != "-":
            scheduler.on_remote_change(first, done)
        if second == JobState.QUEUED or done:  # new work, or a slot or key freed on some host
            scheduler.wake()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _report_settled(item: SettledJob, scheduler: Scheduler, user_log: UserLog) -> None:
    rec = item.rec
    if rec.state == JobState.LOST:
        logger.warning("job {}: lost with host {} (lease expired)", rec.id, item.dead_host)
        user_log.event(rec, f"lost: {rec.error_message}")
        scheduler.ended_elsewhere(rec)  # e.g. batch callbacks: the dead host cannot run them
    elif not item.started:
        logger.warning("job {}: re-queued: host {} died after claiming it, before starting it", rec.id, item.dead_host)
        user_log.event(rec, f"claimed by host {item.dead_host}, which died before starting it; re-queued")
    else:
        logger.warning("job {}: re-queued after host {} died (attempt {} of {})", rec.id, item.dead_host,
                       rec.attempt, rec.max_attempts)
        user_log.event(rec, f"attempt {rec.attempt} lost with host {item.dead_host}; re-queued")
