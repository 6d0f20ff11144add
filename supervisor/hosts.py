"""Host leases on a shared store: each daemon renews its row; survivors settle the jobs of an expired one.

A lease is a row in `hosts` whose `expires_at` is in the database's clock. When a host
stops renewing (crash, power loss, partition), the first surviving daemon to notice
marks that host's running jobs `lost` (reason daemon_lost), or re-queues them when
their type declared retries and attempts remain. One transaction holds the host row
and the job rows, so this happens exactly once however many survivors race for it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from loguru import logger

from supervisor.models import JobRecord, JobState
from supervisor.store.postgres import JOB_CHANNEL, PostgresStore, record_from_row

_DB_NOW = "extract(epoch from clock_timestamp())"


@dataclass
class SettledJob:
    rec: JobRecord
    dead_host: str


class HostLease:
    def __init__(self, store: PostgresStore, host_id: str, ttl: float) -> None:
        self._store = store
        self.host_id = host_id
        self.ttl = ttl
        self._started = time.time()
        self._renewed = False

    def renew(self) -> None:
        """Extend this host's lease; warn when survivors had already declared this host dead."""
        row = self._store.connection().execute(
            f"INSERT INTO hosts (host_id, pid, started_at, expires_at) VALUES (%s, %s, %s, {_DB_NOW} + %s) "
            "ON CONFLICT (host_id) DO UPDATE SET pid = EXCLUDED.pid, started_at = EXCLUDED.started_at, "
            "expires_at = EXCLUDED.expires_at RETURNING (xmax = 0) AS inserted",
            (self.host_id, os.getpid(), self._started, self.ttl),
        ).fetchone()
        if self._renewed and row and row["inserted"]:
            logger.error("host {}: the lease had expired and other hosts settled this host's running jobs; "
                         "their results from here on are discarded", self.host_id)
        self._renewed = True

    def settle_dead_hosts(self) -> list[SettledJob]:
        """Mark lost or re-queue the running jobs of every host whose lease expired."""
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
                settled += self._settle_host(db, host)
                db.execute("DELETE FROM hosts WHERE host_id = %s", (host,))
        return settled

    def _settle_host(self, db, host: str) -> list[SettledJob]:  # type: ignore[no-untyped-def]
        # FOR UPDATE re-checks state and processed_by after any concurrent settler committed.
        rows = db.execute("SELECT * FROM jobs WHERE processed_by = %s AND state = 'running' FOR UPDATE",
                          (host,)).fetchall()
        settled = []
        now = time.time()
        message = f"host {host} stopped renewing its lease while the job ran"
        for row in rows:
            rec = record_from_row(row)
            rec.error_type, rec.error_message, rec.pid = "DaemonLost", message, None
            if rec.attempt < rec.max_attempts:
                # The host died, not the job: the retry may start at once, on any host.
                rec.state, rec.processed_by, rec.not_before = JobState.QUEUED, None, 0.0
            else:
                rec.state, rec.reason, rec.finished_at = JobState.LOST, "daemon_lost", now
            db.execute(
                "UPDATE jobs SET state = %s, processed_by = %s, not_before = %s, reason = %s, finished_at = %s, "
                "error_type = %s, error_message = %s, pid = NULL, updated_at = %s WHERE id = %s",
                (str(rec.state), rec.processed_by, rec.not_before, rec.reason, rec.finished_at,
                 rec.error_type, rec.error_message, now, rec.id))
            db.execute("SELECT pg_notify(%s, %s)", (JOB_CHANNEL, f"{rec.id} {rec.state}"))
            settled.append(SettledJob(rec, host))
        return settled
