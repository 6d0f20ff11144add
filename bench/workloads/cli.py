"""`runspace status ID` as a cold CLI process vs `python -c pass` (and tsp's C client).

`python -c "import click"` runs beside them: it is where any command that goes through the
click CLI starts; `status ID` skips click (supervisor/cli_main.py), so it can be below it.
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
            if proc.returncode not in (0, 1):
                raise RuntimeError(f"{argv} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return {name: median(samples) for name, samples in times.items()}


def run(ctx: Context) -> list[Row]:
    runs = ctx.sizes.cli_runs
    d = RunspaceDaemon(ctx.dir("runspace-cli")).start()
    tsp = Tsp(ctx.dir("tsp-cli"), 1).start() if have("tsp") else None
    try:
        job_id = d.client.submit("noop", wait=10)["id"]
        commands = {"runspace": ([str(Path(sys.executable).parent / "runspace"), "status", job_id], d.env),
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
    cli = ms.pop("runspace")
    return [Row("`runspace status ID`, cold process", "wall time, median", "ms", "lower", cli, ms,
                target="≤ 2× python -c pass", met=cli <= 2 * ms["python -c pass"])]
