"""Every error leaves the API as application/problem+json (RFC 9457), mapped here in one place."""

from __future__ import annotations

import re
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from loguru import logger
from starlette.exceptions import HTTPException

from supervisor.errors import FieldError, RunspaceError, describe_fields, message_with_input
from supervisor.store.faults import classify

PROBLEM_TYPE = "https://runspace.dev/problems/"


def problem(status: int, title: str, detail: str, slug: str, errors: list[FieldError] | None = None,
            headers: Mapping[str, str] | None = None) -> JSONResponse:
    body: dict[str, object] = {"type": PROBLEM_TYPE + slug, "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = [e.to_dict() for e in errors]
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


def _validation_errors(exc: RequestValidationError) -> tuple[str, list[FieldError]]:
    errors = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return f"the body is not valid JSON: {err.get('ctx', {}).get('error', err['msg'])}", []
        loc = [part for part in err["loc"] if part != "body"]
        errors.append(FieldError(loc=loc, msg=message_with_input(err)))
    return f"invalid request: {describe_fields(errors)}", errors


def install(app: FastAPI) -> None:
    @app.exception_handler(RunspaceError)
    async def _runspace(_: Request, exc: RunspaceError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        return problem(exc.status, exc.title, exc.detail, exc.slug, exc.errors, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = _validation_errors(exc)
        return problem(400, "Invalid request", detail, "invalid-params", errors)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # routes outside the schema (/openapi.json) keep Starlette's own
            headers["Allow"] = _allowed_methods(app, request.url.path) or headers.get("Allow", "")
        return problem(exc.status_code, str(exc.detail), str(exc.detail), f"http-{exc.status_code}", headers=headers)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        fault = classify(exc)
        if fault is not None:  # a store call that bypassed the guard: still no driver text for callers
            logger.error("store error on {} {}: {}: {}", request.method, request.url.path, type(exc).__name__, exc)
            return await _runspace(request, fault)
        logger.opt(exception=exc).error("unhandled error on {} {}", request.method, request.url.path)
        return problem(500, "Internal error", f"{type(exc).__name__}: {exc}", "internal")


def _allowed_methods(app: FastAPI, path: str) -> str:
    # Starlette names only the first route that matched the path; GET and POST /v1/jobs are two.
    methods = {
        method.upper()
        for template, operations in app.openapi()["paths"].items()
        if re.fullmatch(re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)), path)
        for method in operations
    }
    return ", ".join(sorted(methods))
