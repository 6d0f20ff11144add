"""How the daemon loads job modules: the trust check, an import probe, then the import itself.

Runs in the daemon. A module is imported into the daemon only after a throwaway process
(supervisor/import_probe.py) imported the very same source within `RUNSPACE_IMPORT_TIMEOUT`
seconds: one that blocks, exits or crashes at import is reported broken, naming why, and
can neither hang nor end the daemon.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from supervisor.jobsource import ModuleSource
from supervisor.registry import BrokenModule, Registry, module_files, read_modules
from supervisor.trust import Trust

_PROBE_START = 30.0  # s for the probe's interpreter to start, on a busy host
_PER_MODULE_SLACK = 1.0  # s per module beyond the import timeout: the fork, the report
_REPORT_MAX = 1 << 24  # bytes of one module's report (its traceback)


def check_job_modules(dirs: Iterable[Path], trust: Trust) -> tuple[list[ModuleSource], list[BrokenModule]]:
    """The source of each module that passes the trust check (read once, by the check); the refused."""
    return read_modules(module_files(dirs), trust.check_module)


async def import_job_modules(sources: list[ModuleSource], refused: list[BrokenModule], timeout: float) -> Registry:
    """The registry of the modules that import in the probe, then here; the others as broken.
    Each module is imported here as soon as the probe vouched for it, while it tries the next."""
    registry = Registry(broken=list(refused))
    registry.broken.extend(await probe_imports(sources, timeout, registry.add))
    registry.broken.sort(key=lambda broken: str(broken.path))
    return registry


async def probe_imports(sources: list[ModuleSource], timeout: float,
                        passed: Callable[[ModuleSource], None]) -> list[BrokenModule]:
    """Try each import in the probe: `passed(source)` for each that imports, in order; the
    others are returned, each with why."""
    if not sources:
        return []
    request = {"timeout": timeout, "modules": [{"path": str(s.path), "sha256": s.sha256} for s in sources]}
    pending = list(sources)
    failed: list[BrokenModule] = []
    process = await anyio.open_process([sys.executable, "-m", "supervisor.import_probe"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdin is not None and process.stdout is not None
    try:
        with anyio.move_on_after(_PROBE_START + len(sources) * (timeout + _PER_MODULE_SLACK)):
            await process.stdin.send(json.dumps(request).encode())
            await process.stdin.aclose()
            reports = BufferedByteReceiveStream(process.stdout)
            while pending:
                report = json.loads(await reports.receive_until(b"\n", _REPORT_MAX))
                source = pending.pop(0)
                if report["error"] is None:
                    passed(source)
                else:
                    failed.append(BrokenModule(source.path, report["error"], report["traceback"]))
    except (anyio.EndOfStream, anyio.IncompleteRead, anyio.DelimiterNotFound, OSError, ValueError, KeyError):
        pass  # the probe failed itself: whatever it did not vouch for is not imported
    finally:
        with anyio.CancelScope(shield=True):
            await _end(process)
    failed.extend(BrokenModule(source.path, "ImportProbe: the import probe did not report on this module in "
                                            "time, so it was not imported", None) for source in pending)
    return failed


async def _end(process: Process) -> None:
    """Kill the probe if it still runs (it has done its part), reap it, close our pipe ends."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    with anyio.move_on_after(5):  # the daemon's reaper may reap it first: then this returns too
        await process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            await stream.aclose()
