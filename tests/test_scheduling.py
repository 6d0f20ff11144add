"""Scheduling: per-key serialisation, global and per-type concurrency, priority, retries with backoff."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from supervisor.models import JobRecord
from supervisor.queue import AGING_SECONDS, JobQueue
from tests.conftest import wait_until


def spans(record: Path) -> dict[str, tuple[float, float]]:
    """job id → (start, end) from a start/end record file."""
    times: dict[str, dict[str, float]] = defaultdict(dict)
    for line in record.read_text().splitlines():
        job_id, what, at = line.split()
        times[job_id][what] = float(at)
    return {job_id: (t["start"], t["end"]) for job_id, t in times.items()}


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def test_jobs_with_the_same_key_never_overlap(make_daemon, tmp_path: Path) -> None:
    d = make_daemon(RUNSPACE_MAX_CONCURRENCY="6")
    record = tmp_path / "record"
    cases = ["a", "a", "a", "b", "b", "c", "a", "b"]
    jobs = [d.submit("keyed", {"case": c, "record": str(record), "seconds": 0.4}) for c in cases]
    for job in jobs:
        assert d.wait(job["id"], timeout=60)["state"] == "succeeded"
    by_id = spans(record)
    for case in set(cases):
        mine = sorted(by_id[j["id"]] for j, c in zip(jobs, cases) if c == case)
        assert max_overlap(mine) == 1, f"jobs of case {case} overlapped: {mine}"
        # FIFO within a key: they started in submission order
        starts = [by_id[j["id"]][0] for j, c in zip(jobs, cases) if c == case]
        assert starts == sorted(starts)
    assert max_overlap(list(by_id.values())) > 1, "different keys should run side by side"


def test_global_concurrency_limit(make_daemon, tmp_path: Path) -> None:
    d = make_daemon(RUNSPACE_MAX_CONCURRENCY="2")
    record = tmp_path / "record"
    jobs = [d.submit("keyed", {"case": f"c{n}", "record": str(record), "seconds": 0.5}) for n in range(5)]
    for job in jobs:
        assert d.wait(job["id"], timeout=60)["state"] == "succeeded"
    assert max_overlap(list(spans(record).values())) <= 2


def test_per_type_concurrency_limit(make_daemon, tmp_path: Path) -> None:
    d = make_daemon(RUNSPACE_MAX_CONCURRENCY="8")
    record = tmp_path / "record"
    jobs = [d.submit("limited", {"record": str(record), "seconds": 0.6}) for _ in range(5)]
    other = d.submit("echo", {"value": 1})  # another type is not held up by the limit
    assert d.wait(other["id"], timeout=30)["state"] == "succeeded"
    for job in jobs:
        assert d.wait(job["id"], timeout=60)["state"] == "succeeded"
    assert max_overlap(list(spans(record).values())) == 2


def test_priority_order_holds(make_daemon, tmp_path: Path) -> None:
    d = make_daemon(RUNSPACE_MAX_CONCURRENCY="1")
    record = tmp_path / "order"
    blocker = d.submit("sleep", {"seconds": 30})
    wait_until(lambda: d.client.status(blocker["id"])["state"] == "running", what="the blocker to run")
    submitted = [("low1", 0), ("mid1", 5), ("one", 1), ("mid2", 5), ("top", 10), ("low2", 0), ("neg", -3)]
    jobs = [d.submit("record_order", {"tag": tag, "record": str(record)}, priority=p) for tag, p in submitted]
    d.client.cancel(blocker["id"])
    for job in jobs:
        assert d.wait(job["id"], timeout=30)["state"] == "succeeded"
    assert record.read_text().split() == ["top", "mid1", "mid2", "one", "low1", "low2", "neg"]


def test_retries_back_off_exponentially(daemon, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    job = daemon.submit("flaky", {"counter": str(counter), "succeed_on": 4})  # retries=3, retry_backoff=0.2
    final = daemon.wait(job["id"], timeout=30)
    assert final["state"] == "succeeded" and final["attempt"] == 4 and final["result"] == {"attempts": 4}
    times = [float(t) for t in counter.with_suffix(".times").read_text().split()]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) == 3
    for n, gap in enumerate(gaps):
        assert gap >= 0.2 * 2**n - 0.01, f"retry {n + 1} came after {gap:.2f} s, backoff is {0.2 * 2**n:g} s"
    # the spacing grows: each wait is the backoff (0.2, 0.4, 0.8 s) plus a similar start-up cost
    assert gaps[2] - gaps[0] >= 0.6 - 0.25, gaps


def test_retries_exhausted_leave_the_job_failed(daemon, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    job = daemon.submit("flaky", {"counter": str(counter), "succeed_on": 99})
    final = daemon.wait(job["id"], timeout=30)
    assert final["state"] == "failed" and final["attempt"] == 4
    assert final["error"] == {"type": "RuntimeError", "message": "attempt 4 fails"}
    assert counter.read_text() == "4"
    user_log = (daemon.log_dir / "users" / f"{final['log_user']}.log").read_text()
    assert f"{job['id']} flaky attempt 1 failed: RuntimeError: attempt 1 fails; retrying in 0.2 s" in user_log


def test_status_shows_queued_retry_between_attempts(daemon, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    job = daemon.submit("flaky", {"counter": str(counter), "succeed_on": 2})
    seen = wait_until(lambda: (s := daemon.client.status(job["id"]))["state"] == "queued" and s["attempt"] == 1 and s,
                      timeout=15, interval=0.01, what="the job to wait for its retry")
    assert seen["error"]["message"] == "attempt 1 fails"
    assert daemon.wait(job["id"])["state"] == "succeeded"


# -- the queue's order, with real records (no daemon) -------------------------------------


def _rec(n: int, priority: int = 0, age: float = 0.0) -> JobRecord:
    return JobRecord(id=f"{n:020x}", job="t", params={}, requestor="u", log_user="u", priority=priority,
                     requested_at=time.time() - age, seq=n)


def test_queue_is_fifo_within_a_priority_and_skips_ineligible() -> None:
    q = JobQueue()
    for n in range(5):
        q.push(_rec(n))
    assert q.pick(lambda r: r.seq != 0).seq == 1  # a blocked head does not block the rest
    assert [q.pick(lambda r: True).seq for _ in range(4)] == [0, 2, 3, 4]
    assert q.pick(lambda r: True) is None


def test_aging_keeps_low_priority_jobs_from_starving() -> None:
    q = JobQueue()
    q.push(_rec(1, priority=0, age=3 * AGING_SECONDS))  # waited three aging periods
    q.push(_rec(2, priority=2))
    assert q.pick(lambda r: True).seq == 1
    fresh = JobQueue()
    fresh.push(_rec(3, priority=0, age=1 * AGING_SECONDS))  # one period is not enough to pass priority 2
    fresh.push(_rec(4, priority=2))
    assert [fresh.pick(lambda r: True).seq for _ in range(2)] == [4, 3]


def test_removed_job_is_never_picked() -> None:
    q = JobQueue()
    q.push(_rec(1))
    q.push(_rec(2))
    assert q.remove(_rec(1).id) is not None
    assert q.pick(lambda r: True).seq == 2 and len(q) == 0


def test_jobs_not_due_wait_aside_until_their_time() -> None:
    q = JobQueue()
    later = _rec(1)
    later.not_before = time.time() + 0.3
    q.push(later)
    q.push(_rec(2))
    assert q.pick(lambda r: True).seq == 2
    assert q.pick(lambda r: True) is None and q.next_not_before() == later.not_before and len(q) == 1
    time.sleep(0.3)
    assert q.next_not_before() is None  # due: the dispatch loop need not wake for it again
    assert q.pick(lambda r: True).seq == 1


def test_every_priority_in_one_order_and_removed_jobs_do_not_pile_up() -> None:
    q = JobQueue()
    for n in range(1, 6):
        q.push(_rec(n, priority=n % 3))  # priorities 1, 2, 0, 1, 2
    assert [q.pick(lambda r: True).seq for _ in range(5)] == [2, 5, 1, 4, 3]
    for n in range(10, 20_000):  # submitted and cancelled, again and again
        q.push(_rec(n, priority=-n))
        q.remove(_rec(n).id)
    assert len(q) == 0 and sum(len(jobs.jobs) for jobs in q._users.values()) <= 2001
