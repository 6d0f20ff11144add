"""A command job: runs jobs/disk_report.sh with argv built from validated params (no shell string)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from supervisor import JobContext, command_job

SCRIPT = Path(__file__).with_name("disk_report.sh")


class DiskReport(BaseModel):
    path: str = Field("/tmp", pattern=r"^/[A-Za-z0-9_./-]*$", description="Directory to report on.")
    top: int = Field(5, ge=1, le=100)


@command_job(timeout=120, idle_timeout=60)
def disk_report(params: DiskReport, ctx: JobContext) -> list[str]:
    """Report the largest entries of a directory (shell script; progress via `::progress`)."""
    return ["/bin/sh", str(SCRIPT), params.path, str(params.top)]
