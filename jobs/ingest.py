"""A long data job: "ingest" N documents, reporting progress as it goes."""

from __future__ import annotations

import hashlib
import time

from pydantic import BaseModel, Field

from supervisor import JobContext, job


class Ingest(BaseModel):
    source: str = Field("inbox", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Name of the source.")
    files: int = Field(20, ge=1, le=100_000, description="How many documents to process.")
    seconds_per_file: float = Field(0.1, ge=0, le=60)


@job(timeout=3600, idle_timeout=60, concurrency=2)
def ingest(params: Ingest, ctx: JobContext) -> dict:
    """OCR-and-index style ingestion with progress and a checksum of what was processed."""
    digest = hashlib.sha256()
    for n in range(1, params.files + 1):
        document = f"{params.source}/doc-{n:05d}.pdf"
        digest.update(document.encode())
        time.sleep(params.seconds_per_file)
        ctx.progress(n, params.files, f"indexed {document}")
    print(f"ingested {params.files} documents from {params.source}")
    return {"documents": params.files, "sha256": digest.hexdigest()[:16]}
