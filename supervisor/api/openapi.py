"""The OpenAPI document as the API really answers: problem+json errors (not FastAPI's 422),
the Location header, typed collections, and request bodies whose references resolve."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict

from supervisor.api.body import REF_TEMPLATE
from supervisor.models import JobStatus

PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details; `errors` names each bad field.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["loc", "msg"],
            "properties": {"loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                           "msg": {"type": "string"}},
        }},
    },
}

ERROR_DESCRIPTIONS = {
    400: "Invalid request: a field, parameter or header, named in `errors`",
    401: "TCP listener only: no bearer token, or one that is not in tokens_file",
    403: "The caller is not among the allowed users or groups, or may not see this",
    404: "No such job, job type or batch",
    409: "Conflict: an idempotency key or batch id already used for another request, or the job has ended",
    413: "The body is larger than max_request_bytes",
    429: "The queue is full (max_queue); retry after Retry-After seconds",
    503: "The daemon is shutting down; retry after Retry-After seconds",
}
_SUBMITS = (400, 403, 404, 409, 413, 429, 503)
# What an operation answers beyond those every one may (401, 403; 400 with parameters; 404 with an id).
_ERRORS = {
    ("post", "/v1/jobs"): _SUBMITS,
    ("post", "/v1/batches"): _SUBMITS,
    ("post", "/v1/jobs/{job_id}/cancel"): (404, 409),
}
# Second success answers: a batch resubmitted as it was, a job still ending when cancel answers.
# (status, documented like, description)
_ALSO_SUCCEEDS = {
    ("post", "/v1/batches"): ("200", "202", "Submitted before with the same batch_id and body: the original"),
    ("post", "/v1/jobs/{job_id}/cancel"): ("202", "200", "Cancelled; the job's tree is still being ended"),
}
_WITH_LOCATION = {
    ("post", "/v1/jobs"), ("get", "/v1/jobs/{job_id}"), ("get", "/v1/jobs/{job_id}/wait"),
    ("post", "/v1/jobs/{job_id}/cancel"), ("post", "/v1/batches"),
}
_LOCATION = {"Location": {"description": "The job's or batch's own URL.", "schema": {"type": "string"}}}


class JobPage(BaseModel):
    model_config = ConfigDict(extra="forbid")  # tests check real answers against it

    items: list[JobStatus]
    next_cursor: str | None


class BatchCreated(BaseModel):
    model_config = ConfigDict(extra="forbid")  # tests check real answers against it

    batch_id: str
    job: str
    size: int
    callback: dict[str, str] | None
    job_ids: list[str]
    location: str


class BatchStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")  # tests check real answers against it

    batch_id: str
    job: str
    requestor: str
    size: int
    callback: dict[str, str] | None
    counts: dict[str, int]
    ended: int
    done: bool
    callbacks: dict[str, int] | None
    created_at: str | None
    location: str
    items: list[JobStatus]
    next_cursor: str | None


# Documented only: the routes build these bodies themselves (validating 1,000 statuses again
# on every list page would cost more than reading them).
DOC_MODELS: dict[tuple[str, str], type[BaseModel]] = {
    ("get", "/v1/jobs"): JobPage,
    ("post", "/v1/batches"): BatchCreated,
    ("get", "/v1/batches/{batch_id}"): BatchStatus,
}


def install(app: FastAPI, routers: list[APIRouter]) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app, routers)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def build(app: FastAPI, routers: list[APIRouter]) -> dict[str, Any]:
    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    _exact_request_bodies(routers, spec)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["Problem"] = PROBLEM
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            _document_operation(method, path, op, schemas)
    return spec


def _exact_request_bodies(routers: list[APIRouter], spec: dict[str, Any]) -> None:
    """The bodies the routes read themselves (api/body.py), as their models describe them:
    FastAPI's pass over openapi_extra may make bounds floats (2^63-1 would read 2^63)."""
    for route in (route for router in routers for route in router.routes):
        body = (getattr(route, "openapi_extra", None) or {}).get("requestBody")
        if isinstance(route, APIRoute) and body is not None:
            for method in route.methods:
                spec["paths"][route.path_format][method.lower()]["requestBody"] = copy.deepcopy(body)


def _document_operation(method: str, path: str, op: dict[str, Any], schemas: dict[str, Any]) -> None:
    responses = op.setdefault("responses", {})
    responses.pop("422", None)
    model = DOC_MODELS.get((method, path))
    if model is not None:
        status = "202" if method == "post" else "200"
        responses[status] = {"description": responses.get(status, {}).get("description", "OK"),
                             "content": {"application/json": {"schema": _hoisted(model, schemas)}}}
    if (method, path) in _ALSO_SUCCEEDS:
        status, like, description = _ALSO_SUCCEEDS[(method, path)]
        responses[status] = {**responses[like], "description": description}
    if (method, path) in _WITH_LOCATION:
        for status in ("200", "202"):
            if status in responses:
                responses[status]["headers"] = _LOCATION
    statuses = {401, 403, *_ERRORS.get((method, path), ())}
    if op.get("requestBody") or any(param["in"] != "path" for param in op.get("parameters", [])):
        statuses.add(400)  # (a malformed id in the path is a 404: no such job)
    if "{" in path:
        statuses.add(404)
    for status in sorted(statuses):
        responses[str(status)] = {
            "description": ERROR_DESCRIPTIONS[status],
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None and "$defs" in body["schema"]:
        body["schema"] = _hoist_defs(body["schema"], schemas)


def _hoisted(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    return _hoist_defs(model.model_json_schema(ref_template=REF_TEMPLATE), schemas)


def _hoist_defs(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """Move a model schema's `$defs` into components, where its `#/components/schemas/…` refs point."""
    schema = dict(schema)
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    return schema
