"""Which queued job may start now: the one rule of both queues (in memory, and the shared store's claim).

Judged in queue order, one candidate after another:
- a job of a paused type (queue control), or one whose `after` jobs have not all
  succeeded, waits, and holds up nothing;
- a job whose `not_before` has not come (a retry in its backoff) waits, and holds up nothing;
- a job with a `concurrency_key` waits while a job of its type and key runs, and behind the
  first due job of its key that stands ahead of it in queue order (FIFO per key);
- a job whose type declared `concurrency` (or `parallel` set for it) waits while that many
  of its type run.

On one host "runs" means this daemon's running jobs. The shared queue
(supervisor/shared_queue.py) first leaves out in SQL the rows whose key runs, or whose
type is full or paused on any host, or that wait for other jobs, then judges the rows it fetched with this same rule,
in turn order as the in-memory queue: the two never disagree on which job of a key comes first.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable

from supervisor.models import JobRecord


class Eligibility:
    """One pass over the queue: built from the running jobs, called once per candidate in queue order."""

    def __init__(self, running: Iterable[JobRecord], limit_of: Callable[[str], int | None],
                 holds: Callable[[str], bool] = lambda job: False,
                 waits: Callable[[JobRecord], bool] = lambda rec: False) -> None:
        self._now = time.time()
        running = list(running)
        self._per_type = Counter(rec.job for rec in running)
        self._keys_seen = {(rec.job, rec.concurrency_key) for rec in running if rec.concurrency_key is not None}
        self.limit_of = limit_of  # a type's concurrency limit, or None
        self.holds = holds  # whether a type is paused
        self._waits = waits  # whether a job waits for others (`after`)

    def __call__(self, rec: JobRecord) -> bool:
        if self.holds(rec.job) or rec.not_before > self._now or self._waits(rec):
            return False
        if rec.concurrency_key is not None:
            key = (rec.job, rec.concurrency_key)  # keys serialise the jobs of one type
            if key in self._keys_seen:
                return False
            self._keys_seen.add(key)  # later jobs of this key wait behind this one
        limit = self.limit_of(rec.job)
        return not (limit and self._per_type[rec.job] >= limit)

