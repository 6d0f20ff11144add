"""The per-job run directory shared by the daemon and the job process."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_MARKER = "RUNSPACE_JOB_ID"


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@dataclass(frozen=True)
class RunFiles:
    """`<state>/run/<id>/`: spec.json (in), started (run-once guard), progress.json, result.json (out), tmp/."""

    dir: Path

    @classmethod
    def of(cls, state_dir: Path, job_id: str) -> RunFiles:
        return cls(state_dir / "run" / job_id)

    @property
    def spec(self) -> Path:
        return self.dir / "spec.json"

    @property
    def started(self) -> Path:
        return self.dir / "started"

    @property
    def progress(self) -> Path:
        return self.dir / "progress.json"

    @property
    def result(self) -> Path:
        return self.dir / "result.json"

    @property
    def tmp(self) -> Path:
        return self.dir / "tmp"

    def prepare(self, spec: dict[str, Any]) -> None:
        self.tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_json_atomic(self.spec, spec)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
