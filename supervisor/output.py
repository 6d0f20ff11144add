"""What the CLI prints for a job, and the exit code a job's state gives (CONTRACT §6).

Free of click, so the fast path (supervisor.cli_main) prints exactly what the click CLI prints.
"""

from __future__ import annotations

import json
import re

# typing.TYPE_CHECKING without importing typing (2 ms of `runspace status`; supervisor/cli_main.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_TIMED_OUT = 0, 1, 2, 3, 124
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command Ctrl-C ended
_STATE_EXIT = {"succeeded": EXIT_OK, "timed_out": EXIT_TIMED_OUT, "hung": EXIT_TIMED_OUT}


_TERMINAL_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # json imports re anyway


def terminal_safe(text: str) -> str:
    """Log text for a terminal: ESC and the other control characters but tab and newline
    shown as \\xNN, so a job's output cannot move the cursor or forge lines."""
    return _TERMINAL_UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def state_exit_code(status: dict[str, Any]) -> int:
    if not status.get("done"):
        return EXIT_OK
    return _STATE_EXIT.get(status["state"], EXIT_FAILED)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2), flush=True)


def print_status(status: dict[str, Any]) -> None:
    line = f"{status['id']}  {status['job']}  {status['state']}"
    if status.get("percent_complete") is not None and not status["done"]:
        line += f"  {status['percent_complete']:g}%"
    lines = [line]
    for label in ("waiting_for", "queue_position", "message", "requested_at", "started_at", "finished_at", "pid",
                  "exit_code", "reason", "restarted_from"):
        if status.get(label) is not None:
            lines.append(f"  {label}: {status[label]}")
    if status.get("error"):
        lines.append(f"  error: {status['error']['type']}: {status['error']['message']}")
    if status.get("result") is not None:
        lines.append(f"  result: {json.dumps(status['result'])}")
    print(terminal_safe("\n".join(lines)), flush=True)  # a message or an error is the job's text
