"""The result table: rows of runspace vs peers, printed as text, written as JSON and Markdown."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil


@dataclass
class Row:
    """One measured figure: runspace's value and each peer's, measured in the same run.

    `better` says which direction wins; `advantage` turns each peer figure into "how many
    times better runspace is" (> 1 = runspace ahead). For the Popen floor, the HTTP
    ceiling and the fork + exit floor it is runspace's share of that rate or cost.
    """

    workload: str
    metric: str
    unit: str
    better: str  # "higher" | "lower"
    runspace: float | None
    peers: dict[str, float | None] = field(default_factory=dict)
    target: str = ""
    met: bool | None = None  # None: no target or not measurable here
    note: str = ""

    def advantage(self, peer: str) -> float | None:
        other = self.peers.get(peer)
        if other is None or self.runspace is None or not _finite(other) or not _finite(self.runspace):
            return None
        if self.better == "higher":
            return self.runspace / other if other else None
        return other / self.runspace if self.runspace else None


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def fmt(value: float | None, unit: str) -> str:
    if value is None or not _finite(value):
        return "n/a"
    if unit in ("count",):
        return f"{value:.0f}"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}"


def _peer_text(row: Row) -> str:
    parts = []
    for name, value in row.peers.items():
        adv = row.advantage(name)
        parts.append(f"{name} {fmt(value, row.unit)}" + (f" ({adv:.2f}×)" if adv is not None else ""))
    return "; ".join(parts) or "—"


def _verdict(row: Row) -> str:
    return {True: "met", False: "MISSED", None: "—"}[row.met]


def text_table(rows: list[Row]) -> str:
    header = ("workload", "metric", "runspace", "peers (runspace advantage ×)", "target", "")
    lines = [header]
    for r in rows:
        value = fmt(r.runspace, r.unit) if r.runspace is not None else (r.note or "n/a")
        lines.append((r.workload, r.metric, value, _peer_text(r), r.target, _verdict(r)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(rows: list[Row], meta: dict) -> str:
    out = [f"Measured {meta['date']} on {meta['machine']['summary']} ({'quick' if meta['quick'] else 'full'} run).",
           "Advantage = how many times better runspace is than the peer (> 1 = runspace ahead; for the Popen",
           "floor, the HTTP ceiling and the fork + exit floor: runspace's share of that rate or cost).", "",
           "| workload | metric | runspace | peers (advantage) | target | |", "|---|---|---|---|---|---|"]
    for r in rows:
        value = fmt(r.runspace, r.unit) if r.runspace is not None else (r.note or "n/a")
        out.append(f"| {r.workload} | {r.metric} | {value} | {_peer_text(r)} | {r.target} | {_verdict(r)} |")
    notes = [f"- {r.workload}, {r.metric}: {r.note}" for r in rows if r.note and r.runspace is not None]
    return "\n".join(out + ([""] + notes if notes else [])) + "\n"


def machine() -> dict:
    mem = psutil.virtual_memory().total / 2**30
    cpu = platform.processor() or platform.machine()
    load = os.getloadavg()[0]
    return {
        "summary": f"{os.cpu_count()} CPUs, {mem:.0f} GiB, Linux {platform.release()}, Python {platform.python_version()}, "
                   f"load avg {load:.1f}",
        "load_avg_1min": round(load, 2),
        "cpus": os.cpu_count(),
        "memory_gib": round(mem, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpu": cpu,
    }


def write_results(rows: list[Row], quick: bool, out_dir: Path, seconds: float, name: str = "latest") -> dict:
    """`name`.json and `name`.md; a run of some workloads only writes its own files, so it
    never replaces the last whole table."""
    meta = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(), "quick": quick,
            "seconds": round(seconds, 1)}
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {**meta, "rows": [{**asdict(r), "advantage": {p: r.advantage(p) for p in r.peers}} for r in rows]}
    (out_dir / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(markdown_table(rows, meta))
    return meta
