"""The in-memory order of queued jobs: priority buckets, FIFO inside each, aging against starvation."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from supervisor.models import JobRecord

AGING_SECONDS = 60.0  # a job gains one priority level per minute it waits
_SCAN_LIMIT = 2000  # per bucket and pass: bounds the cost of skipping blocked jobs


class JobQueue:
    def __init__(self) -> None:
        self._buckets: dict[int, deque[JobRecord]] = {}
        self._ids: dict[str, JobRecord] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._ids

    def push(self, rec: JobRecord) -> None:
        self._buckets.setdefault(rec.priority, deque()).append(rec)
        self._ids[rec.id] = rec

    def remove(self, job_id: str) -> JobRecord | None:
        """Forget a job; its bucket entry is dropped lazily when a scan meets it."""
        return self._ids.pop(job_id, None)

    def next_not_before(self) -> float | None:
        times = [rec.not_before for rec in self._ids.values() if rec.not_before > 0]
        return min(times) if times else None

    def pick(self, eligible: Callable[[JobRecord], bool]) -> JobRecord | None:
        now = time.time()
        for bucket in self._ordered_buckets(now):
            found = self._take_first(bucket, eligible)
            if found is not None:
                return found
        return None

    def _ordered_buckets(self, now: float) -> list[deque[JobRecord]]:
        ranked = []
        for priority, bucket in list(self._buckets.items()):
            self._drop_removed_head(bucket)
            if not bucket:
                del self._buckets[priority]
                continue
            head = bucket[0]
            ranked.append((priority + (now - head.requested_at) / AGING_SECONDS, -(head.seq or 0), bucket))
        ranked.sort(key=lambda r: (r[0], r[1]), reverse=True)
        return [bucket for *_, bucket in ranked]

    def _drop_removed_head(self, bucket: deque[JobRecord]) -> None:
        while bucket and bucket[0].id not in self._ids:
            bucket.popleft()

    def _take_first(self, bucket: deque[JobRecord], eligible: Callable[[JobRecord], bool]) -> JobRecord | None:
        for index, rec in enumerate(bucket):
            if index >= _SCAN_LIMIT:
                return None
            if rec.id in self._ids and eligible(rec):
                del bucket[index]
                del self._ids[rec.id]
                return rec
        return None
