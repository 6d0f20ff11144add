"""Prometheus text exposition of the daemon's counters and gauges."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervisor.daemon import Daemon


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(daemon: Daemon) -> str:
    lines = [
        "# HELP runspace_jobs Jobs in the store by type and state.",
        "# TYPE runspace_jobs gauge",
    ]
    for (job, state), count in sorted(daemon.store.count_by_state().items()):
        lines.append(f'runspace_jobs{{job="{_label(job)}",state="{state}"}} {count}')
    lines += [
        "# HELP runspace_queue_depth Jobs waiting to run on this host.",
        "# TYPE runspace_queue_depth gauge",
        f"runspace_queue_depth {len(daemon.scheduler.queue)}",
        "# HELP runspace_running Jobs running on this host.",
        "# TYPE runspace_running gauge",
        f"runspace_running {len(daemon.scheduler.running)}",
        "# HELP runspace_kills_total Jobs killed, by reason, since the daemon started.",
        "# TYPE runspace_kills_total counter",
    ]
    for key, count in sorted(daemon.scheduler.stats.items()):
        if key.startswith("kill|"):
            lines.append(f'runspace_kills_total{{reason="{key[5:]}"}} {count}')
    lines += [
        "# HELP runspace_daemon_starts_total Times a daemon started on this store.",
        "# TYPE runspace_daemon_starts_total counter",
        f"runspace_daemon_starts_total {daemon.starts}",
    ]
    return "\n".join(lines) + "\n"
