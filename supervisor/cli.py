"""The `runspace` command line: parse, call the daemon's API, print. Exit codes per CONTRACT §6."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from supervisor.cli_input import (
    DURATION,
    SECONDS,
    check_job_id,
    exec_env,
    params_schema,
    parse_pairs,
    read_items,
    start_conditions,
    start_fields,
)
from supervisor.errors import DaemonUnreachable, InvalidParams, RunspaceError
from supervisor.output import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TIMED_OUT,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    print_json,
    print_status,
    state_exit_code,
    terminal_safe,
)

if TYPE_CHECKING:
    from supervisor.client import Client  # imported only by a command that talks to the daemon (_client)


ENDED_STATES = ("succeeded", "failed", "timed_out", "hung", "cancelled", "lost")


def _settings():
    from supervisor.settings import load_settings

    return load_settings()


def goes_on(ctx: click.Context, note: str) -> None:
    """What a Ctrl-C from here on leaves running, and how to get back to it (said on exit 130)."""
    ctx.obj["goes_on"] = note


def job_goes_on(ctx: click.Context, job_id: str) -> None:
    goes_on(ctx, f"job {job_id} goes on (`runspace wait {job_id}` follows it again, "
                 f"`runspace cancel {job_id}` stops it)")


class RunspaceGroup(click.Group):
    """Turns every RunspaceError into one line on stderr and the right exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # Ctrl-C only stops watching: what runs in the daemon goes on
            note = (ctx.obj or {}).get("goes_on")
            click.echo(f"\nrunspace: interrupted; {note}" if note else "\nrunspace: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except RunspaceError as exc:
            click.echo(f"runspace: error: {exc.detail}", err=True)
            for err in exc.errors:
                line = f"{'.'.join(map(str, err.loc))}: {err.msg}"
                if line not in exc.detail:  # the daemon's detail may name the fields already
                    click.echo(f"  {line}", err=True)
            if isinstance(exc, DaemonUnreachable):
                sys.exit(EXIT_UNREACHABLE)
            # A request the daemon refused (bad input, not allowed, conflict, full, draining: an
            # error with its own status) is the caller's to fix or retry: 2, never 1, which says a
            # job failed. The rest is 1: a daemon that cannot start (its state dir, socket or host
            # id in use: CONTRACT §13), an internal error.
            sys.exit(EXIT_FAILED if exc.status == RunspaceError.status else EXIT_USAGE)


def _socket(ctx: click.Context) -> Path:
    """The daemon's socket (--socket, else as the settings say): found without the settings
    model (supervisor/locate.py), so scripts can loop on any command."""
    from supervisor.locate import daemon_socket

    socket = ctx.obj.get("socket") or daemon_socket()
    if socket is None:
        from supervisor.settings import load_settings  # raises InvalidParams naming what is wrong

        socket = load_settings().socket
    return Path(socket)


def _client(ctx: click.Context):
    """The client for the daemon's socket, without httpx (supervisor/client.py)."""
    from supervisor.client import Client

    return Client(_socket(ctx))


@click.group(cls=RunspaceGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runspace", message="runspace %(version)s")
@click.option("--socket", envvar="RUNSPACE_SOCKET", type=click.Path(), help="Daemon socket (default from settings).")
@click.pass_context
def main(ctx: click.Context, socket: str | None) -> None:
    """runspace: submit jobs to a supervising daemon, follow them, and get their results.

    \b
    Start the daemon:   runspace daemon
    Submit a job:       runspace submit ingest files=20 --wait 30
    Follow it:          runspace wait ID ; runspace logs ID -f

    \b
    Exit codes: 0 ok, 1 job failed or cancelled, 2 usage, invalid params or a
    request the daemon refused (not allowed, conflict, queue full…), 3 daemon
    unreachable, 124 job timed out or hung (or a wait ran out), 130 interrupted
    (Ctrl-C; the job goes on).

    \b
    Shell completion (bash; zsh_source, fish_source likewise):
      eval "$(_RUNSPACE_COMPLETE=bash_source runspace)"
    """
    ctx.ensure_object(dict)
    ctx.obj["socket"] = socket


class _DaemonCommand(click.Command):
    """Lists the settings in `runspace daemon --help` (imported only when help is asked for)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from supervisor.settings import describe_settings

        formatter.write_paragraph()
        formatter.write_text("Settings (env RUNSPACE_*, else the TOML file named by RUNSPACE_CONFIG):")
        with formatter.indentation():
            for line in describe_settings().splitlines():
                formatter.write(f"{formatter.current_indent * ' '}{line}\n")


@main.command(cls=_DaemonCommand)
@click.option("--debug", is_flag=True, help="Verbose daemon log on stderr.")
def daemon(debug: bool) -> None:
    """Run the daemon in the foreground (systemd runs it like this)."""
    from supervisor.daemon import run_daemon

    run_daemon(_settings(), debug=debug)


@main.command()
@click.argument("job")
@click.argument("pairs", nargs=-1)
@click.option("--params", "params_file", metavar="FILE|-", help="JSON object of params (from a file or stdin).")
@click.option("--wait", type=SECONDS, help="Wait up to S seconds for the result (exit 124 if it is not there yet).")
@click.option("--follow", is_flag=True, help="Show progress until the job ends.")
@click.option("--priority", type=int, help="Higher runs first.")
@click.option("--idempotency-key", help="Resubmitting with the same key returns the same job.")
@click.option("--json", "as_json", is_flag=True, help="Print the status object as JSON.")
@start_conditions
@click.pass_context
def submit(ctx, job, pairs, params_file, wait, follow, priority, idempotency_key, as_json, after, delay, at) -> None:
    """Submit JOB with key=value params.

    Prints the job id; with --wait, the result (exit code follows the job)."""
    start = start_fields(after, delay, at)
    goes_on(ctx, "the job may have been queued (`runspace list` shows your jobs)")
    with _client(ctx) as client:
        params = parse_pairs(pairs, params_file, lambda: params_schema(client, job))
        status = submit_then_wait(ctx, client, job, params, wait, priority=priority,
                                  idempotency_key=idempotency_key, **start)
        if follow and not status["done"]:
            from supervisor.progress import follow_progress

            status = follow_progress(client, status["id"], timeout=None, quiet=as_json)
    report_submitted(status, wait, as_json)


def submit_then_wait(ctx: click.Context, client: Client, job: str, params: dict[str, Any], wait: float | None,
                     **extra: Any) -> dict[str, Any]:
    """Submit, then wait for the end in a request of its own: a Ctrl-C during the wait can then
    name the job that goes on (a POST with `wait` holds its id until the answer)."""
    _, status = client.submit(job, params, **extra)
    job_goes_on(ctx, status["id"])
    if wait and not status["done"]:
        status = client.wait(status["id"], timeout=wait)
    return status


def report_submitted(status: dict[str, Any], wait: float | None, as_json: bool) -> None:
    """The job id; with --wait, the status (the result, or how far it got): exit code as the README says."""
    if as_json:
        print_json(status)
    elif status["done"] or wait:  # README: `--wait` prints the result, or the status when it runs out
        print_status(status)
    else:
        click.echo(status["id"])
    if wait and not status["done"] and not as_json:
        click.echo(f"runspace: still {status['state']} after {wait:g} s; the job goes on: "
                   f"`runspace wait {status['id']}` waits for the result", err=True)
    if wait and not status["done"]:
        sys.exit(EXIT_TIMED_OUT)  # like timeout(1): the wait ran out, the job goes on
    sys.exit(state_exit_code(status))


@main.command("exec", context_settings={"allow_interspersed_args": False})
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- CMD [ARG]...")
@click.option("--cwd", type=click.Path(file_okay=False), help="Directory to run in (default: this one).")
@click.option("--env", "env_pairs", multiple=True, metavar="NAME[=VALUE]",
              help="Set NAME for the command (repeatable); without =VALUE, its value here.")
@click.option("--timeout", type=SECONDS, help="Hard timeout in seconds (default: RUNSPACE_DEFAULT_TIMEOUT).")
@click.option("--idle-timeout", type=SECONDS, help="No output and no progress for S seconds: hung, killed.")
@click.option("--wait", type=SECONDS, help="Wait up to S seconds for the end (exit 124 if it is not there yet).")
@click.option("--label", help="Shown by `runspace list` instead of the command line.")
@click.option("--json", "as_json", is_flag=True, help="Print the status object as JSON.")
@start_conditions
@click.pass_context
def exec_command(ctx, argv, cwd, env_pairs, timeout, idle_timeout, wait, label, as_json, after, delay, at) -> None:
    """Run a command line as yourself, supervised by the daemon: `runspace exec -- make test`.

    \b
    Like a job of any type: it is queued, gets a log (`runspace logs ID`), timeouts kill its
    whole process tree, and `::progress DONE TOTAL` / `::log TEXT` lines on stdout report."""
    start = start_fields(after, delay, at)
    params = {"argv": list(argv), "cwd": os.path.abspath(cwd or os.getcwd()), "env": exec_env(env_pairs),
              "label": label, "timeout": timeout or None, "idle_timeout": idle_timeout or None}
    goes_on(ctx, "the job may have been queued (`runspace list` shows your jobs)")
    with _client(ctx) as client:
        status = submit_then_wait(ctx, client, "exec", {k: v for k, v in params.items() if v is not None}, wait,
                                  **start)
    report_submitted(status, wait, as_json)


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx, job_id, as_json) -> None:
    """Show a job's status."""
    check_job_id(job_id)
    with _client(ctx) as client:
        data = client.status(job_id)
    print_json(data) if as_json else print_status(data)
    sys.exit(state_exit_code(data))


@main.command("list")
@click.option("--state", help="Only jobs in this state.")
@click.option("--job", help="Only jobs of this type.")
@click.option("--batch", "batch_id", help="Only jobs of this batch.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--cursor", help="Continue after the page that printed this cursor.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_jobs(ctx, state, job, batch_id, limit, cursor, as_json) -> None:
    """List your jobs, newest first."""
    with _client(ctx) as client:
        page = client.list(state=state, job=job, batch_id=batch_id, limit=limit, cursor=cursor)
    if as_json:
        print_json(page)
        return
    from supervisor.names import user_name
    from supervisor.jobtable import print_jobs

    print_jobs(page["items"], user_name(os.getuid()))
    if page["next_cursor"]:
        click.echo(f"(more: runspace list --cursor {page['next_cursor']})", err=True)


@main.command()
@click.argument("job_id")
@click.option("-f", "--follow", is_flag=True, help="Keep printing output until the job ends.")
@click.option("--json", "as_json", is_flag=True, help='Print {"text": ...} instead of the raw text.')
@click.pass_context
def logs(ctx, job_id, follow, as_json) -> None:
    """Print a job's output (stdout and stderr, timestamped)."""
    job_goes_on(ctx, job_id)
    with _client(ctx) as client:
        chunks = client.follow_log(job_id) if follow else client.log_pages(job_id)
        if as_json:
            print_json({"id": job_id, "text": "".join(chunks)})
            return
        for chunk in chunks:
            click.echo(terminal_safe(chunk), nl=False)


@main.command()
@click.argument("job_id")
@click.option("--timeout", type=SECONDS, help="Give up after S seconds (exit 124; the job goes on).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def wait(ctx, job_id, timeout, as_json) -> None:
    """Wait for a job to end, with a progress bar.

    The exit code follows the job's state."""
    from supervisor.progress import follow_progress

    job_goes_on(ctx, job_id)
    with _client(ctx) as client:
        data = follow_progress(client, job_id, timeout=timeout, quiet=as_json)
    print_json(data) if as_json else print_status(data)
    sys.exit(state_exit_code(data) if data["done"] else EXIT_TIMED_OUT)


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def cancel(ctx, job_id, as_json) -> None:
    """Cancel a queued or running job.

    A running job's whole process tree is killed (SIGTERM, then SIGKILL after kill_grace)."""
    with _client(ctx) as client:
        data = client.cancel(job_id)
    print_json(data) if as_json else print_status(data)


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def restart(ctx, job_id, as_json) -> None:
    """Submit JOB_ID's type and params again as a new job; prints its id."""
    check_job_id(job_id)
    with _client(ctx) as client:
        data = client.restart(job_id)
    print_json(data) if as_json else click.echo(data["id"])


@main.command()
@click.argument("job_ids", nargs=-1, required=True)
@click.pass_context
def rm(ctx, job_ids) -> None:
    """Remove ended jobs: their records, logs and results."""
    for job_id in job_ids:
        check_job_id(job_id)
    with _client(ctx) as client:
        for job_id in job_ids:
            client.remove(job_id)


@main.command()
@click.option("--state", "states", multiple=True, type=click.Choice(ENDED_STATES),
              help="Only jobs that ended in this state (repeatable; default: every ended job).")
@click.option("--older-than", type=DURATION, default=0.0, help="Only jobs that ended this long ago (10m, 7d, …).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def clean(ctx, states, older_than, as_json) -> None:
    """Remove your ended jobs (admins: everyone's) with their logs and results."""
    with _client(ctx) as client:
        removed = client.clean(list(states), older_than)
    print_json({"removed": removed}) if as_json else click.echo(f"removed {removed} jobs")


def _change_queue(ctx: click.Context, change: dict[str, Any], as_json: bool) -> None:
    """Send only what changes (PATCH /v1/queue, admins only): the daemon applies it to the settings
    as they are then, so another admin's change made at the same time is not undone. Show the state."""
    with _client(ctx) as client:
        state = client.change_queue(change)
    print_json(state) if as_json else _print_queue(state)


def _print_queue(state: dict[str, Any]) -> None:
    paused = "paused" if state["paused"] else "running"
    if state["paused_types"]:
        paused += f" (paused types: {', '.join(state['paused_types'])})"
    click.echo(f"queue: {paused}; {state['running']} running of {state['max_concurrency']}, {state['queued']} queued")
    for job, slots in sorted(state["parallel_types"].items()):
        click.echo(f"  {job}: at most {slots} at once")


@main.command("queue")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def queue_state(ctx, as_json) -> None:
    """Show whether the queue is paused, its parallelism, and how many jobs run and wait."""
    with _client(ctx) as client:
        state = client.queue()
    print_json(state) if as_json else _print_queue(state)


@main.command()
@click.argument("job", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def pause(ctx, job, as_json) -> None:
    """Start no new jobs (of type JOB, or at all); running jobs go on. Admins only."""
    _change_queue(ctx, {"paused": True} if job is None else {"pause_types": [job]}, as_json)


@main.command()
@click.argument("job", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def resume(ctx, job, as_json) -> None:
    """Start jobs again (of type JOB, or the whole queue). Admins only."""
    _change_queue(ctx, {"paused": False} if job is None else {"resume_types": [job]}, as_json)


@main.command()
@click.argument("slots", type=click.IntRange(1, 1_000_000))
@click.option("--job", help="Only for this job type (in place of the concurrency it declares).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def parallel(ctx, slots, job, as_json) -> None:
    """Run at most SLOTS jobs at once (of type JOB, or in all). Admins only."""
    _change_queue(ctx, {"parallel": slots} if job is None else {"parallel_types": {job: slots}}, as_json)


@main.command()
@click.argument("job")
@click.option("--items", "items_file", required=True, metavar="FILE.jsonl|-", help="One params object per line.")
@click.option("--callback", metavar="JOB", help="Job run once per ended item with "
              "{success, errors, original_input, output, job_id, batch_id}.")
@click.option("--batch-id", help="Your id for the batch; resubmitting the same batch returns it.")
@click.option("--detach", is_flag=True, help="Print the batch id and return without following it.")
@click.option("--json", "as_json", is_flag=True, help="Print the batch summary as JSON.")
@start_conditions
@click.pass_context
def batch(ctx, job, items_file, callback, batch_id, detach, as_json, after, delay, at) -> None:
    """Submit a batch: one JOB per line of FILE.jsonl.

    Follows the batch with a progress bar.

    Every item is validated first: one bad item and nothing is queued. Exit code 0 when
    every item succeeded, 1 otherwise.
    """
    items = read_items(items_file)
    start = start_fields(after, delay, at)
    goes_on(ctx, "the batch may have been queued (`runspace list` shows your jobs)")
    with _client(ctx) as client:
        _, created = client.submit_batch(job, items, callback=callback, batch_id=batch_id, **start)
        goes_on(ctx, f"batch {created['batch_id']} goes on (`runspace list --batch {created['batch_id']}` "
                     "shows its jobs)")
        if detach:
            print_json(created) if as_json else click.echo(created["batch_id"])
            return
        from supervisor.progress import batch_message, follow_batch

        summary = follow_batch(client, created["batch_id"], quiet=as_json)
    if as_json:  # the item ids, not the empty page of items the follow asked for
        summary = {k: v for k, v in summary.items() if k not in ("items", "next_cursor")}
        print_json({**summary, "job_ids": created["job_ids"]})
    else:
        click.echo(f"batch {summary['batch_id']}: {batch_message(summary)}")
    sys.exit(EXIT_OK if summary["counts"].get("succeeded", 0) >= summary["size"] else EXIT_FAILED)


def _follow_user_log(client: Any, user: str, as_json: bool) -> None:
    pending = ""
    for chunk in client.follow_user_log(user):
        if not as_json:
            click.echo(terminal_safe(chunk), nl=False)
            continue
        *lines, pending = (pending + chunk).split("\n")
        for line in lines:
            click.echo(json.dumps({"user": user, "line": line}))


@main.command("user-log")
@click.argument("user", required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C to stop).")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"user": ..., "lines": [...]}; with -f, one {"user": ..., "line": ...} per line.')
@click.pass_context
def user_log(ctx, user, follow, as_json) -> None:
    """Print a user's unified log.

    USER defaults to you: every job's events and ctx.log lines, one per line."""
    from supervisor.names import user_name

    from supervisor.logs import check_log_user

    user = check_log_user(user or user_name(os.getuid()), ["USER"])  # `../etc` would change the URL's path
    goes_on(ctx, "the jobs go on")
    with _client(ctx) as client:
        if follow:
            _follow_user_log(client, user, as_json)
            return
        offset, lines = 0, []
        while True:
            text, next_offset = client.user_log(user, offset)
            if as_json:
                lines.extend(text.splitlines())
            else:
                click.echo(terminal_safe(text), nl=False)
            if next_offset == offset:
                break
            offset = next_offset
        if as_json:
            print_json({"user": user, "lines": lines})


def _options_worth_showing(options: dict[str, Any]) -> dict[str, Any]:
    """The limits that apply, and other options only where set (no back-off without retries)."""
    shown = {k: v for k, v in options.items() if k in ("timeout", "kill_grace") or v not in (None, False, 0)}
    if not options.get("retries"):
        shown.pop("retry_backoff", None)
    return shown


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def jobs(ctx, as_json) -> None:
    """List job types and their params.

    Also shows their options and any job module that failed to load."""
    with _client(ctx) as client:
        data = client.job_types()
    if as_json:
        print_json(data)
        return
    for jt in data["items"]:
        schema = jt["params_schema"]
        required = set(schema.get("required", []))
        fields = ", ".join(_param_text(n, f, n in required, schema) for n, f in schema.get("properties", {}).items())
        click.echo(f"{jt['name']}({fields})")
        if jt["description"]:
            click.echo(f"    {jt['description'].splitlines()[0]}")
        shown = _options_worth_showing(jt["options"])
        if shown:
            click.echo("    " + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in shown.items()))
    for broken in data.get("broken", []):
        click.echo(f"BROKEN {broken['module']}: {broken['error']}", err=True)


def _param_text(name: str, field: dict, required: bool, schema: dict) -> str:
    """`n: integer`, `mode: fast|slow = 'fast'`, `note?: string|null = None`: type, choices, default."""
    text = f"{name}{'' if required else '?'}: {_schema_type(field, schema)}"
    if "default" in field:
        default = field["default"]
        text += f" = {default!r}" if default is not None else " = None"
    return text


def _schema_type(field: dict, schema: dict) -> str:
    if "$ref" in field:  # an Enum or nested model: its definition
        field = schema.get("$defs", {}).get(field["$ref"].rsplit("/", 1)[-1], {})
    if "enum" in field:
        return "|".join(str(choice) for choice in field["enum"])
    if "const" in field:
        return str(field["const"])
    if "anyOf" in field:
        return "|".join(_schema_type(option, schema) for option in field["anyOf"])
    kind = field.get("type", "any")
    return f"list[{_schema_type(field['items'], schema)}]" if kind == "array" and "items" in field else kind


@main.command()
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: any free one).")
@click.option("--no-browser", is_flag=True, help="Only print the URL; do not open a browser.")
@click.pass_context
def ui(ctx, port, no_browser) -> None:
    """Serve the web dashboard on 127.0.0.1 until Ctrl-C.

    Prints its URL, with a token, as the first line. The dashboard shows what you may see."""
    from supervisor.ui.server import serve

    serve(_socket(ctx), port, open_browser=not no_browser)


@main.command()
@click.argument("job")
@click.argument("pairs", nargs=-1)
@click.option("--params", "params_file", metavar="FILE|-", help="JSON object of params.")
@click.option("--debug", is_flag=True, help="Stop in the debugger (pdb) when the job raises; no timeout.")
@click.option("--json", "as_json", is_flag=True)
def run(job, pairs, params_file, debug, as_json) -> None:
    """Run JOB inline, without a daemon.

    Same validation, context and timeout as under the daemon, in this terminal, so
    `breakpoint()` works. Exit code 0 ok, 1 failed, 124 timed out."""
    from supervisor.names import user_name
    from supervisor.inline import run_inline

    if debug:
        os.environ.setdefault("PYTHONBREAKPOINT", "pdb.set_trace")
    code, result = run_inline(_settings(), job, lambda schema: parse_pairs(pairs, params_file, lambda: schema),
                              user_name(os.getuid()), debug)
    click.echo(json.dumps(result, indent=None if not as_json else 2))
    sys.exit(code)
