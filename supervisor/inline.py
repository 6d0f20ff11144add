"""`runspace run`: the same job, validation and context, run in this terminal process (no daemon)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import psutil

from supervisor.context import JobContext
from supervisor.logs import stamp
from supervisor.registry import JobType, load_registry
from supervisor.settings import Settings
from supervisor.submit import SubmitRequest, build_record


class TerminalReporter:
    def log(self, text: str) -> None:
        click.echo(f"{stamp()} [log] {text}", err=True)

    def progress(self, done: float, total: float | None, message: str | None) -> None:
        share = f"{done:g}/{total:g}" if total else f"{done:g}"
        click.echo(f"{stamp()} [progress] {share} {message or ''}".rstrip(), err=True)


class InlineTimeout(BaseException):
    """The job's timeout ran out (a BaseException: job code's `except Exception` must not swallow it)."""


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """SIGALRM after `seconds` raises InlineTimeout wherever the job is (None: no limit).
    A `breakpoint()` stops the clock: a debugging session has no timeout."""
    if seconds is None:
        yield
        return

    def expire(*_: object) -> None:
        raise InlineTimeout(f"the job exceeded its timeout of {seconds:g} s")

    hook = sys.breakpointhook

    def breakpoint_without_deadline(*args: Any, **kwargs: Any) -> Any:
        signal.setitimer(signal.ITIMER_REAL, 0)
        return hook(*args, **kwargs)

    previous = signal.signal(signal.SIGALRM, expire)
    sys.breakpointhook = breakpoint_without_deadline
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        sys.breakpointhook = hook


@contextlib.contextmanager
def _alarm_held() -> Iterator[None]:
    """The timeout waits until the command's pid is known, so the command is never left running."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})


def _end_command(pid: int, grace: float) -> None:
    """SIGTERM to the command and its descendants, SIGKILL to those left after the grace.
    (Inline there is no cgroup or session of its own: what left the tree is not found.)"""
    try:
        leader = psutil.Process(pid)
        tree = [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for proc in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(tree, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=grace)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def run_inline(settings: Settings, job: str, params: dict[str, Any], requestor: str,
               debug: bool = False) -> tuple[int, Any]:
    """Returns (exit code, result or error). Job code runs here, so `breakpoint()` works;
    with `debug`, an exception stops in pdb's post-mortem debugger and no timeout applies
    (it would end a debugging session); without, the type's timeout ends the job (exit 124)."""
    registry = load_registry(settings.job_dirs)
    for broken in registry.broken:
        click.echo(f"runspace: warning: job module {broken.path} not loaded: {broken.error}", err=True)
    rec = build_record(registry, SubmitRequest(job=job, params=params), requestor)
    jt = registry.get(job)
    tmpdir = Path(tempfile.mkdtemp(prefix=f"runspace-{rec.id}-"))
    ctx = JobContext(rec.id, jt.name, requestor, rec.log_user, tmpdir, TerminalReporter())
    opts = jt.options.applied(settings)
    timeout, grace = None if debug else opts.timeout, opts.kill_grace
    try:
        with _sigterm_exits(), deadline(timeout):
            return _run(jt, jt.params_model.model_validate(rec.params), ctx, grace)
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
        shutil.rmtree(tmpdir, ignore_errors=True)


def _run(jt: JobType, model: Any, ctx: JobContext, grace: float) -> tuple[int, Any]:
    if jt.kind != "command":
        result = jt.func(model, ctx)
        json.dumps(result)  # what the daemon would refuse to record fails here too
        return 0, result
    from supervisor.command import check_argv, relay_command, start_command

    argv = check_argv(jt.func(model, ctx))
    pid = None
    try:
        with contextlib.chdir(ctx.tmpdir), _alarm_held():  # the job's cwd is its tmp dir, as under the daemon
            pid, output = start_command(argv)
        outcome = relay_command(pid, output, argv[0], ctx)
    except InlineTimeout:
        if pid is not None:
            _end_command(pid, grace)
        raise
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
