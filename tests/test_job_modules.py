"""Job module discovery: a broken module is reported and does not take the daemon down."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.conftest import TEST_JOBS, DaemonProcess


def test_broken_module_is_reported_and_others_still_serve(tmp_path: Path,
                                                          make_daemon: Callable[..., DaemonProcess]) -> None:
    extra = tmp_path / "more_jobs"
    extra.mkdir()
    (extra / "broken.py").write_text("import no_such_module_anywhere\n")
    (extra / "good.py").write_text(
        "from pydantic import BaseModel\nfrom supervisor import job\n"
        "class P(BaseModel):\n    n: int\n"
        "@job()\ndef double(params: P, ctx) -> int:\n    return params.n * 2\n"
    )
    daemon = make_daemon(RUNSPACE_JOBS_PATH=f"{TEST_JOBS}:{extra}")
    types = daemon.client.job_types()
    assert "double" in {t["name"] for t in types["items"]}
    broken = {Path(b["module"]).name: b for b in types["broken"]}
    assert "ModuleNotFoundError" in broken["broken.py"]["error"]
    assert "Traceback" in broken["broken.py"]["traceback"]
    assert "no_such_module_anywhere" in daemon.log()
    assert daemon.submit("double", {"n": 21}, wait=20)["result"] == 42
    listed = daemon.cli("jobs")
    assert "BROKEN" in listed.stderr and "broken.py" in listed.stderr


def test_restarted_daemon_still_shows_finished_jobs(tmp_path: Path,
                                                    make_daemon: Callable[..., DaemonProcess]) -> None:
    first = make_daemon(base=tmp_path / "same")
    done = first.submit("echo", {"value": "kept"}, wait=20)
    failed = first.submit("fail", wait=20)
    assert first.stop() == 0
    second = make_daemon(base=tmp_path / "same")
    assert second.client.status(done["id"])["result"]["value"] == "kept"
    assert second.client.status(failed["id"])["error"]["type"] == "ValueError"
    assert json.loads(second.cli("list", "--json").stdout)["items"][0]["id"] == failed["id"]
