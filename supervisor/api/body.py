"""JSON request bodies parsed whatever the Content-Type, so `curl -d '{…}'` just works."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from supervisor.errors import InvalidParams, describe_fields, errors_from_pydantic

M = TypeVar("M", bound=BaseModel)
REF_TEMPLATE = "#/components/schemas/{model}"


def json_body(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    async def parse(request: Request) -> M:
        raw = await request.body()
        try:
            return model.model_validate_json(raw or b"{}", strict=True)  # "5" is no int: 400 at the field
        except ValidationError as exc:
            errors = errors_from_pydantic(exc)
            if any(err["type"] == "json_invalid" for err in exc.errors()):
                raise InvalidParams(f"the body is not valid JSON: {exc.errors()[0]['msg']}") from None
            raise InvalidParams(f"invalid request: {describe_fields(errors)}", errors) from None

    return parse


def json_body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The request body for OpenAPI, since the route reads it itself (api.openapi moves its `$defs`)."""
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
