"""The `runspace` command's entry point (CLI process): `runspace status ID` skips click.

Scripts poll `runspace status` in loops, so its start-up is its speed, and importing click
alone takes longer than Python's own start. A command line that is exactly a status read,
with RUNSPACE_SOCKET naming the socket, is answered here. Anything else (other commands or
options, --help, a socket found through the settings file) and any error the daemon answers
go to the click CLI, which prints the same answer and every message, so the two paths cannot
drift apart (tests/test_cli.py compares them). Only an unreachable daemon is reported here, in
the click CLI's words: asking again would wait twice for a daemon that does not answer.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    code = _quick_status(sys.argv[1:], os.environ.get("RUNSPACE_SOCKET"))
    if code is None:
        from supervisor.cli import main as click_main

        click_main()
    sys.exit(code)


def _quick_status(args: list[str], socket_path: str | None) -> int | None:
    """The exit code of a status read done here, or None when the click CLI should run."""
    options = [arg for arg in args[1:] if arg.startswith("-")]
    operands = [arg for arg in args[1:] if not arg.startswith("-")]
    if not socket_path or args[:1] != ["status"] or options not in ([], ["--json"]) or len(operands) != 1:
        return None
    from supervisor.ids import is_job_id

    if not is_job_id(operands[0]):
        return None
    from pathlib import Path

    from supervisor.errors import DaemonUnreachable, RunspaceError
    from supervisor.client import Client
    from supervisor.output import EXIT_UNREACHABLE, print_json, print_status, state_exit_code

    try:
        status = Client(Path(socket_path)).status(operands[0])
    except DaemonUnreachable as exc:
        print(f"runspace: error: {exc.detail}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except RunspaceError:
        return None  # the click CLI asks again and reports it in its words
    except KeyboardInterrupt:  # Ctrl-C in a polling loop: as click ends
        print("Aborted!", file=sys.stderr)
        return 1
    try:
        print_json(status) if options else print_status(status)
    except BrokenPipeError:  # `runspace status ID | head -1`: end quietly, as click does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return state_exit_code(status)
