"""What every workload gets: a private temp dir and the sizes for this mode (quick or full)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Sizes:
    command_jobs: int
    serial_jobs: int
    python_jobs: int
    latency_samples: int
    wait_samples: int
    running_jobs: int
    store_jobs: int
    store_samples: int
    batch_items: int
    cli_runs: int


QUICK = Sizes(command_jobs=64, serial_jobs=16, python_jobs=40, latency_samples=8, wait_samples=10,
              running_jobs=24, store_jobs=20_000, store_samples=200, batch_items=1_000, cli_runs=3)
FULL = Sizes(command_jobs=2_000, serial_jobs=300, python_jobs=1_000, latency_samples=100, wait_samples=200,
             running_jobs=1_000, store_jobs=100_000, store_samples=1_000, batch_items=10_000, cli_runs=20)


@dataclass
class Context:
    base: Path
    quick: bool
    sizes: Sizes
    _n: itertools.count = field(default_factory=itertools.count)

    def dir(self, name: str) -> Path:
        path = self.base / f"{next(self._n):02d}-{name}"
        path.mkdir(parents=True)
        return path
