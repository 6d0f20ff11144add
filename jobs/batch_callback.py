"""An example batch callback: runs once per ended batch item (see `runspace batch --callback`)."""

from __future__ import annotations

import json

from supervisor import CallbackPayload, JobContext, job


@job(timeout=60)
def report_item(params: CallbackPayload, ctx: JobContext) -> dict:
    """Logs how one batch item ended; a real callback would notify a caller or update a record."""
    if params.success:
        ctx.log(f"batch {params.batch_id}: item {params.job_id} succeeded: {json.dumps(params.output)}")
    else:
        reasons = "; ".join(f"{e.type}: {e.message}" for e in params.errors)
        ctx.log(f"batch {params.batch_id}: item {params.job_id} failed: {reasons}")
    return {"item": params.job_id, "success": params.success}
