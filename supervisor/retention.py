"""Removing ended jobs (daemon process): `runspace rm`, `runspace clean` and retention
(`RUNSPACE_KEEP_FINISHED`). A job's record goes first, then its log and run dir; batches
whose items are all gone go too."""

from __future__ import annotations

import time

import anyio
from loguru import logger

from supervisor.errors import Conflict, StoreUnavailable
from supervisor.logs import job_log_path
from supervisor.models import JobRecord, JobState
from supervisor.runner.files import RunFiles
from supervisor.settings import Settings
from supervisor.store import Store

DONE_STATES = [s for s in JobState if s.done]
_CHUNK = 500  # rows per delete: the event loop serves requests between chunks
_BATCH_GRACE = 10.0  # a batch row is written just before its items (on any host): spare young empty ones
_MAX_INTERVAL = 600.0
_COMPACT_AFTER = 1000  # removed jobs worth giving their disk space back


def _remove_files(settings: Settings, ids: list[str]) -> None:
    for job_id in ids:
        job_log_path(settings.logs, job_id).unlink(missing_ok=True)
        RunFiles.of(settings.state_dir, job_id).remove()


async def remove_job(store: Store, settings: Settings, rec: JobRecord) -> None:
    """`rm`: an ended job only, and a batch callback only after its item (else a restart would queue it again)."""
    if not rec.state.done:
        raise Conflict(f"job {rec.id} is {rec.state}; only ended jobs can be removed (cancel it first)")
    item = store.callback_item(rec)
    if item is not None:
        raise Conflict(f"job {rec.id} is the batch callback of job {item}, which is still stored; remove that first")
    store.delete_jobs([rec.id])
    await anyio.to_thread.run_sync(_remove_files, settings, [rec.id])
    store.delete_empty_batches(created_before=time.time() - _BATCH_GRACE)


async def purge(store: Store, settings: Settings, finished_before: float, states: list[JobState] | None = None,
                requestor: str | None = None) -> int:
    """Remove ended jobs (of `requestor`, in `states`) that ended before `finished_before`; how many."""
    removed = 0
    while ids := store.finished_ids(finished_before, states or DONE_STATES, requestor, _CHUNK):
        store.delete_jobs(ids)
        await anyio.to_thread.run_sync(_remove_files, settings, ids)
        removed += len(ids)
    store.delete_empty_batches(created_before=time.time() - _BATCH_GRACE)
    if removed >= _COMPACT_AFTER:
        store.compact()
    return removed


async def keep_finished(store: Store, settings: Settings) -> None:
    """At start and then periodically: ended jobs older than keep_finished go (0: kept forever)."""
    keep = settings.keep_finished
    if not keep:
        return
    interval = min(max(keep / 4, 1.0), _MAX_INTERVAL)
    while True:
        try:
            removed = await purge(store, settings, time.time() - keep)
        except StoreUnavailable as exc:  # the guard has said so in the log already: next round
            logger.warning("retention: skipped this round ({})", exc)
        except Exception:  # a store error (disk full, database gone) must not end the daemon: next round
            logger.exception("retention: could not remove ended jobs")
        else:
            if removed:
                logger.info("retention: removed {} jobs that ended more than {:g} s ago", removed, keep)
        await anyio.sleep(interval)
