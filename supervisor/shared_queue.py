"""The queue of a shared (PostgreSQL) store: the rows are the queue, and a claim is one transaction.

It stands in for the in-memory JobQueue: `pick()` claims the next eligible job with
`SELECT … FOR UPDATE SKIP LOCKED`, so a job runs on exactly one host; `push()` has
nothing to do (the insert already notified every host); `remove()` cancels in SQL.
Per-type concurrency and per-key serialisation are checked against the running rows
of all hosts, under advisory locks so two hosts cannot both take the last slot; which
job of a key comes first is the rule of supervisor/eligibility.py, as on one host.
A claim also needs this daemon's lease (supervisor/hosts.py).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from loguru import logger

from supervisor.eligibility import Eligibility
from supervisor.hosts import HostLease
from supervisor.models import JobRecord
from supervisor.queue import AGING_SECONDS, SAME_RANK, Turns, own_order, turn_order
from supervisor.registry import Registry
from supervisor.store.postgres import PostgresStore, record_from_row

CANCEL_CHANNEL = "runspace_cancel"  # payload "<host id> <job id>": the owning host kills the job
FALLBACK_POLL = 2.0  # seconds; NOTIFY does the real waking, this covers a missed notification
_CANDIDATES = 32  # rows locked per claim; other hosts skip them and take the next ones
_TYPE_LOCKS, _KEY_LOCKS = 0x52530001, 0x52530002  # advisory lock namespaces
# The due queued jobs no host is kept from starting now (their type is paused or full, a job
# of their key runs somewhere, or a job they are to run after has not succeeded), the first few of each requestor by its own order: however
# many ineligible jobs stand ahead, an eligible one is among the candidates. State again
# outside: a row another host claimed since the inner snapshot is re-checked once locked, and
# skipped, as are rows another host is looking at.
_CANDIDATES_SQL = (
    "SELECT * FROM jobs WHERE state = 'queued' AND id IN (SELECT id FROM (SELECT id, row_number() OVER "
    "(PARTITION BY requestor ORDER BY priority + (%(now)s - requested_at) / %(aging)s DESC, seq) AS turn "
    "FROM jobs q WHERE state = 'queued' AND not_before <= %(now)s AND job <> ALL(%(excluded)s) "
    "AND (concurrency_key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs r WHERE r.state = 'running' "
    "AND r.job = q.job AND r.concurrency_key = q.concurrency_key)) "
    "AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(q.after_ids) AS a(id) WHERE NOT EXISTS "
    "(SELECT 1 FROM jobs d WHERE d.id = a.id AND d.state = 'succeeded'))) AS t ORDER BY turn LIMIT %(n)s) "
    "FOR UPDATE SKIP LOCKED")


class SharedQueue:
    def __init__(self, store: PostgresStore, lease: HostLease, registry: Callable[[], Registry]) -> None:
        self._store = store
        self._lease = lease
        self._host = lease.host_id
        self._registry = registry
        self._contended = False  # a candidate was skipped because another host held its lock
        self._turns = itertools.count()
        self._last_turn: dict[str, int] = {}  # requestor -> when this host last started one of theirs

    def __len__(self) -> int:
        row = self._store.connection().execute("SELECT count(*) AS n FROM jobs WHERE state = 'queued'").fetchone()
        return int(row["n"]) if row else 0

    def __contains__(self, job_id: str) -> bool:
        row = self._store.connection().execute(
            "SELECT 1 FROM jobs WHERE id = %s AND state = 'queued'", (job_id,)).fetchone()
        return row is not None

    def queued_by(self, requestor: str) -> int:
        row = self._store.connection().execute(
            "SELECT count(*) AS n FROM jobs WHERE state = 'queued' AND requestor = %s", (requestor,)).fetchone()
        return int(row["n"]) if row else 0

    def push(self, rec: JobRecord, held: bool = False, waits_for: Iterable[str] = ()) -> None:
        """Nothing to do: the row is already queued and its insert or update notified every host
        (the claim's SQL leaves out rows whose `after` jobs have not all succeeded)."""

    def dependents_of(self, job_id: str) -> list[JobRecord]:
        """The queued jobs whose `after` names `job_id` (on any host)."""
        return self._store.dependents_of(job_id)

    def remove(self, job_id: str) -> JobRecord | None:
        """Cancel a job that no host has claimed yet; None when it is running (or ended) already."""
        row = self._store.connection().execute(
            "UPDATE jobs SET state = 'cancelled' WHERE id = %s AND state = 'queued' RETURNING *", (job_id,)
        ).fetchone()
        return record_from_row(row) if row else None

    def forward_cancel(self, rec: JobRecord) -> bool:
        """Ask the host running `rec` to cancel it; False when no other host runs it."""
        with self._store.transaction() as db:
            row = db.execute(
                "UPDATE jobs SET cancel_requested = TRUE WHERE id = %s AND state = 'running' "
                "AND processed_by IS DISTINCT FROM %s RETURNING processed_by", (rec.id, self._host)
            ).fetchone()
            if row is None:
                return False
            db.execute("SELECT pg_notify(%s, %s)", (CANCEL_CHANNEL, f"{row['processed_by']} {rec.id}"))
        logger.info("job {}: cancel forwarded to host {}", rec.id, row["processed_by"])
        return True

    def next_not_before(self) -> float | None:
        now = time.time()
        if self._contended:
            self._contended = False
            return now + 0.05
        row = self._store.connection().execute(
            "SELECT min(not_before) AS t FROM jobs WHERE state = 'queued' AND not_before > %s", (now,)
        ).fetchone()
        soonest = row["t"] if row and row["t"] is not None else None
        return min(soonest, now + FALLBACK_POLL) if soonest else now + FALLBACK_POLL

    def pick(self, eligible: Eligibility, turns: Turns = SAME_RANK) -> JobRecord | None:
        """Claim one job for this host, or None. The candidates are judged by `eligible`, the
        queue's rule (supervisor/eligibility.py), in queue.turn_order's order."""
        now = time.time()
        try:
            with self._store.transaction() as db:
                if not self._lease.may_start(db):
                    return None
                rows = db.execute(_CANDIDATES_SQL, {"now": now, "aging": AGING_SECONDS, "n": _CANDIDATES,
                                                    "excluded": self._excluded_types(db, eligible)}).fetchall()
                running = {r["requestor"]: r["n"] for r in db.execute(
                    "SELECT requestor, count(*) AS n FROM jobs WHERE state = 'running' GROUP BY requestor")}
                for rec in self._in_turn_order([record_from_row(row) for row in rows], turns, running, now):
                    if eligible(rec) and self._claimable(db, rec, eligible.limit_of(rec.job)):
                        self._claim(db, rec, now)
                        self._last_turn[rec.requestor] = next(self._turns)
                        return rec
        except psycopg.OperationalError as exc:
            logger.error("cannot claim from the shared queue: {}", exc)
        return None

    def _in_turn_order(self, candidates: list[JobRecord], turns: Turns, running: dict[str, int],
                       now: float) -> list[JobRecord]:
        by_user: dict[str, list[JobRecord]] = {}
        for rec in sorted(candidates, key=lambda r: own_order(r, now)):
            by_user.setdefault(rec.requestor, []).append(rec)
        heads = [(user, jobs, jobs[0]) for user, jobs in by_user.items()]
        ordered = turn_order(heads, Turns(turns.rank, running), self._last_turn)  # running on every host
        return [rec for jobs in ordered for rec in jobs]

    def _excluded_types(self, db: psycopg.Connection[Any], eligible: Eligibility) -> list[str]:
        """The job types that start nothing now: paused, or their limit taken up on all hosts."""
        types = list(self._registry().types)
        excluded = [job for job in types if eligible.holds(job)]
        limits = {job: limit for job in types if job not in excluded and (limit := eligible.limit_of(job))}
        if limits:
            rows = db.execute("SELECT job, count(*) AS n FROM jobs WHERE state = 'running' AND job = ANY(%s) "
                              "GROUP BY job", (list(limits),)).fetchall()
            excluded += [r["job"] for r in rows if r["n"] >= limits[r["job"]]]
        return excluded

    def _claimable(self, db: psycopg.Connection[Any], rec: JobRecord, limit: int | None) -> bool:
        """Re-check the candidate's type and key under advisory locks: two hosts cannot both take
        the last slot (the candidates were read before another host's claim may have committed)."""
        if limit:
            if not self._try_lock(db, _TYPE_LOCKS, rec.job):
                return False
            row = db.execute("SELECT count(*) AS n FROM jobs WHERE state = 'running' AND job = %s",
                             (rec.job,)).fetchone()
            if row and row["n"] >= limit:
                return False
        if rec.concurrency_key is not None:
            if not self._try_lock(db, _KEY_LOCKS, f"{rec.job}\x1f{rec.concurrency_key}"):
                return False
            row = db.execute("SELECT 1 FROM jobs WHERE state = 'running' AND job = %s AND concurrency_key = %s",
                             (rec.job, rec.concurrency_key)).fetchone()
            if row is not None:
                return False
        return True

    def _try_lock(self, db: psycopg.Connection[Any], space: int, name: str) -> bool:
        # try-lock, never wait: two claims locking type and key in opposite orders cannot deadlock.
        row = db.execute("SELECT pg_try_advisory_xact_lock(%s, hashtext(%s)) AS ok", (space, name)).fetchone()
        if row is None or not row["ok"]:
            self._contended = True
            return False
        return True

    def _claim(self, db: psycopg.Connection[Any], rec: JobRecord, now: float) -> None:
        # The values Scheduler._start writes next, written here so the claim is atomic; but no
        # started_at: _start writes it just before it launches the job, so a host that dies
        # in between leaves a claim any survivor may re-queue (hosts.py) with no run lost.
        db.execute(
            "UPDATE jobs SET state = 'running', attempt = attempt + 1, started_at = NULL, processed_by = %s, "
            "pid = NULL, pid_started = NULL, cancel_requested = FALSE, updated_at = %s WHERE id = %s",
            (self._host, now, rec.id),
        )
        rec.processed_by = self._host  # the store's fence lets only the claiming host write the row
