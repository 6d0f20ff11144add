"""The store as the daemon uses it: driver errors stop here (daemon process, event loop).

Every call to the store (SQLite or PostgreSQL) and to the shared queue goes through
`StoreGuard`. A driver error that means the store cannot be used (database down, disk
full, I/O error; supervisor/store/faults.py), or a store file deleted, replaced or frozen
by chattr, becomes `StoreUnavailable` or `NoSpace`, is logged once, and puts the daemon
in degraded mode until a probe with backoff succeeds:

- reads and writes are refused at once (`NoSpace` still lets reads through), so the API
  answers 503/507 with Retry-After instead of a driver's text or a 500;
- job updates (`update`) never fail: they are kept in memory, one entry per job with the
  union of its changed fields, and written in order when the store accepts writes again;
  `get` answers from that entry meanwhile, so a job seen to end is never shown running;
- the scheduler starts nothing new (`accepts_writes`), running jobs stay supervised.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from loguru import logger

from supervisor.errors import NoSpace, StoreUnavailable
from supervisor.models import JobRecord
from supervisor.store.faults import classify, file_identity, frozen_files

_CHECK_INTERVAL = 1.0  # seconds between looks at the store file while all is well
_MIN_BACKOFF, _MAX_BACKOFF = 0.5, 8.0  # probe delays while degraded, doubling
# Calls that write: refused outright while degraded (update() is kept instead).
_WRITES = frozenset({"insert", "insert_batch", "delete_batch", "delete_empty_batches", "bump_counter",
                     "delete_jobs", "compact", "change_queue_control", "remove", "forward_cancel", "pick"})
# Calls that never reach the store (the shared queue's push: the row is the queue): never refused.
_LOCAL = frozenset({"push"})
_PROBE_COUNTER = "store_probes"  # a counter row a probe bumps: the smallest real write


class StoreGuard:
    """Wraps the daemon's store (and the shared queue, `wrap`): see the module docstring."""

    def __init__(self, store: Any, file: Path | None = None) -> None:
        self._store = store
        self._file = file  # the SQLite file, watched for deletion or replacement
        self._identity = file_identity(file)
        self.fault: StoreUnavailable | None = None
        self._since = 0.0
        self._backoff = _MIN_BACKOFF
        self._kept: dict[str, tuple[JobRecord, set[str]]] = {}  # job id -> (record, fields to write)
        self.on_recovered: list[Callable[[], None]] = []

    # -- state ------------------------------------------------------------------------

    @property
    def accepts_writes(self) -> bool:
        return self.fault is None

    def problem(self) -> str | None:
        """What is wrong, for /healthz (the store file is looked at first)."""
        self._check_file()
        return self.fault.detail if self.fault else None

    def kept_updates(self) -> int:
        return len(self._kept)

    def is_kept(self, job_id: str) -> bool:
        """An update of this job waits in memory for the store."""
        return job_id in self._kept

    def _fail(self, fault: StoreUnavailable, cause: BaseException | None) -> None:
        if self.fault is None or type(self.fault) is not type(fault) or self.fault.detail != fault.detail:
            logger.error("job store degraded: {}{}; running jobs stay supervised and their ends are kept until "
                         "it recovers; new jobs are refused ({})", fault.detail,
                         f" [{type(cause).__name__}: {str(cause).strip()}]" if cause else "", fault.status)
            if self.fault is None:
                self._since, self._backoff = time.monotonic(), _MIN_BACKOFF
        self.fault = fault

    # -- calls ------------------------------------------------------------------------

    def call(self, fn: Callable[..., Any], name: str, *args: Any, **kwargs: Any) -> Any:
        """Run one store call; a store fault is recorded and raised as StoreUnavailable/NoSpace."""
        if self.fault is not None and name not in _LOCAL and (name in _WRITES or not isinstance(self.fault, NoSpace)):
            raise self.fault
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            fault = classify(exc, self._file)
            if fault is None:
                raise
            self._fail(fault, exc)
            raise fault from None

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr
        return functools.partial(self.call, attr, name)

    def wrap(self, target: Any) -> Any:
        """The shared queue through this guard (its claims and counts are store calls too)."""
        return _Guarded(target, self)

    def update(self, rec: JobRecord, *fields: str) -> None:
        """Write now if the store takes it; else keep it for later. Never raises a store fault."""
        if self.fault is None and not self._kept:
            try:
                self._store.update(rec, *fields)
                return
            except Exception as exc:
                fault = classify(exc, self._file)
                if fault is None:
                    raise
                self._fail(fault, exc)
        kept = self._kept.get(rec.id)
        if kept is not None and kept[0] is rec:
            kept[1].update(fields)
        else:
            self._kept[rec.id] = (rec, {*fields, *(kept[1] if kept else ())})

    def close(self) -> None:
        """A last try at what is kept; what still cannot be written is read again at the next
        start from the jobs' run dirs (the scheduler keeps those until the store has their end)."""
        if self._kept:
            self._try_recover()
        if self._kept:
            logger.error("job store still unavailable at exit: {} job update(s) not written; the next start "
                         "records those jobs from their run dirs", len(self._kept))
        self._store.close()

    def get(self, job_id: str) -> JobRecord | None:
        kept = self._kept.get(job_id)
        if kept is not None:  # newer than the row: the store has not taken it yet
            return dataclasses.replace(kept[0])
        return self.call(self._store.get, "get", job_id)

    # -- recovery ---------------------------------------------------------------------

    async def watch(self) -> None:
        """Owned by the daemon's task group: look at the file, and probe with backoff while degraded."""
        while True:
            await anyio.sleep(self._backoff if self.fault else _CHECK_INTERVAL)
            self._check_file()
            if self.fault is not None:
                self._try_recover()

    def _check_file(self) -> None:
        fault = self._file_problem()
        if fault is not None:
            self._fail(fault, None)

    def _file_problem(self) -> StoreUnavailable | None:
        if self._file is None:
            return None
        now = file_identity(self._file)
        if now != self._identity:
            what = "deleted" if now is None else "replaced by another file"
            return StoreUnavailable(f"the job store file {self._file} was {what} while the daemon ran; it refuses "
                                    "to write elsewhere: put the file back or restart the daemon")
        frozen = frozen_files(self._file)
        if frozen:  # a write through SQLite's mapping of an immutable -shm is a SIGBUS, not an error
            return StoreUnavailable(f"{frozen[0]} is immutable or append-only (chattr); the job store cannot be "
                                    f"written until `chattr -i -a {frozen[0]}`")
        return None

    def _try_recover(self) -> None:
        if self._file_problem() is not None:
            return  # only the file put back (or made writable again), or a restart, clears this
        kept = len(self._kept)
        try:
            self._store.bump_counter(_PROBE_COUNTER)
            self._write_kept()
        except Exception as exc:
            fault = classify(exc, self._file)
            if fault is None:
                raise
            self._fail(fault, exc)
            self._backoff = min(self._backoff * 2, _MAX_BACKOFF)
            return
        logger.info("job store recovered after {:.1f} s ({}); {} kept job update(s) written; accepting jobs again",
                    time.monotonic() - self._since, self.fault.detail if self.fault else "", kept)
        self.fault = None
        self._backoff = _MIN_BACKOFF
        for hook in self.on_recovered:
            try:
                hook()
            except Exception:  # a hook must never end the watch (nor the daemon)
                logger.exception("store recovery hook {} failed", hook)

    def _write_kept(self) -> None:
        """In the order they were kept; each entry leaves only once written."""
        while self._kept:
            job_id, (rec, fields) = next(iter(self._kept.items()))
            self._store.update(rec, *fields)
            del self._kept[job_id]


class _Guarded:
    """Another store-backed object (the shared queue) whose calls go through a StoreGuard."""

    def __init__(self, target: Any, guard: StoreGuard) -> None:
        self._target = target
        self._guard = guard

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        return functools.partial(self._guard.call, attr, name) if callable(attr) else attr

    def __len__(self) -> int:
        return self._guard.call(self._target.__len__, "__len__")

    def __contains__(self, job_id: str) -> bool:
        return self._guard.call(self._target.__contains__, "__contains__", job_id)
