"""The documents keep their promises: the README's settings table names every setting with its
default, its first-daemon steps work when pasted into a shell, and docs/architecture.md names
only files and functions that exist where it says."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from supervisor.durations import parse_duration
from supervisor.settings import Settings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()
_SIZES = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def _settings_rows() -> dict[str, tuple[str, str]]:
    """`RUNSPACE_X` → (default cell, meaning cell) from the README's settings table."""
    rows = re.findall(r"^\| `RUNSPACE_(\w+)` \| (.*?) \| (.*?) \|$", _section(README, "## Settings"), re.M)
    return {name.lower(): (default, meaning) for name, default, meaning in rows}


def _documented_default(cell: str, default: object) -> object:
    """The cell's value in the setting's own terms: `64 MiB` → 67108864, `10` s → 10.0, `true` → True."""
    text = cell.split(" (")[0].replace("`", "").strip()
    if isinstance(default, bool):
        return {"true": True, "false": False}.get(text)
    if isinstance(default, int | float):
        number, _, unit = text.partition(" ")
        return int(number) * _SIZES[unit] if unit in _SIZES else parse_duration(text.removesuffix(" s"))
    return text


def test_the_readme_settings_table_lists_every_setting_with_its_default() -> None:
    rows = _settings_rows()
    assert sorted(rows) == sorted(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        default_cell, meaning = rows[name]
        assert default_cell.strip() and meaning.strip(), name
        if field.default_factory is None and field.default is not None:
            assert _documented_default(default_cell, field.default) == \
                (str(field.default) if isinstance(field.default, Path) else field.default), name


def test_the_first_daemon_steps_work_as_written(tmp_path: Path) -> None:
    """Pasted into bash as they stand (with a private directory for /tmp/rs): the daemon starts,
    answers, is reloaded and stopped, and nothing is left running."""
    if not (ROOT / ".venv" / "bin" / "runspace").exists():
        pytest.skip("the steps put .venv/bin on PATH; run `bash scripts/setup` first")
    block = re.search(r"```sh\n(.*?)```", _section(README, "## Your first daemon by hand"), re.S)
    assert block is not None
    script = block.group(1).replace("/tmp/rs", str(tmp_path / "rs")) + "wait\n"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("RUNSPACE_")}
    proc = subprocess.Popen(["bash", "-c", script], cwd=ROOT, env=env, text=True, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the steps did not finish within 60 s")
    daemon_log = (tmp_path / "rs" / "daemon.log").read_text()
    assert proc.returncode == 0, out
    assert "create_home_dir(" in out, out  # `runspace jobs` answered with the job types
    assert "daemon stopped" in daemon_log, daemon_log  # SIGTERM stopped it, not SIGHUP


def _defined_in(path: Path, name: str) -> bool:
    """`name` (a function, a class, `Class.method` or a module constant) is defined in `path`."""
    *owner, last = name.split(".")
    text = path.read_text()
    if owner and not re.search(rf"^class {owner[-1]}\b", text, re.M):
        return False
    return re.search(rf"^\s*(async def|def|class) {last}\b|^{last}\b.*=", text, re.M) is not None


def test_architecture_names_files_that_exist() -> None:
    named = set(re.findall(r"`([\w/]+\.(?:py|c|sql|sh))`", ARCHITECTURE))
    missing = [p for p in named if not (ROOT / "supervisor" / p).exists() and not (ROOT / p).exists()]
    assert missing == []


def test_architecture_names_functions_where_they_are() -> None:
    """`file.py` `name`: the function or class is defined in that file."""
    pairs = re.findall(r"`([\w/]+\.py)` `([A-Za-z_][\w.]*)`", ARCHITECTURE)
    assert len(pairs) > 10
    wrong = [f"{path} {name}" for path, name in pairs if not _defined_in(ROOT / "supervisor" / path, name)]
    assert wrong == []
