"""Turn a submission into a job record: validation happens here, before anything is stored."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from supervisor.errors import FieldError, InvalidParams
from supervisor.ids import new_job_id
from supervisor.logs import check_log_user
from supervisor.models import JobRecord
from supervisor.registry import Registry

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
# The store keeps a priority in a 64-bit integer.
Priority = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


JobId = Annotated[str, Field(pattern=r"^[0-9a-f]{20}$")]


class StartConditions(BaseModel):
    """When a submitted job (every item of a batch) may start, besides a free slot."""

    after: list[JobId] = Field(default_factory=list, max_length=100, description=(
        "Job ids: start once all of them succeeded; if one ends otherwise, this job ends cancelled "
        "with reason dependency_failed."))
    not_before: AwareDatetime | None = Field(None, description="RFC 3339 time before which the job does not start.")

    @field_validator("not_before")
    @classmethod
    def _a_time_in_utc(cls, value: datetime | None) -> datetime | None:
        """Every status shows it in UTC: 9999-12-31T23:59:59-14:00 is year 10000 there, which no
        status (nor any list showing the job, an admin's included) could be written with."""
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("out of range: in UTC it must fall between the years 1 and 9999") from None


class SubmitRequest(StartConditions):
    model_config = ConfigDict(extra="forbid")

    job: str = Field(description="Job type name, as listed by GET /v1/jobtypes.")
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters, validated by the type's model.")
    wait: float | None = Field(None, ge=0, description="Seconds to wait for the result (200) before answering 202.")
    priority: Priority | None = Field(None, description="Higher runs first; default from the job type.")
    idempotency_key: str | None = Field(None, pattern=NAME_PATTERN, description="Resubmits with this key return the original job.")
    batch_id: str | None = Field(None, pattern=NAME_PATTERN)


def request_hash(job: str, params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([job, params], sort_keys=True).encode()).hexdigest()


def build_record(
    registry: Registry,
    req: SubmitRequest,
    requestor: str,
    loc: tuple[str | int, ...] = (),
) -> JobRecord:
    jt = registry.get(req.job)
    model = jt.validate(req.params, loc=(*loc, "params"))
    _refuse_non_finite(model.model_dump(), (*loc, "params"))  # as validated: "inf" became a float too
    data = model.model_dump(mode="json")
    opts = jt.options
    log_user = requestor
    if opts.log_user:
        log_user = check_log_user(str(data[opts.log_user]), [*loc, "params", opts.log_user])
    return JobRecord(
        id=new_job_id(),
        job=jt.name,
        params=data,
        requestor=requestor,
        log_user=log_user,
        priority=opts.priority if req.priority is None else req.priority,
        concurrency_key=str(data[opts.concurrency_key]) if opts.concurrency_key else None,
        batch_id=req.batch_id,
        idempotency_key=req.idempotency_key,
        request_hash=request_hash(jt.name, req.params) if req.idempotency_key else None,
        max_attempts=1 + opts.retries,
        after_ids=list(dict.fromkeys(req.after)),
        not_before=req.not_before.timestamp() if req.not_before else 0.0,
    )


def _refuse_non_finite(value: Any, loc: tuple[str | int, ...]) -> None:
    """Infinity or NaN (from 1e400, "inf", "nan"), which JSON cannot carry: the job would get null."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidParams("params hold a number JSON cannot represent",
                            [FieldError(list(loc), f"{value} is not a finite number")])
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_non_finite(item, (*loc, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _refuse_non_finite(item, (*loc, index))
