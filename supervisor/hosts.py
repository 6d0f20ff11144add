"""Host leases on a shared store: each daemon renews its row; survivors settle the jobs of an expired one.

A lease is a row in `hosts` whose `expires_at` is in the database's clock, held by one
daemon process: `(pid, started_at)` is its token, and every renewal, claim and job write of
that daemon names it. Only `join()` creates the row, so a daemon whose row a survivor has
deleted (declared dead while it was only slow) cannot bring it back: it finds the lease
taken over, and its late writes match no row.

When a host stops renewing (crash, power loss, partition), the first surviving daemon to
notice settles its running jobs in one transaction holding the host row and the job rows,
so this happens exactly once however many survivors race for it: a job it had claimed but
not started is re-queued, as on one host; a started one becomes `lost` (reason
daemon_lost), or is re-queued when its type declared retries and attempts remain.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import psutil
import psycopg
from loguru import logger

from supervisor.errors import RunspaceError
from supervisor.models import JobRecord, JobState
from supervisor.store.postgres import JOB_CHANNEL, PostgresStore, record_from_row

_DB_NOW = "extract(epoch from clock_timestamp())"


class HostIdInUse(RunspaceError):
    """Another live daemon holds the lease of this host id."""


class LeaseLost(RunspaceError):
    """The lease of this daemon was taken over: other hosts settled its jobs."""


@dataclass
class SettledJob:
    rec: JobRecord
    dead_host: str
    started: bool  # False: the dead host had claimed the job but not started it


class HostLease:
    def __init__(self, store: PostgresStore, host_id: str, ttl: float, state_dir: Path) -> None:
        self._store = store
        self.host_id = host_id
        self.ttl = ttl
        self.pid = os.getpid()
        self.started_at = psutil.Process().create_time()  # with the pid: this daemon process, and no other
        self._holder_file = state_dir / "lease"  # the last daemon of this state dir: a restart takes over its lease
        self.lost = anyio.Event()  # set by whoever finds the lease taken over first

    # -- joining ---------------------------------------------------------------------

    def join(self) -> None:
        """Take the lease of this host id; HostIdInUse when another live daemon holds it."""
        with self._store.transaction() as db:
            row = db.execute(f"SELECT pid, started_at, expires_at - {_DB_NOW} AS left FROM hosts "
                             "WHERE host_id = %s FOR UPDATE", (self.host_id,)).fetchone()
            if row is not None and row["left"] > 0 and not self._own_predecessor(row):
                raise HostIdInUse(
                    f"host id {self.host_id!r} is in use: a live daemon (pid {row['pid']}, on this or another "
                    f"machine) holds its lease; give each daemon its own RUNSPACE_HOST_ID (if that daemon has "
                    f"stopped, its lease expires within {math.ceil(row['left'])} s)")
            inserted = db.execute(
                f"INSERT INTO hosts (host_id, pid, started_at, expires_at) VALUES (%s, %s, %s, {_DB_NOW} + %s) "
                "ON CONFLICT (host_id) DO UPDATE SET pid = EXCLUDED.pid, started_at = EXCLUDED.started_at, "
                "expires_at = EXCLUDED.expires_at WHERE hosts.pid = %s AND hosts.started_at = %s RETURNING 1",
                (self.host_id, self.pid, self.started_at, self.ttl,
                 row["pid"] if row else None, row["started_at"] if row else None)).fetchone()
            if inserted is None:  # a twin inserted the row between our SELECT and INSERT
                raise HostIdInUse(f"host id {self.host_id!r} is in use: another daemon joined with it just now; "
                                  "give each daemon its own RUNSPACE_HOST_ID")
        self._holder_file.write_text(f"{self.host_id} {self.pid} {self.started_at!r}\n")
        self._store.fence = (self.host_id, self.pid, self.started_at)

    def _own_predecessor(self, row: dict[str, Any]) -> bool:
        """The live-looking lease is this state dir's previous daemon, which has ended (a restart)."""
        try:
            host, pid, started = self._holder_file.read_text().split()
        except (OSError, ValueError):
            return False
        if (host, int(pid), float(started)) != (self.host_id, row["pid"], row["started_at"]):
            return False
        with contextlib.suppress(psutil.Error):
            if psutil.Process(row["pid"]).create_time() == row["started_at"]:
                return False  # that daemon still runs
        return True

    # -- keeping it ------------------------------------------------------------------

    def renew(self) -> None:
        """Extend the lease; LeaseLost when a survivor has settled this host meanwhile."""
        row = self._store.connection().execute(
            f"UPDATE hosts SET expires_at = {_DB_NOW} + %s WHERE host_id = %s AND pid = %s AND started_at = %s "
            "RETURNING 1", (self.ttl, self.host_id, self.pid, self.started_at)).fetchone()
        if row is None:
            self.lose()
            raise LeaseLost(f"the lease of host {self.host_id} was taken over: other hosts have settled its jobs")

    def may_start(self, db: psycopg.Connection[Any]) -> bool:
        """In a claim's transaction: whether this daemon may start a job now.

        No when the lease has less than a renewal interval left (a host that cannot renew
        stops starting jobs before it expires), or is gone (taken over: `lost` is set).
        FOR SHARE keeps a survivor from settling this host until the claim commits."""
        row = db.execute(f"SELECT expires_at - {_DB_NOW} AS left FROM hosts WHERE host_id = %s AND pid = %s "
                         "AND started_at = %s FOR SHARE", (self.host_id, self.pid, self.started_at)).fetchone()
        if row is None:
            self.lose()
            return False
        return bool(row["left"] > self.ttl / 3)

    def lose(self) -> None:
        if not self.lost.is_set():
            logger.error("host {}: the lease was taken over (this daemon was silent for longer than lease_ttl, "
                         "{:g} s) and other hosts have settled its jobs", self.host_id, self.ttl)
        self.lost.set()

    # -- settling dead hosts -----------------------------------------------------------

    def settle_dead_hosts(self) -> list[SettledJob]:
        """Re-queue or mark lost the running jobs of every host whose lease expired."""
        settled: list[SettledJob] = []
        with self._store.transaction() as db:
            expired = db.execute(
                f"SELECT host_id FROM hosts WHERE expires_at < {_DB_NOW} AND host_id <> %s "
                "FOR UPDATE SKIP LOCKED", (self.host_id,)).fetchall()
            # Jobs of a host with no lease row at all (row removed by hand) are as orphaned.
            orphans = db.execute(
                "SELECT DISTINCT processed_by AS host_id FROM jobs WHERE state = 'running' "
                "AND processed_by <> %s AND processed_by NOT IN (SELECT host_id FROM hosts)",
                (self.host_id,)).fetchall()
            for host in {r["host_id"] for r in [*expired, *orphans]}:
                settled += _settle_host(db, host)
                db.execute("DELETE FROM hosts WHERE host_id = %s", (host,))
        return settled


