"""The dashboard's state-changing forms (POST): submit, cancel, restart. Each checks the CSRF token."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from supervisor.errors import InvalidParams, NotAllowed
from supervisor.ui import pages
from supervisor.ui.forms import errors_by_field, form_fields, params_from_form
from supervisor.ui.guard import same
from supervisor.ui.state import ui_state


async def checked_form(request: Request) -> dict[str, str]:
    """The form, once it carries this run's CSRF token and comes from this origin (when the browser says).

    Forms here are urlencoded and small (no files): parsed here, without python-multipart."""
    ui = ui_state(request)
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
    origin = request.headers.get("origin")
    if (origin is not None and origin not in ui.origins) or not same(form.get("csrf"), ui.keys.csrf):
        raise NotAllowed("this form did not come from this dashboard (missing or wrong CSRF token); reload the page")
    return form


def _to_job(request: Request, job_id: str) -> Response:
    return RedirectResponse(request.url_for("job", job_id=job_id), status_code=303)


async def cancel(request: Request) -> Response:
    await checked_form(request)
    job_id = request.path_params["job_id"]
    await ui_state(request).api.act(job_id, "cancel")
    return _to_job(request, job_id)


async def restart(request: Request) -> Response:
    await checked_form(request)
    status = await ui_state(request).api.act(request.path_params["job_id"], "restart")
    return _to_job(request, status["id"])


async def submit(request: Request) -> Response:
    """Submit the type's form; a refused one comes back with each message at its field."""
    form = await checked_form(request)
    ui = ui_state(request)
    name = request.path_params["name"]
    types = await ui.api.json("GET", "/v1/jobtypes")
    jt = next((t for t in types["items"] if t["name"] == name), None)
    fields = form_fields(jt["params_schema"]) if jt else []
    params, errors = params_from_form(fields, form)
    if not errors:
        try:
            status = await ui.api.json("POST", "/v1/jobs", json={"job": name, "params": params})
            return _to_job(request, status["id"])
        except InvalidParams as exc:
            errors = exc.errors or []
            detail = exc.detail
    else:
        detail = "some fields could not be read"
    by_field, general = errors_by_field(errors)
    values = {f.name: form.get(f.name, "") for f in fields}
    refused = {"type": name, "values": values, "errors": by_field, "general": general or [detail]}
    return await pages.job_types(request, submitted=refused, status_code=400)
