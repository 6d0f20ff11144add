"""How the command line's words become the API's JSON (CLI process): seconds and durations,
`--in`/`--at` times, `key=value` params typed by the job type's schema, JSON files and lines,
`--env` pairs and job ids. Errors are InvalidParams or click's, so every one is a line and exit 2."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from supervisor.errors import InvalidParams


class _Seconds(click.ParamType):
    """A duration: finite and not negative (inf and nan would reach the daemon as invalid JSON)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            seconds = float(value)
        except ValueError:
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds) or seconds < 0:
            self.fail(f"{value!r} is not a finite number of seconds ≥ 0", param, ctx)
        return seconds


SECONDS = _Seconds()


class _Duration(click.ParamType):
    """A duration as people type it: 90, 10m, 1h30m, 2d, "30 days" (supervisor/durations.py)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        from supervisor.durations import parse_duration

        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = _Duration()


def not_before_of(delay: float | None, at: str | None) -> str | None:
    """`--in DURATION` or `--at TIME` as an RFC 3339 time (UTC), or None for neither."""
    from datetime import UTC, datetime, time, timedelta

    if delay is not None and at is not None:
        raise click.UsageError("give --in or --at, not both")
    if delay is not None:
        try:
            return (datetime.now(UTC) + timedelta(seconds=delay)).isoformat()
        except OverflowError:
            raise click.BadParameter(f"{delay:g} seconds from now is after the year 9999", param_hint="--in") from None
    if at is None:
        return None
    try:  # a time of day: its next occurrence, local time
        clock = time.fromisoformat(at)
    except ValueError:
        try:
            moment = datetime.fromisoformat(at)
        except ValueError:
            raise click.BadParameter(f"{at!r} is neither a time of day (14:30) nor a date and time "
                                     "(2026-12-24T18:00, optionally with +01:00)", param_hint="--at") from None
    else:
        now = datetime.now().astimezone()
        moment = datetime.combine(now.date(), clock, tzinfo=clock.tzinfo or now.tzinfo)
        if moment <= now:
            moment += timedelta(days=1)
    try:
        return (moment if moment.tzinfo else moment.astimezone()).astimezone(UTC).isoformat()
    except OverflowError:
        raise click.BadParameter(f"{at!r} is not between the years 1 and 9999 in UTC", param_hint="--at") from None


def start_fields(after: tuple[str, ...], delay: float | None, at: str | None) -> dict[str, Any]:
    """The submission's `after` and `not_before` from --after, --in and --at (None: not given)."""
    for job_id in after:
        check_job_id(job_id)
    return {"after": list(after) or None, "not_before": not_before_of(delay, at)}


def start_conditions(command: Any) -> Any:
    """--after ID…, --in DURATION, --at TIME: when a submitted job may start."""
    command = click.option("--at", "at", metavar="TIME", help="Start at TIME (14:30: its next occurrence, local "
                           "time; or a date and time, 2026-12-24T18:00).")(command)
    command = click.option("--in", "delay", type=DURATION, help="Start after this delay (10m, 2h, 90).")(command)
    return click.option("--after", "after", multiple=True, metavar="ID",
                        help="Start once job ID succeeded (repeatable); if it ends otherwise, "
                             "this job is cancelled (dependency_failed).")(command)
