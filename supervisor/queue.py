"""The in-memory order of queued jobs (SQLite store): fair turns between requestors, and each
requestor's own jobs by priority (aging against starvation), FIFO inside a priority.

The rule, shared with the PostgreSQL claim (supervisor/shared_queue.py) through `turn_order`:
1. A job's *rank* against other users' jobs is its priority when an admin submitted it, else
   its type's default priority: a non-admin's `priority` orders only that user's own jobs.
2. Among requestors whose next jobs have equal rank, the one with fewer jobs running goes
   first, then the one whose turn came longest ago: users take turns.
3. Inside one requestor's jobs: priority plus one level per minute waited, then FIFO.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from supervisor.models import JobRecord

AGING_SECONDS = 60.0  # a job gains one priority level per minute it waits
_SCAN_LIMIT = 2000  # per bucket and pass: bounds the cost of skipping blocked jobs

T = TypeVar("T")


def own_order(rec: JobRecord, now: float) -> tuple[float, int]:
    """Sort key (ascending) of a job among its requestor's own jobs."""
    return -(rec.priority + (now - rec.requested_at) / AGING_SECONDS), rec.seq or 0


@dataclass(frozen=True)
class Turns:
    """What the scheduler knows for fair turns: each job's rank, each requestor's running jobs."""

    rank: Callable[[JobRecord], int]
    running: Mapping[str, int]


SAME_RANK = Turns(rank=lambda rec: rec.priority, running={})  # one user, or no fairness asked for


def turn_order(heads: Iterable[tuple[str, T, JobRecord]], turns: Turns, last_turn: Mapping[str, int]) -> list[T]:
    """Requestors' entries in the order they get their turn; each head is
    (requestor, entry, the requestor's next job)."""
    ranked = sorted(heads, key=lambda h: (-turns.rank(h[2]), turns.running.get(h[0], 0), last_turn.get(h[0], -1)))
    return [entry for _, entry, _ in ranked]


class _UserJobs:
    """One requestor's queued jobs: priority buckets, FIFO inside each."""

    def __init__(self) -> None:
        self.buckets: dict[int, deque[JobRecord]] = {}

    def push(self, rec: JobRecord) -> None:
        self.buckets.setdefault(rec.priority, deque()).append(rec)

    def ordered(self, live: Mapping[str, JobRecord], now: float) -> list[deque[JobRecord]]:
        ranked = []
        for priority, bucket in list(self.buckets.items()):
            while bucket and bucket[0].id not in live:  # removed (cancelled) jobs are dropped lazily
                bucket.popleft()
            if not bucket:
                del self.buckets[priority]
                continue
            ranked.append((own_order(bucket[0], now), bucket))
        ranked.sort(key=lambda r: r[0])
        return [bucket for _, bucket in ranked]


class JobQueue:
    def __init__(self) -> None:
        self._users: dict[str, _UserJobs] = {}
        self._ids: dict[str, JobRecord] = {}
        self._per_user: Counter[str] = Counter()
        self._turns = itertools.count()
        self._last_turn: dict[str, int] = {}
        self._held: set[str] = set()  # queued jobs that wait for `after` jobs: not in the buckets
        self._dependents: dict[str, list[JobRecord]] = {}  # job id -> queued jobs whose `after` names it

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._ids

    def queued_by(self, requestor: str) -> int:
        return self._per_user[requestor]

    def push(self, rec: JobRecord, held: bool = False, waits_for: Iterable[str] = ()) -> None:
        """Queue a job. `held`: it waits for `after` jobs to succeed, so pick() never looks at it
        until release(); otherwise every pick would judge every such job again (a user's 10,000 of
        them, each after 100 ids, made every start of anyone's job cost ~0.1 s of the event loop).
        `waits_for`: those of its `after` jobs that have not ended yet (dependents_of finds it)."""
        self._ids[rec.id] = rec
        self._per_user[rec.requestor] += 1
        for job_id in waits_for:  # each ends later, and its entry goes then: nothing piles up
            self._dependents.setdefault(job_id, []).append(rec)
        if held:
            self._held.add(rec.id)
        else:
            self._users.setdefault(rec.requestor, _UserJobs()).push(rec)

    def is_held(self, job_id: str) -> bool:
        return job_id in self._held

    def release(self, rec: JobRecord) -> None:
        """A held job whose `after` jobs have all succeeded: from now on, pick() may take it."""
        if rec.id in self._held:
            self._held.discard(rec.id)
            self._users.setdefault(rec.requestor, _UserJobs()).push(rec)

    def dependents_of(self, job_id: str) -> list[JobRecord]:
        """The queued jobs whose `after` names `job_id`, which has just ended (asked once per job)."""
        return [rec for rec in self._dependents.pop(job_id, []) if self._ids.get(rec.id) is rec]

    def remove(self, job_id: str) -> JobRecord | None:
        """Forget a job; its bucket (and dependents) entries are dropped lazily when met."""
        rec = self._ids.pop(job_id, None)
        if rec is not None:
            self._held.discard(job_id)
            self._forget(rec)
        return rec

    def next_not_before(self) -> float | None:
        times = [rec.not_before for rec in self._ids.values() if rec.not_before > 0]
        return min(times) if times else None

    def pick(self, eligible: Callable[[JobRecord], bool], turns: Turns = SAME_RANK) -> JobRecord | None:
        """The first eligible job in turn order."""
        now = time.time()
        heads = []
        for user, jobs in list(self._users.items()):
            ordered = jobs.ordered(self._ids, now)
            if not ordered:
                del self._users[user]
                continue
            heads.append((user, (user, ordered), ordered[0][0]))
        for user, ordered in turn_order(heads, turns, self._last_turn):
            for bucket in ordered:
                found = self._take_first(bucket, eligible)
                if found is not None:
                    self._last_turn[user] = next(self._turns)
                    return found
        return None

    def _take_first(self, bucket: deque[JobRecord], eligible: Callable[[JobRecord], bool]) -> JobRecord | None:
        for index, rec in enumerate(bucket):
            if index >= _SCAN_LIMIT:
                return None
            if rec.id in self._ids and eligible(rec):
                del bucket[index]
                del self._ids[rec.id]
                self._forget(rec)
                return rec
        return None

    def _forget(self, rec: JobRecord) -> None:
        self._per_user[rec.requestor] -= 1
        if self._per_user[rec.requestor] <= 0:
            del self._per_user[rec.requestor]
