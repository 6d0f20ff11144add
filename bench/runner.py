"""`python -m bench [--quick] [--only NAME…]`: set up peers, run every workload, print one table."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"


def _ensure_venv() -> None:
    """Re-run under the project's venv when started with another interpreter."""
    if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), "-m", "bench", *sys.argv[1:]])


def _ensure_peers(skip: bool) -> None:
    from bench.peers import have, have_rq

    if skip or (have("tsp") and have("nq") and have_rq()):
        return
    print("bench: installing peers with bench/setup.sh …", file=sys.stderr)
    subprocess.run(["bash", str(ROOT / "bench" / "setup.sh")], check=False)


def _compile_bytecode() -> None:
    """Write runspace's .pyc files first, as an install does: with PYTHONDONTWRITEBYTECODE set
    (as on this machine) a module edited since its last compile would be compiled again by
    every cold CLI process measured, adding ~10 ms that no installed runspace pays."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "supervisor")], check=False)


def workloads() -> dict[str, Callable]:
    from bench.workloads import cli, hosts, kill, latency, memory, store, throughput

    return {
        "throughput": throughput.run,
        "latency": latency.run,
        "kill": kill.run,
        "memory": memory.run,
        "store": store.run,
        "cli": cli.run,
        "hosts": hosts.run,
    }


def main() -> None:
    _ensure_venv()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts; the whole run takes < 60 s")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these workloads")
    parser.add_argument("--no-setup", action="store_true", help="do not install missing peers")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where latest.json goes")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (daemon logs) for inspection")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))

    from bench.context import FULL, QUICK, Context
    from bench.harness import kill_marked
    from bench.report import text_table, write_results

    _ensure_peers(args.no_setup)
    _compile_bytecode()
    base = Path(tempfile.mkdtemp(prefix="runspace-bench-"))
    ctx = Context(base, args.quick, QUICK if args.quick else FULL)
    chosen = {k: v for k, v in workloads().items() if not args.only or k in args.only}
    rows, started = [], time.perf_counter()
    try:
        for name, run in chosen.items():
            t0 = time.perf_counter()
            print(f"bench: {name} …", file=sys.stderr, flush=True)
            try:
                rows.extend(run(ctx))
            except Exception:
                traceback.print_exc()
                print(f"bench: {name} failed; continuing", file=sys.stderr)
            finally:
                strays = kill_marked()
                if strays:
                    print(f"bench: cleaned up {strays} processes still running after {name}", file=sys.stderr)
            print(f"bench: {name} took {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    finally:
        kill_marked()
        if args.keep:
            print(f"bench: temp dir kept: {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    elapsed = time.perf_counter() - started
    name = "latest-" + "-".join(args.only) if args.only else "latest"
    meta = write_results(rows, args.quick, args.out, elapsed, name)
    print(f"\nrunspace benchmarks — {meta['date']} — {meta['machine']['summary']} — "
          f"{'quick' if args.quick else 'full'} run, {elapsed:.0f} s\n")
    print(text_table(rows))
    print(f"\nJSON: {args.out / (name + '.json')}   Markdown: {args.out / (name + '.md')}")