def read_input(path: str, option: str) -> str:
    """A file named on the command line, or stdin for `-`."""
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidParams(f"{option} {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None


def finite_json(text: str) -> Any:
    """json.loads, refusing NaN, Infinity and numbers like 1e400, which JSON cannot carry."""
    def refuse(word: str) -> Any:
        raise ValueError(f"{word} is not a finite number")

    def finite(word: str) -> float:
        number = float(word)
        return number if math.isfinite(number) else refuse(word)

    return json.loads(text, parse_constant=refuse, parse_float=finite)


def json_object(text: str, where: str) -> dict[str, Any]:
    """A JSON object of params; `where` names the option (and line) in the error."""
    try:
        value = finite_json(text)
    except ValueError as exc:  # JSONDecodeError too
        raise InvalidParams(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidParams(f"{where}: must hold a JSON object (a job's params)")
    return value


def parse_pairs(pairs: tuple[str, ...], params_file: str | None,
                schema_of: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
    """`key=value` pairs as the JSON the API takes, which is strict about types: a value becomes
    what the type's params schema (from `schema_of`, asked only if needed) says the field is —
    `count=3` an integer, `dry_run=true` a boolean; JSON for [..] and {..}; else a string."""
    params: dict[str, Any] = {}
    if params_file:
        params = json_object(read_input(params_file, "--params"), f"--params {params_file}")
    plain: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidParams(f"expected key=value, got {pair!r}")
        if value[:1] in "[{":
            try:
                params[key] = finite_json(value)
                continue
            except json.JSONDecodeError:
                pass
            except ValueError as exc:
                raise InvalidParams(f"{pair}: {exc}") from None
        params[key] = plain[key] = value
    if plain and schema_of is not None:
        params.update(typed_values(plain, schema_of()))
    return params


def typed_values(plain: dict[str, str], schema: dict[str, Any]) -> dict[str, Any]:
    """Each text value as a JSON type its field takes; text where the field takes text (or
    anything), or where the value does not parse, so the daemon's answer names field and value."""
    props = schema.get("properties", {})
    return {key: _typed(_json_types(schema, props.get(key, {})), value) for key, value in plain.items()}


def _json_types(schema: dict[str, Any], prop: dict[str, Any]) -> set[str]:
    """The JSON types a property's schema allows (empty: any)."""
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        prop = schema.get("$defs", {}).get(ref.split("/")[-1], {})
    if "anyOf" in prop:
        options = [_json_types(schema, option) for option in prop["anyOf"]]
        return set() if any(not t for t in options) else set().union(*options)
    kind = prop.get("type")
    if kind is None and "enum" in prop:
        return {"string" if isinstance(v, str) else "number" for v in prop["enum"]}
    return set(kind) if isinstance(kind, list) else {kind} if kind else set()


def _typed(types: set[str], value: str) -> Any:
    if not types or "string" in types:
        return value
    text = value.strip()
    if "integer" in types and re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if "boolean" in types and text.lower() in _BOOLEANS:
        return _BOOLEANS[text.lower()]
    if "null" in types and text.lower() in ("null", "none", ""):
        return None
    if "number" in types:
        try:
            number = float(text)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    return value


_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def params_schema(client: Any, job: str) -> dict[str, Any]:
    """The type's params JSON Schema as the daemon lists it; none for a type it does not know
    (the submission then gets its 404)."""
    page: dict[str, Any] = {"next_cursor": None}
    cursor = None
    while True:
        page = client.request("GET", "/v1/jobtypes", params={"cursor": cursor} if cursor else None).json()
        for item in page["items"]:
            if item["name"] == job:
                return item["params_schema"]
        cursor = page.get("next_cursor")
        if not cursor:
            return {}


def check_job_id(job_id: str) -> None:
    from supervisor.ids import is_job_id

    if not is_job_id(job_id):
        raise InvalidParams(f"{job_id!r} is not a job id (20 hex digits); `runspace list` shows your jobs")


def exec_env(pairs: tuple[str, ...]) -> dict[str, str]:
    """--env NAME=VALUE, or --env NAME for the value NAME has here."""
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            if name not in os.environ:
                raise click.BadParameter(f"{name} is not set here; give --env {name}=VALUE", param_hint="--env")
            value = os.environ[name]
        env[name] = value
    return env


def read_items(path: str) -> list[dict[str, Any]]:
    """JSON Lines: one params object per line; blank lines are skipped."""
    text = read_input(path, "--items")
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        items.append(json_object(line, f"--items {path} line {number}"))
    if not items:
        raise InvalidParams(f"--items {path} holds no items")
    return items
