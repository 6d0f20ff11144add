"""scripts/setup: says so before the slow first install, and does nothing when nothing changed."""

from __future__ import annotations

import subprocess

from tests.conftest import ROOT


def _setup() -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "scripts/setup", "test"], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_setup_skips_pip_when_nothing_changed() -> None:
    stamp = ROOT / ".venv" / ".runspace-installed"
    first = _setup()  # installs only if pyproject.toml, setup.py or shim.c changed since the last run
    assert first.returncode == 0, first.stderr
    assert first.stderr in ("", "scripts/setup: installing runspace into .venv (about a minute the first time)\n")
    written = stamp.read_text()
    again = _setup()
    assert again.returncode == 0 and again.stdout == again.stderr == "", again.stderr  # pip did not run
    assert stamp.read_text() == written