def _settle_host(db: psycopg.Connection[Any], host: str) -> list[SettledJob]:
    # FOR UPDATE re-checks state and processed_by after any concurrent settler committed.
    rows = db.execute("SELECT * FROM jobs WHERE processed_by = %s AND state = 'running' FOR UPDATE",
                      (host,)).fetchall()
    settled = []
    now = time.time()
    for row in rows:
        rec = record_from_row(row)
        # Claimed, and the launch not begun (_start writes started_at first): the attempt never happened.
        started = rec.started_at is not None or rec.pid is not None
        if not started:
            rec.state, rec.attempt, rec.processed_by, rec.not_before = JobState.QUEUED, max(rec.attempt - 1, 0), None, 0.0
        else:
            rec.error_type, rec.pid = "DaemonLost", None
            rec.error_message = f"host {host} stopped renewing its lease while the job ran"
            if rec.attempt < rec.max_attempts:
                # The host died, not the job: the retry may start at once, on any host.
                rec.state, rec.processed_by, rec.not_before = JobState.QUEUED, None, 0.0
            else:
                rec.state, rec.reason, rec.finished_at = JobState.LOST, "daemon_lost", now
        db.execute(
            "UPDATE jobs SET state = %s, attempt = %s, processed_by = %s, not_before = %s, reason = %s, "
            "finished_at = %s, error_type = %s, error_message = %s, pid = NULL, updated_at = %s WHERE id = %s",
            (str(rec.state), rec.attempt, rec.processed_by, rec.not_before, rec.reason, rec.finished_at,
             rec.error_type, rec.error_message, now, rec.id))
        db.execute("SELECT pg_notify(%s, %s)", (JOB_CHANNEL, f"{rec.id} {rec.state}"))
        settled.append(SettledJob(rec, host, started))
    return settled
