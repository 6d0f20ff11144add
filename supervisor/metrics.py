"""Prometheus text exposition of the daemon's counters, gauges and the job duration histogram."""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from supervisor.models import JobRecord

# Seconds: from quick API-backed jobs to hour-long ingestion runs.
DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)


class DurationHistogram:
    """How long finished jobs ran, per job type (cumulative buckets are built when rendered)."""

    def __init__(self, buckets: tuple[float, ...] = DURATION_BUCKETS) -> None:
        self.buckets = buckets
        self._counts: dict[str, list[int]] = defaultdict(lambda: [0] * (len(buckets) + 1))
        self._sums: dict[str, float] = defaultdict(float)

    def observe(self, job: str, seconds: float) -> None:
        self._counts[job][bisect.bisect_left(self.buckets, seconds)] += 1
        self._sums[job] += seconds

    def render(self, name: str) -> list[str]:
        lines = []
        for job in sorted(self._counts):
            label, running = _label(job), 0
            for bound, count in zip((*self.buckets, float("inf")), self._counts[job], strict=True):
                running += count
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                lines.append(f'{name}_bucket{{job="{label}",le="{le}"}} {running}')
            lines.append(f'{name}_sum{{job="{label}"}} {self._sums[job]:.6f}')
            lines.append(f'{name}_count{{job="{label}"}} {running}')
        return lines


@dataclass
class JobStats:
    """What this daemon counted as jobs ended since it started (the scheduler counts; /metrics reads)."""

    kills: Counter[str] = field(default_factory=Counter)  # by KillReason
    durations: DurationHistogram = field(default_factory=DurationHistogram)

    def job_ended(self, rec: JobRecord, ran_here: bool = True) -> None:
        """`ran_here`: False for a job another host settled (lost with its dead host)."""
        if rec.reason:
            self.kills[rec.reason] += 1
        if ran_here and rec.started_at and rec.finished_at:
            self.durations.observe(rec.job, rec.finished_at - rec.started_at)


@dataclass(frozen=True)
class Gauges:
    """The numbers /metrics reads at the moment it is asked."""

    jobs: dict[tuple[str, str], int]  # (job type, state) -> jobs in the store
    queued: int
    running: int
    daemon_starts: int


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def render_metrics(gauges: Gauges, stats: JobStats) -> str:
    lines = _family("runspace_jobs", "gauge", "Jobs in the store by type and state.")
    for (job, state), count in sorted(gauges.jobs.items()):
        lines.append(f'runspace_jobs{{job="{_label(job)}",state="{state}"}} {count}')
    lines += _family("runspace_queue_depth", "gauge", "Jobs waiting to run on this host.")
    lines.append(f"runspace_queue_depth {gauges.queued}")
    lines += _family("runspace_running", "gauge", "Jobs running on this host.")
    lines.append(f"runspace_running {gauges.running}")
    lines += _family("runspace_job_duration_seconds", "histogram",
                     "Run time of jobs that ended since the daemon started, by type.")
    lines += stats.durations.render("runspace_job_duration_seconds")
    lines += _family("runspace_kills_total", "counter", "Jobs killed, by reason, since the daemon started.")
    for reason, count in sorted(stats.kills.items()):
        lines.append(f'runspace_kills_total{{reason="{_label(reason)}"}} {count}')
    lines += _family("runspace_daemon_starts_total", "counter", "Times a daemon started on this store.")
    lines.append(f"runspace_daemon_starts_total {gauges.daemon_starts}")
    lines += _family("runspace_daemon_restarts_total", "counter", "Daemon starts after the first on this store.")
    lines.append(f"runspace_daemon_restarts_total {max(gauges.daemon_starts - 1, 0)}")
    return "\n".join(lines) + "\n"


def render_own_metrics(queued: int | None, running: int) -> str:
    """A caller who is not an admin: the same gauges, counting only their own jobs."""
    lines = _family("runspace_queue_depth", "gauge", "Your jobs waiting to run on this host.")
    if queued is not None:
        lines.append(f"runspace_queue_depth {queued}")
    lines += _family("runspace_running", "gauge", "Your jobs running on this host.")
    lines.append(f"runspace_running {running}")
    return "\n".join(lines) + "\n"
