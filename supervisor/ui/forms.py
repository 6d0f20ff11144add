"""A job type's submit form, generated from its params JSON Schema, and the way back:
the submitted form's text fields to the JSON params the API validates.

The dashboard checks nothing itself: the API's validation is the one that counts, and its
`errors[].loc` (`["params", "files"]`) names the field the message is shown at.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from supervisor.errors import FieldError

Kind = str  # "text" | "integer" | "number" | "boolean" | "choice" | "json"


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: Kind
    required: bool
    description: str
    default: str  # as the input shows it
    choices: tuple[str, ...] = ()


def form_fields(schema: dict[str, Any]) -> list[Field]:
    required = set(schema.get("required", []))
    fields = []
    for name, prop in schema.get("properties", {}).items():
        prop = _resolve(schema, prop)
        kind, choices = _kind(schema, prop)
        fields.append(Field(
            name=name,
            label=prop.get("title") or name,
            kind=kind,
            required=name in required,
            description=prop.get("description", ""),
            default=_shown(prop.get("default"), kind),
            choices=choices,
        ))
    return fields


def _resolve(schema: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    """`{"$ref": "#/$defs/Color"}` (enums and nested models) to the definition it names."""
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return {**schema.get("$defs", {}).get(ref.split("/")[-1], {}), **{k: v for k, v in prop.items() if k != "$ref"}}
    return prop


def _kind(schema: dict[str, Any], prop: dict[str, Any]) -> tuple[Kind, tuple[str, ...]]:
    options = [_resolve(schema, p) for p in prop.get("anyOf", [])]
    not_null = [p for p in options if p.get("type") != "null"]
    if len(not_null) == 1:  # Optional[X]: the field for X, left empty for None
        prop = {**not_null[0], **{k: v for k, v in prop.items() if k != "anyOf"}}
    elif options:
        return "json", ()
    if "enum" in prop and all(isinstance(v, str) for v in prop["enum"]):
        return "choice", tuple(prop["enum"])
    kind = {"string": "text", "integer": "integer", "number": "number", "boolean": "boolean"}
    return kind.get(prop.get("type", ""), "json"), ()


def _shown(default: Any, kind: Kind) -> str:
    if default is None:
        return ""
    if kind == "json":
        return json.dumps(default)
    if kind == "boolean":
        return "true" if default else ""
    return str(default)


def params_from_form(fields: list[Field], form: Mapping[str, str]) -> tuple[dict[str, Any], list[FieldError]]:
    """The params to submit, and the fields whose text is not even JSON (shown like the API's errors)."""
    params: dict[str, Any] = {}
    errors: list[FieldError] = []
    for f in fields:
        if f.kind == "boolean":
            params[f.name] = form.get(f.name) == "true"
            continue
        raw = form.get(f.name, "")
        if raw == "":
            continue  # left empty: the type's default, or the API says the field is required
        try:
            params[f.name] = _value(f.kind, raw)
        except ValueError as exc:
            errors.append(FieldError(["params", f.name], str(exc)))
    return params, errors


def _value(kind: Kind, raw: str) -> Any:
    """Numbers that do not parse are sent as typed, so the API's message names the value."""
    if kind in ("integer", "number"):
        try:
            number = int(raw) if kind == "integer" else float(raw)
        except ValueError:
            return raw
        return number if isinstance(number, int) or math.isfinite(number) else raw
    if kind == "json":
        try:
            return json.loads(raw)
        except ValueError:
            if raw.lstrip()[:1] in ("{", "["):
                raise ValueError(f"not valid JSON: {raw[:60]!r}") from None
            return raw  # a bare word for a field that also takes strings
    return raw


def errors_by_field(errors: list[FieldError]) -> tuple[dict[str, list[str]], list[str]]:
    """Messages per form field (`loc` ["params", name, ...]), and the ones that name no field."""
    by_field: dict[str, list[str]] = {}
    general: list[str] = []
    for err in errors:
        loc = [str(part) for part in err.loc if part != "body"]
        if len(loc) >= 2 and loc[0] == "params":
            rest = ".".join(loc[2:])
            by_field.setdefault(loc[1], []).append(f"{rest}: {err.msg}" if rest else err.msg)
        else:
            general.append(f"{'.'.join(loc)}: {err.msg}" if loc else err.msg)
    return by_field, general
