"""Every error leaves the API as application/problem+json (RFC 9457), mapped here in one place."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from loguru import logger
from starlette.exceptions import HTTPException

from supervisor.errors import FieldError, RunspaceError

PROBLEM_TYPE = "https://runspace.dev/problems/"


def problem(status: int, title: str, detail: str, slug: str, errors: list[FieldError] | None = None) -> JSONResponse:
    body: dict[str, object] = {"type": PROBLEM_TYPE + slug, "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = [asdict(e) for e in errors]
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def _validation_errors(exc: RequestValidationError) -> tuple[str, list[FieldError]]:
    errors = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return f"the body is not valid JSON: {err.get('ctx', {}).get('error', err['msg'])}", []
        loc = [part for part in err["loc"] if part != "body"]
        errors.append(FieldError(loc=loc, msg=err["msg"]))
    fields = ", ".join(".".join(map(str, e.loc)) or "body" for e in errors)
    return f"invalid request: {fields}", errors


def install(app: FastAPI) -> None:
    @app.exception_handler(RunspaceError)
    async def _runspace(_: Request, exc: RunspaceError) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, exc.slug, exc.errors)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = _validation_errors(exc)
        return problem(400, "Invalid request", detail, "invalid-params", errors)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail), f"http-{exc.status_code}")

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        logger.opt(exception=exc).error("unhandled error on {} {}", request.method, request.url.path)
        return problem(500, "Internal error", f"{type(exc).__name__}: {exc}", "internal")
