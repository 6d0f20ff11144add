"""Jobs that wait for others (`after: [ids]`), in the daemon process: a job starts once every job
it names has succeeded; when one ends any other way (or is removed), it ends `cancelled` with
reason `dependency_failed`. The store is the truth, so this holds across restarts and hosts."""

from __future__ import annotations

from collections.abc import Iterable

from supervisor.auth import Caller
from supervisor.errors import FieldError, InvalidParams
from supervisor.models import JobRecord, JobState
from supervisor.store import Store

DEPENDENCY_FAILED = "dependency_failed"
MAX_AFTER = 100


def check_after(store: Store, caller: Caller, ids: list[str], loc: list[str | int]) -> None:
    """Every job named exists and is the caller's to see (another user's reads as missing)."""
    states = store.states_of(ids)
    errors = []
    for index, job_id in enumerate(ids):
        owner = states.get(job_id, (None, None))[1]
        if owner is None or not (caller.admin or owner == caller.name):
            errors.append(FieldError([*loc, index], f"no job {job_id}"))
    if errors:
        raise InvalidParams("a job named in `after` does not exist (`runspace list` shows your jobs)", errors)


class DependencyView:
    """For one dispatch pass: each dependency's state read once, however many jobs wait for it."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._states: dict[str, str | None] = {}

    def read(self, records: Iterable[JobRecord]) -> None:
        """Read the dependencies of all `records` not read yet in one query, before asking about each."""
        self._load({job_id for rec in records for job_id in rec.after_ids})

    def waiting_for(self, rec: JobRecord) -> str | None:
        """The first job `rec` still waits for, or None when all have succeeded."""
        self._load(rec.after_ids)
        return next((job_id for job_id in rec.after_ids if self._states[job_id] != JobState.SUCCEEDED), None)

    def unfinished(self, rec: JobRecord) -> list[str]:
        """The jobs `rec` waits for that have not ended yet (queued or running)."""
        self._load(rec.after_ids)
        return [job_id for job_id in rec.after_ids
                if (state := self._states[job_id]) is not None and not JobState(state).done]

    def failed(self, rec: JobRecord) -> str | None:
        """Why `rec` can never start: a dependency that ended other than succeeded, or was removed."""
        self._load(rec.after_ids)
        for job_id in rec.after_ids:
            state = self._states[job_id]
            if state is None:
                return f"job {job_id} it was to run after was removed"
            if JobState(state).done and state != JobState.SUCCEEDED:
                return f"job {job_id} it was to run after ended {state}"
        return None

    def _load(self, ids: Iterable[str]) -> None:
        missing = [job_id for job_id in ids if job_id not in self._states]
        if missing:
            found = self._store.states_of(missing)
            self._states.update({job_id: found.get(job_id, (None, None))[0] for job_id in missing})
