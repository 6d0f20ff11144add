"""The dashboard's pages (GET): each asks the daemon, as the dashboard's user, and renders a template."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from supervisor.errors import NotFound
from supervisor.models import JobState, rfc3339
from supervisor.ui import chart
from supervisor.ui.daemon_api import read_tail, segment
from supervisor.ui.forms import form_fields
from supervisor.ui.state import UiState, render, ui_state
from supervisor.ui.view import epoch

STATES = [str(s) for s in JobState]
PAGE_SIZES = (50, 200, 1000)
_LOG_TAIL = 256 * 1024  # characters of a log a page starts with: its end (the CLI prints it all)
_CHART_PAGES = 5  # pages of 1,000 jobs read for the chart: the last hour of a busy host, bounded


def page_size(request: Request) -> int:
    raw = request.query_params.get("limit", "")
    return int(raw) if raw.isdigit() and int(raw) in PAGE_SIZES else PAGE_SIZES[0]


def job_filters(request: Request) -> dict[str, str]:
    q = request.query_params
    return {k: q[k] for k in ("state", "job", "batch_id") if q.get(k)}


def shows_requestor(ui: UiState, jobs: list[dict[str, Any]]) -> bool:
    """Only an admin's listing holds other users' jobs: the column appears for them."""
    return any(j["requestor"] != ui.user for j in jobs)


async def jobs(request: Request) -> Response:
    ui = ui_state(request)
    filters = job_filters(request)
    cursor = request.query_params.get("cursor")
    page = await ui.api.list_jobs(**filters, limit=page_size(request), cursor=cursor)
    types = await ui.api.json("GET", "/v1/jobtypes")
    return render(request, "jobs.html", {
        "jobs": page["items"], "next_cursor": page["next_cursor"], "first_page": cursor is None,
        "filters": filters, "states": STATES, "types": [t["name"] for t in types["items"]],
        "limit": page_size(request), "page_sizes": PAGE_SIZES,
        "show_requestor": shows_requestor(ui, page["items"]), "rendered_at": rfc3339(time.time()),
    })


async def job(request: Request) -> Response:
    ui = ui_state(request)
    job_id = request.path_params["job_id"]
    status = await ui.api.job(job_id)
    try:
        text, offset, cut = await read_tail(partial(ui.api.job_log, job_id), _LOG_TAIL)
        log_note = f"the end of it; `runspace logs {job_id}` prints it all" if cut else ""
    except NotFound as exc:  # a shared store's job that ran on another host keeps its log there
        text, offset, log_note = "", 0, exc.detail
    return render(request, "job.html", {
        "job": status, "log": text, "log_offset": offset, "log_note": log_note,
        "can_restart": await ui.api.has("/v1/jobs/{job_id}/restart"),
        "show_requestor": status["requestor"] != ui.user,
    })


async def batches(request: Request) -> Response:
    """Batches have no listing of their own in the API: the ones among the user's recent jobs."""
    ui = ui_state(request)
    wanted = request.query_params.get("id", "").strip()
    if wanted:
        return RedirectResponse(request.url_for("batch", batch_id=wanted), status_code=303)
    recent = await ui.api.list_jobs(limit=1000)
    seen: dict[tuple[str, str], int] = {}  # (batch id, requestor): batch ids are per requestor
    for item in recent["items"]:
        if item["batch_id"]:
            key = (item["batch_id"], item["requestor"])
            seen[key] = seen.get(key, 0) + 1
    summaries = []
    for (batch_id, requestor), count in list(seen.items())[:20]:
        try:
            summaries.append(await _batch(ui, batch_id, requestor, limit=0))
        except NotFound:  # a batch_id tag given to single submissions: its jobs, not a batch record
            summaries.append({"batch_id": batch_id, "requestor": requestor, "tag_only": True, "size": count})
    return render(request, "batches.html", {"batches": summaries})


async def batch(request: Request) -> Response:
    ui = ui_state(request)
    q = request.query_params
    limit = page_size(request)
    data = await _batch(ui, request.path_params["batch_id"], q.get("requestor") or ui.user, limit, q.get("cursor"))
    return render(request, "batch.html", {"batch": data, "show_requestor": shows_requestor(ui, data["items"]),
                                          "limit": limit})


async def _batch(ui: UiState, batch_id: str, requestor: str, limit: int, cursor: str | None = None) -> dict[str, Any]:
    """A batch's summary and a page of its items; another user's (admins) named by `requestor`."""
    params: dict[str, Any] = {"limit": limit}
    if cursor:
        params["cursor"] = cursor
    if requestor != ui.user:
        params["requestor"] = requestor
    return await ui.api.json("GET", f"/v1/batches/{segment(batch_id)}", params=params)


async def user_log(request: Request) -> Response:
    ui = ui_state(request)
    user = request.query_params.get("user") or ui.user
    text, offset, cut = await read_tail(partial(ui.api.user_log, user), _LOG_TAIL)
    if cut:  # from the first whole line
        text = text[text.find("\n") + 1:]
    return render(request, "userlog.html", {"log_user": user, "log": text, "log_offset": offset})


async def job_types(request: Request, submitted: dict[str, Any] | None = None, status_code: int = 200) -> Response:
    """Each type with a form made from its params schema; `submitted` re-shows a refused form."""
    ui = ui_state(request)
    data = await ui.api.json("GET", "/v1/jobtypes")
    types = [{**t, "fields": form_fields(t["params_schema"])} for t in data["items"]]
    return render(request, "types.html", {"types": types, "broken": data.get("broken", []),
                                          "submitted": submitted or {}}, status_code=status_code)


async def queue(request: Request) -> Response:
    ui = ui_state(request)
    health = await ui.api.json("GET", "/healthz")
    control = await ui.api.json("GET", "/v1/queue") if await ui.api.has("/v1/queue") else None
    now = time.time()
    minutes = chart.finished_per_minute(await _ended_lately(ui, now - 3600), now)
    return render(request, "queue.html", {"health": health, "control": control, "chart": chart.draw(minutes)})


async def _ended_lately(ui: UiState, since: float) -> list[dict[str, Any]]:
    """Jobs, newest first, back to the first one requested an hour before `since` (a job that ran
    longer than that and ended in the last hour is left out: a bound on what a page load reads)."""
    found: list[dict[str, Any]] = []
    cursor = None
    for _ in range(_CHART_PAGES):
        page = await ui.api.list_jobs(limit=1000, cursor=cursor)
        found.extend(page["items"])
        cursor = page["next_cursor"]
        oldest = epoch(page["items"][-1]["requested_at"]) if page["items"] else None
        if cursor is None or oldest is None or oldest < since - 3600:
            break
    return found

