"""`runspace run`: the same job, validation and context, run in this terminal process (no daemon)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import click

from supervisor.context import JobContext
from supervisor.logs import job_line, stamp
from supervisor.registry import JobType, load_registry
from supervisor.runner.files import ENV_MARKER
from supervisor.runner.kill import kill_tree
from supervisor.runner.tree import JobTree
from supervisor.settings import Settings
from supervisor.submit import SubmitRequest, build_record


class TerminalReporter:
    def log(self, text: str) -> None:
        click.echo(f"{stamp()} [log] {text}", err=True)

    def output(self, text: str) -> None:
        os.write(1, job_line(text).encode("utf-8", "replace"))

    def progress(self, done: float, total: float | None, message: str | None) -> None:
        share = f"{done:g}/{total:g}" if total else f"{done:g}"
        click.echo(f"{stamp()} [progress] {share} {message or ''}".rstrip(), err=True)


_DEBUGGER_RECHECK = 1.0  # s between looks at whether the debugger is still attached


class InlineTimeout(BaseException):
    """The job's timeout ran out (a BaseException: job code's `except Exception` must not swallow it)."""


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """SIGALRM after `seconds` raises InlineTimeout wherever the job is (None: no limit).
    Not while a debugger is at work (a `breakpoint()`): then it looks again every second."""
    if seconds is None:
        yield
        return

    def expire(*_: object) -> None:
        if sys.gettrace() is not None:  # pdb (or another tracer) is stepping through the job
            signal.setitimer(signal.ITIMER_REAL, _DEBUGGER_RECHECK)
            return
        raise InlineTimeout(f"the job exceeded its timeout of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _alarm_held() -> Iterator[None]:
    """The timeout waits until the command has started and its output pipe is ours to close."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})


def _end_tree(job_id: str, started: float, grace: float) -> None:
    """SIGTERM, then SIGKILL after the grace, to every process the job started: found, as
    under the daemon without cgroups, by the environment marker they all inherited."""
    anyio.run(kill_tree, JobTree(job_id, None, started), grace)


def run_inline(settings: Settings, job: str, params_for: Callable[[dict[str, Any]], dict[str, Any]], requestor: str,
               debug: bool = False) -> tuple[int, Any]:
    """Returns (exit code, result or error); `params_for` makes the params from the type's schema. Job code runs here, so `breakpoint()` works;
    with `debug`, an exception stops in pdb's post-mortem debugger and no timeout applies
    (it would end a debugging session); without, the type's timeout ends the job (exit 124)."""
    registry = load_registry(settings.job_dirs)
    for broken in registry.broken:
        click.echo(f"runspace: warning: job module {broken.path} not loaded: {broken.error}", err=True)
    jt = registry.get(job)
    params = params_for(jt.params_model.model_json_schema())  # key=value text typed by the schema
    rec = build_record(registry, SubmitRequest(job=job, params=params), requestor)
    tmpdir = Path(tempfile.mkdtemp(prefix=f"runspace-{rec.id}-"))
    ctx = JobContext(rec.id, jt.name, requestor, rec.log_user, tmpdir, TerminalReporter())
    opts = jt.options.applied(settings)
    timeout, grace = None if debug else opts.timeout, opts.kill_grace
    os.environ[ENV_MARKER] = rec.id  # inherited by everything the job starts
    started = time.time()
    try:
        with _sigterm_exits(), deadline(timeout):
            return _run(jt, jt.params_model.model_validate(rec.params), ctx)
    except InlineTimeout as exc:
        click.echo(f"runspace: {job} timed out: {exc}", err=True)
        return 124, {"type": "Timeout", "message": str(exc)}
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        if debug:
            import pdb

            pdb.post_mortem(exc.__traceback__)
        return 1, {"type": type(exc).__name__, "message": str(exc)}
    finally:
        _end_tree(rec.id, started, grace or 0.0)  # leftovers too, as when a job's main process ends
        shutil.rmtree(tmpdir, ignore_errors=True)


def _run(jt: JobType, model: Any, ctx: JobContext) -> tuple[int, Any]:
    if jt.kind != "command":
        result = jt.func(model, ctx)
        json.dumps(result)  # what the daemon would refuse to record fails here too
        return 0, result
    from supervisor.command import check_argv, relay_command, start_command

    argv = check_argv(jt.func(model, ctx))
    with contextlib.chdir(ctx.tmpdir), _alarm_held():  # the job's cwd is its tmp dir, as under the daemon
        pid, output = start_command(argv)
    outcome = relay_command(pid, output, argv[0], ctx)
    return (0 if outcome["state"] == "succeeded" else 1), outcome.get("result") or outcome.get("error")


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C does: through `finally`, so the tmp dir is removed."""
    def terminate(*_: object) -> None:
        raise SystemExit(128 + signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
