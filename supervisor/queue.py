"""The in-memory order of queued jobs (SQLite store): fair turns between requestors, and each
requestor's own jobs by priority (aging against starvation), FIFO inside a priority.

The rule, shared with the PostgreSQL claim (supervisor/shared_queue.py) through `turn_order`:
1. A job's *rank* against other users' jobs is its priority when an admin submitted it, else
   its type's default priority: a non-admin's `priority` orders only that user's own jobs.
2. Among requestors whose next jobs have equal rank, the one with fewer jobs running goes
   first, then the one whose turn came longest ago: users take turns.
3. Inside one requestor's jobs: priority plus one level per minute waited, then FIFO.

What one requestor queues costs the others nothing however it is made: a pass looks at no more
than `_SCAN_LIMIT` of a requestor's jobs, in one list whatever the number of distinct priorities,
and jobs whose `not_before` has not come are set aside until it has.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import time
from dataclasses import dataclass
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from supervisor.models import JobRecord

AGING_SECONDS = 60.0  # a job gains one priority level per minute it waits
_SCAN_LIMIT = 2000  # per requestor and pass: bounds the cost of skipping blocked jobs

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


def _lasting_order(rec: JobRecord) -> tuple[float, int]:
    """`own_order` without the time: both of two jobs age alike, so their order never changes."""
    return -(rec.priority - rec.requested_at / AGING_SECONDS), rec.seq or 0


class _UserJobs:
    """One requestor's jobs that may start, in their own order: one sorted list, since a job's
    place never changes (10,000 jobs at as many priorities cost a pass no more than at one)."""

    def __init__(self) -> None:
        self.jobs: list[tuple[tuple[float, int], int, JobRecord]] = []  # (order, push, job), sorted
        self._pushes = itertools.count()  # ties of equal order: first pushed first

    def push(self, rec: JobRecord) -> None:
        bisect.insort(self.jobs, (_lasting_order(rec), next(self._pushes), rec))

    def head(self, live: Mapping[str, JobRecord]) -> JobRecord | None:
        """The first job still queued; removed (cancelled) ones before it are dropped here."""
        gone = next((i for i, entry in enumerate(self.jobs) if live.get(entry[2].id) is entry[2]), len(self.jobs))
        del self.jobs[:gone]
        return self.jobs[0][2] if self.jobs else None

    def take_first(self, live: Mapping[str, JobRecord], eligible: Callable[[JobRecord], bool]) -> JobRecord | None:
        """The first eligible job among the first `_SCAN_LIMIT`, taken out; None if none is."""
        for index, (_, _, rec) in enumerate(itertools.islice(self.jobs, _SCAN_LIMIT)):
            if live.get(rec.id) is rec and eligible(rec):
                del self.jobs[index]
                return rec
        return None


class JobQueue:
    def __init__(self) -> None:
        self._users: dict[str, _UserJobs] = {}
        self._ids: dict[str, JobRecord] = {}
        self._per_user: Counter[str] = Counter()
        self._turns = itertools.count()
        self._last_turn: dict[str, int] = {}
        self._held: set[str] = set()  # queued jobs that wait for `after` jobs: in no requestor's list
        # (not_before, order, job) of jobs not due yet, a heap: in no requestor's list until due, so a
        # requestor's 10,000 jobs scheduled for tonight are not looked at by every pass meanwhile.
        self._later: list[tuple[float, int, JobRecord]] = []
        self._delays = itertools.count()
        self._removed = 0  # jobs removed since the last _compact: their entries are still in the lists
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
            self._enter(rec, time.time())

    def is_held(self, job_id: str) -> bool:
        return job_id in self._held

    def release(self, rec: JobRecord) -> None:
        """A held job whose `after` jobs have all succeeded: from now on, pick() may take it."""
        if rec.id in self._held:
            self._held.discard(rec.id)
            self._enter(rec, time.time())

    def _enter(self, rec: JobRecord, now: float) -> None:
        """Into its requestor's list, or aside until its `not_before`."""
        if rec.not_before > now:
            heapq.heappush(self._later, (rec.not_before, next(self._delays), rec))
        else:
            self._users.setdefault(rec.requestor, _UserJobs()).push(rec)

    def _enter_due(self, now: float) -> None:
        while self._later and self._later[0][0] <= now:
            rec = heapq.heappop(self._later)[2]
            if self._ids.get(rec.id) is rec:
                self._users.setdefault(rec.requestor, _UserJobs()).push(rec)

    def dependents_of(self, job_id: str) -> list[JobRecord]:
        """The queued jobs whose `after` names `job_id`, which has just ended (asked once per job)."""
        return [rec for rec in self._dependents.pop(job_id, []) if self._ids.get(rec.id) is rec]

    def remove(self, job_id: str) -> JobRecord | None:
        """Forget a job; its list (and dependents) entries are dropped lazily when met."""
        rec = self._ids.pop(job_id, None)
        if rec is not None:
            self._held.discard(job_id)
            self._forget(rec)
            self._removed += 1
            if self._removed > len(self._ids) + _SCAN_LIMIT:  # submit and cancel, again and again
                self._compact()
        return rec

    def _compact(self) -> None:
        """Drop the entries of removed jobs that lie deep in the lists, where no pass meets them."""
        def live(entries: list[tuple[Any, int, JobRecord]]) -> list[tuple[Any, int, JobRecord]]:
            return [entry for entry in entries if self._ids.get(entry[2].id) is entry[2]]  # order kept

        for jobs in self._users.values():
            jobs.jobs = live(jobs.jobs)
        self._later = live(self._later)
        heapq.heapify(self._later)  # a heap filtered is not always one
        self._removed = 0

    def next_not_before(self) -> float | None:
        """When the next job set aside until its `not_before` is due: always a time to come (one
        already due would wake the dispatch loop again at once, and again, while it cannot start)."""
        self._enter_due(time.time())
        while self._later and self._ids.get(self._later[0][2].id) is not self._later[0][2]:
            heapq.heappop(self._later)
        return self._later[0][0] if self._later else None

    def pick(self, eligible: Callable[[JobRecord], bool], turns: Turns = SAME_RANK) -> JobRecord | None:
        """The first eligible job in turn order."""
        self._enter_due(time.time())
        heads = []
        for user, jobs in list(self._users.items()):
            head = jobs.head(self._ids)
            if head is None:
                del self._users[user]
                continue
            heads.append((user, jobs, head))
        for jobs in turn_order(heads, turns, self._last_turn):
            found = jobs.take_first(self._ids, eligible)
            if found is not None:
                self._last_turn[found.requestor] = next(self._turns)
                del self._ids[found.id]
                self._forget(found)
                return found
        return None

    def _forget(self, rec: JobRecord) -> None:
        self._per_user[rec.requestor] -= 1
        if self._per_user[rec.requestor] <= 0:
            del self._per_user[rec.requestor]
