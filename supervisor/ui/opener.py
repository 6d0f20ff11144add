"""Opening the dashboard in the user's browser (the `runspace ui` process) without putting its
token on a command line: every local user can read /proc/PID/cmdline of the browser that
`webbrowser.open(url)` starts, and the token is good once, so another user who read it first
would get this user's dashboard (and `exec` as this user).

The browser is given a file instead, private to this user, that sends it on to the URL (as
Jupyter does). That hop is a cross-site navigation, which supervisor/ui/guard.py answers so
the SameSite=Strict cookie still works.
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
import threading
import webbrowser
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_DELAY = 0.3  # seconds: the server is listening by then


@contextmanager
def browser_opened(url: str) -> Iterator[Path]:
    """Open `url` through a private redirect file, removed when the block ends (the server stops)."""
    folder = Path(tempfile.mkdtemp(prefix="runspace-ui-", dir=os.environ.get("XDG_RUNTIME_DIR")))  # mode 0700
    page = folder / "open.html"
    target = html.escape(url, quote=True)
    fd = os.open(page, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f'<!DOCTYPE html>\n<meta charset="utf-8">\n<meta http-equiv="refresh" content="0;url={target}">\n'
                f'<title>runspace</title>\n<p><a href="{target}">Open the runspace dashboard</a></p>\n')
    timer = threading.Timer(_DELAY, webbrowser.open, (page.as_uri(),))
    timer.start()
    try:
        yield page
    finally:
        timer.cancel()
        shutil.rmtree(folder, ignore_errors=True)
