"""The `runspace` entry point: `runspace status ID [--json]` is answered without importing click.

Scripts poll `runspace status` in loops, so its start-up is its speed, and importing click
alone takes longer than Python's own start. A command line that is exactly a status read,
with RUNSPACE_SOCKET naming the socket, is answered here. Anything else (other commands or
options, --help, a socket found through the settings file) and any error go to the click CLI,
which prints the same answer and every message, so the two paths cannot drift apart.
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
    as_json = "--json" in args
    rest = [arg for arg in args if arg != "--json"]
    if not socket_path or len(rest) != 2 or rest[0] != "status" or len(args) - len(rest) > 1:
        return None
    from supervisor.ids import is_job_id

    if not is_job_id(rest[1]):
        return None
    from pathlib import Path

    from supervisor.errors import RunspaceError
    from supervisor.fastclient import FastClient
    from supervisor.output import print_json, print_status, state_exit_code

    try:
        status = FastClient(Path(socket_path)).status(rest[1])
    except RunspaceError:
        return None  # the click CLI asks again and reports it in its words
    try:
        print_json(status) if as_json else print_status(status)
    except BrokenPipeError:  # `runspace status ID | head -1`: end quietly, as click does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return state_exit_code(status)
