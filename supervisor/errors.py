"""The one error hierarchy. The API maps it to problem+json, the CLI to a message and exit code."""

from __future__ import annotations

import json

# typing.TYPE_CHECKING without importing typing (2 ms of `runspace status`; supervisor/cli_main.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

# Plain classes, not dataclasses: `runspace status` imports this module, and dataclasses
# (with inspect) would cost it 7 ms of its ~30 ms start (supervisor/cli_main.py).


class FieldError:
    """One bad field: where (`loc`, a path as in pydantic) and what is wrong with it."""

    __slots__ = ("loc", "msg")

    def __init__(self, loc: list[str | int], msg: str) -> None:
        self.loc, self.msg = loc, msg

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldError) and (self.loc, self.msg) == (other.loc, other.msg)

    def __repr__(self) -> str:
        return f"FieldError({self.loc!r}, {self.msg!r})"

    def to_dict(self) -> dict[str, object]:
        return {"loc": self.loc, "msg": self.msg}


class RunspaceError(Exception):
    status = 500
    title = "Internal error"
    slug = "internal"
    retry_after: int | None = None  # seconds, sent as Retry-After

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []

    def __str__(self) -> str:
        return self.detail


class InvalidParams(RunspaceError):
    status, title, slug = 400, "Invalid request", "invalid-params"


class NotAuthenticated(RunspaceError):
    status, title, slug = 401, "Not authenticated", "not-authenticated"


class NotAllowed(RunspaceError):
    status, title, slug = 403, "Not allowed", "not-allowed"


class NotFound(RunspaceError):
    status, title, slug = 404, "Not found", "not-found"


class UnknownJob(NotFound):
    title, slug = "Unknown job type", "unknown-job"


class Conflict(RunspaceError):
    status, title, slug = 409, "Conflict", "conflict"


class BodyTooLarge(RunspaceError):
    status, title, slug = 413, "Request body too large", "body-too-large"


class QueueFull(RunspaceError):
    status, title, slug = 429, "Queue full", "queue-full"
    retry_after = 1


class TooManyConnections(RunspaceError):
    status, title, slug = 429, "Too many connections", "too-many-connections"
    retry_after = 1


class Draining(RunspaceError):
    status, title, slug = 503, "Daemon is draining", "draining"
    retry_after = 5  # a restart under systemd takes a few seconds


class StoreUnavailable(RunspaceError):
    """The job store refuses reads or writes (database down, file replaced, I/O error): the
    daemon keeps supervising and retries; callers are told to come back (supervisor/store/guard.py)."""

    status, title, slug = 503, "Job store unavailable", "store-unavailable"
    retry_after = 5


class NoSpace(StoreUnavailable):
    """The store's disk (or database) is full: 507 Insufficient Storage, as WebDAV defines it."""

    status, title, slug = 507, "No space for the job store", "no-space"
    retry_after = 30


class DaemonUnreachable(RunspaceError):
    """The client could not talk to the daemon at all (exit code 3 in the CLI)."""

    title, slug = "Daemon unreachable", "unreachable"

    @classmethod
    def at(cls, socket_path: object, exc: BaseException) -> DaemonUnreachable:
        return cls(f"cannot reach the runspace daemon at {socket_path} ({exc}); "
                   f"start it with `runspace daemon` (or `systemctl start runspace`)")


_BY_STATUS: dict[int, type[RunspaceError]] = {
    400: InvalidParams, 401: NotAuthenticated, 403: NotAllowed, 404: NotFound,
    409: Conflict, 429: QueueFull, 503: Draining, 507: NoSpace,
}
_BY_SLUG: dict[str, type[RunspaceError]] = {StoreUnavailable.slug: StoreUnavailable}


def raise_for_problem(status: int, body: bytes, reason: str = "") -> None:
    """Clients: turn a problem+json answer back into the error the daemon raised."""
    if status < 400:
        return
    try:
        problem = json.loads(body)
    except ValueError:
        problem = {"detail": body.decode(errors="replace") or reason}
    errors = [FieldError(e.get("loc", []), e.get("msg", "")) for e in problem.get("errors", [])]
    slug = str(problem.get("type", "")).rpartition("/")[2]
    raise _BY_SLUG.get(slug, _BY_STATUS.get(status, RunspaceError))(problem.get("detail", ""), errors)


def errors_from_pydantic(exc: Exception, prefix: tuple[str | int, ...] = ()) -> list[FieldError]:
    """Turn a pydantic ValidationError into field errors, keeping the path to each bad field."""
    return [
        FieldError(loc=[*prefix, *err["loc"]], msg=message_with_input(err))
        for err in exc.errors()  # type: ignore[attr-defined]
    ]


def message_with_input(err: Mapping[str, Any]) -> str:
    """pydantic's message plus the value it refused (shortened), so the caller sees what was wrong."""
    if err.get("type") == "missing" or "input" not in err:
        return err["msg"]  # the input of a missing field is its whole parent object
    shown = repr(err["input"])
    return f"{err['msg']} (got {shown if len(shown) <= 60 else shown[:57] + '...'})"


def describe_fields(errors: list[FieldError]) -> str:
    return "; ".join(f"{'.'.join(map(str, e.loc)) or 'body'}: {e.msg}" for e in errors)
