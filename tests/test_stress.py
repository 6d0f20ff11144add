"""200 mixed jobs while the daemon is SIGKILLed and restarted three times: every job ends right, once."""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from pathlib import Path

import psutil

from supervisor.runner.files import ENV_MARKER
from tests.conftest import wait_until
from tests.supervision import assert_tree_mode, ledger_ids, tree_env

__all__ = ["tree_env"]

# job type → (how many, expected final state, expected error type or None)
MIX = {
    "mix_ok": (110, "succeeded", None),
    "mix_fail": (40, "failed", "ValueError"),
    "mix_timeout": (16, "timed_out", "Timeout"),
    "mix_hang": (16, "hung", "Hung"),
    "mix_tree": (18, "timed_out", "Timeout"),
}
_TERMINAL = re.compile(r"^\S+ (?P<id>[0-9a-f]{20}) \S+ (?P<state>succeeded|failed|timed_out|hung|cancelled|lost)\b")


def job_processes(job_ids: set[str]) -> list[psutil.Process]:
    """Live processes carrying the env marker of one of these jobs (any descendant inherits it)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get(ENV_MARKER) in job_ids:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def done_count(d, job_ids: set[str]) -> int:
    counts = d.client.request("GET", "/v1/jobs", params={"limit": 1000}).json()["items"]
    return sum(1 for item in counts if item["id"] in job_ids and item["done"])


def test_200_mixed_jobs_survive_three_daemon_kills(make_daemon, tree_env, tmp_path: Path) -> None:
    t0 = time.monotonic()
    d = make_daemon(RUNSPACE_MAX_CONCURRENCY="8", **tree_env)
    assert_tree_mode(d, tree_env)
    ledger = tmp_path / "ledger"
    kinds = [job for job, (count, *_) in MIX.items() for _ in range(count)]
    random.Random(4).shuffle(kinds)
    jobs: dict[str, str] = {}  # id → type
    for n, kind in enumerate(kinds):
        status = d.submit(kind, {"ledger": str(ledger), "n": n, "seconds": (n % 3) * 0.05})
        jobs[status["id"]] = kind
    ids = set(jobs)
    phases = [("submitted", time.monotonic() - t0)]

    for threshold in (30, 80, 130):  # crash while jobs of every kind are running and queued
        wait_until(lambda: done_count(d, ids) >= threshold, timeout=40, interval=0.2,
                   what=f"{threshold} jobs to finish")
        phases.append((f"{threshold} done", time.monotonic() - t0))
        d.kill9()
        d.start()
        phases.append(("restarted", time.monotonic() - t0))

    finals = {job_id: d.wait(job_id, timeout=60) for job_id in jobs}
    elapsed = time.monotonic() - t0

    wrong = []
    for job_id, kind in jobs.items():
        _, state, error = MIX[kind]
        final = finals[job_id]
        if final["state"] != state or (final["error"] or {}).get("type") != error:
            wrong.append((kind, final["state"], final["error"], final["reason"]))
        elif kind == "mix_ok" and final["result"] != {"n": final["params"]["n"]}:
            wrong.append((kind, "bad result", final["result"]))
    assert not wrong, f"{len(wrong)} jobs ended wrongly: {wrong[:10]}"

    ran = Counter(ledger_ids(ledger))
    assert max(ran.values()) == 1, f"ran twice: {[i for i, c in ran.items() if c > 1]}"
    # Timeouts count from the spawn: on a loaded machine a 1.5 s job may be killed before its code starts.
    must_run = {i for i, kind in jobs.items() if kind in ("mix_ok", "mix_fail")}
    assert must_run <= set(ran) <= ids
    user_log = next((d.log_dir / "users").glob("*.log")).read_text()
    endings = Counter(m["id"] for line in user_log.splitlines() if (m := _TERMINAL.match(line)))
    assert max(endings.values()) == 1, "a job was recorded as ending more than once"

    wait_until(lambda: not job_processes(ids), timeout=10, what="every job process to be gone")
    assert elapsed < 60, f"stress run took {elapsed:.1f} s: {phases}"
