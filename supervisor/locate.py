"""Where the daemon's socket and config file are, for the CLI without the settings model.

`runspace submit` needs one path; building the daemon's typed settings imports pydantic-settings,
which costs more than the rest of the command. The lookup follows the settings' order (an
environment variable, in any case, then the config file, then the default), and anything it
cannot read plainly goes to the settings model, which explains the problem in one line.
"""

from __future__ import annotations

import os
from pathlib import Path


def is_root() -> bool:
    return os.geteuid() == 0


def default_socket() -> Path:
    if is_root():
        return Path("/run/runspace/runspace.sock")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime else Path(f"/tmp/runspace-{os.getuid()}")
    return base / "runspace.sock"


def default_config_file() -> Path | None:
    explicit = os.environ.get("RUNSPACE_CONFIG")
    if explicit:
        return Path(explicit)
    return Path("/etc/runspace/config.toml") if is_root() else None


def daemon_socket() -> Path | None:
    """The socket the daemon listens on, as the settings would say (supervisor/settings.py);
    None when the config file cannot be read plainly: the settings model then explains why."""
    # pydantic-settings reads RUNSPACE_* names in any case; click's --socket envvar only the upper.
    for key, value in os.environ.items():
        if key.upper() == "RUNSPACE_SOCKET":
            return Path(value)
    config_file = default_config_file()
    if config_file is None or (not config_file.exists() and not os.environ.get("RUNSPACE_CONFIG")):
        return default_socket()
    try:
        import tomllib

        value = tomllib.loads(config_file.read_text()).get("socket", str(default_socket()))
        if isinstance(value, str) and value:
            return Path(value)
    except (OSError, UnicodeDecodeError, ValueError):  # tomllib's TOMLDecodeError is a ValueError
        pass
    return None
