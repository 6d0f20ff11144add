"""`runspace run`: the same job, validation and context, run in this terminal process (no daemon)."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import click

from supervisor.context import JobContext
from supervisor.logs import stamp
from supervisor.registry import load_registry
from supervisor.settings import Settings
from supervisor.submit import SubmitRequest, build_record


class TerminalReporter:
    def log(self, text: str) -> None:
        click.echo(f"{stamp()} [log] {text}", err=True)

    def progress(self, done: float, total: float | None, message: str | None) -> None:
        share = f"{done:g}/{total:g}" if total else f"{done:g}"
        click.echo(f"{stamp()} [progress] {share} {message or ''}".rstrip(), err=True)


def run_inline(settings: Settings, job: str, params: dict[str, Any], requestor: str,
               debug: bool = False) -> tuple[int, Any]:
    """Returns (exit code, result or error). Job code runs here, so `breakpoint()` works;
    with `debug`, an exception stops in pdb's post-mortem debugger."""
    from supervisor.command import check_argv, relay_command, start_command

    registry = load_registry(settings.job_dirs)
    for broken in registry.broken:
        click.echo(f"runspace: warning: job module {broken.path} not loaded: {broken.error}", err=True)
    rec = build_record(registry, SubmitRequest(job=job, params=params), requestor)
    jt = registry.get(job)
    tmpdir = Path(tempfile.mkdtemp(prefix=f"runspace-{rec.id}-"))
    ctx = JobContext(rec.id, jt.name, requestor, rec.log_user, tmpdir, TerminalReporter())
    try:
        model = jt.params_model.model_validate(rec.params)
        if jt.kind == "command":
            argv = check_argv(jt.func(model, ctx))
            with contextlib.chdir(tmpdir):  # the job's cwd is its tmp dir, as under the daemon
                pid, output = start_command(argv)
            outcome = relay_command(pid, output, argv[0], ctx)
            return (0 if outcome["state"] == "succeeded" else 1), outcome.get("result") or outcome.get("error")
        result = jt.func(model, ctx)
        json.dumps(result)
        return 0, result
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        if debug:
            import pdb

            pdb.post_mortem(exc.__traceback__)
        return 1, {"type": type(exc).__name__, "message": str(exc)}
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
