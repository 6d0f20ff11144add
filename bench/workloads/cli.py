"""Cold CLI processes: each scripted command vs `python -c pass`, `python -c "import click"` and tsp's C client.

`python -c "import click"` is where any command that goes through the click CLI starts (issue
22's target: each scripted command ≤ 1.3× it); `status ID` skips click (supervisor/cli_main.py),
so it can be below it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.context import Context
from bench.harness import RunspaceDaemon
from bench.peers import Tsp, have
from bench.report import Row
from bench.stats import median

_CLICK_TARGET = 1.3
# Cancelling the ended job is a refused request (409), which the CLI exits 2 on (74615db).
_EXIT_CODES = {"cancel ID": (2,)}


def _medians_ms(commands: dict[str, tuple[list[str], dict[str, str]]], runs: int) -> dict[str, float]:
    """Median wall time of each command, runs interleaved so machine noise hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for argv, env in commands.values():
        subprocess.run(argv, env=env, capture_output=True)  # page cache warm, like any second run
    for _ in range(runs):
        for name, (argv, env) in commands.items():
            t0 = time.perf_counter()
            proc = subprocess.run(argv, env=env, capture_output=True)
            times[name].append((time.perf_counter() - t0) * 1000)
            if proc.returncode not in _EXIT_CODES.get(name, (0, 1)):
                raise RuntimeError(f"{argv} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return {name: median(samples) for name, samples in times.items()}


def _scripted(runspace: str, job_id: str, items: Path) -> dict[str, list[str]]:
    """The commands scripts loop on; each reads or acts on one ended job (cancel answers 409, exit 2)."""
    return {"submit noop": [runspace, "submit", "noop"],
            "exec -- true": [runspace, "exec", "--", "true"],
            "wait ID": [runspace, "wait", job_id],
            "cancel ID": [runspace, "cancel", job_id],
            "list": [runspace, "list"],
            "logs ID": [runspace, "logs", job_id],
            "batch --detach": [runspace, "batch", "noop", "--items", str(items), "--detach"]}


def run(ctx: Context) -> list[Row]:
    runs = ctx.sizes.cli_runs
    d = RunspaceDaemon(ctx.dir("runspace-cli")).start()
    tsp = Tsp(ctx.dir("tsp-cli"), 1).start() if have("tsp") else None
    try:
        job_id = d.client.submit("noop", wait=10)["id"]
        items = ctx.dir("runspace-cli") / "items.jsonl"
        items.write_text("{}\n{}\n")
        runspace = str(Path(sys.executable).parent / "runspace")
        commands = {"status ID": ([runspace, "status", job_id], d.env),
                    **{name: (argv, d.env) for name, argv in _scripted(runspace, job_id, items).items()},
                    "python -c pass": ([sys.executable, "-c", "pass"], d.env),
                    "python -c 'import click'": ([sys.executable, "-c", "import click"], d.env)}
        if tsp is not None:
            tsp_job = tsp.submit("true")
            tsp.tsp("-w", str(tsp_job))
            commands["tsp -s ID"] = (["tsp", "-s", str(tsp_job)], tsp.env)
        ms = _medians_ms(commands, runs)
    finally:
        d.stop()
        if tsp is not None:
            tsp.stop()
    floors = {name: ms[name] for name in ("python -c pass", "python -c 'import click'", "tsp -s ID") if name in ms}
    rows = [Row("`runspace status ID`, cold process", "wall time, median", "ms", "lower", ms["status ID"], floors,
                target="≤ 2× python -c pass", met=ms["status ID"] <= 2 * ms["python -c pass"])]
    click = ms["python -c 'import click'"]
    for name in _scripted("", "", Path()):
        rows.append(Row(f"`runspace {name}`, cold process", "wall time, median", "ms", "lower", ms[name], floors,
                        target=f"≤ {_CLICK_TARGET}× python -c 'import click'", met=ms[name] <= _CLICK_TARGET * click))
    return rows
