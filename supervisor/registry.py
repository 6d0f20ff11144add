"""The @job and @command_job decorators, and discovery of job modules in directories."""

from __future__ import annotations

import inspect
import json
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, get_type_hints

# ValidationError resolved here, not at first use: pydantic imports its attributes lazily,
# and that first use would happen again in every job the fork server forks.
from pydantic import BaseModel, ValidationError

from supervisor.errors import FieldError, InvalidParams, RunspaceError, UnknownJob, errors_from_pydantic
from supervisor.jobsource import ModuleSource, import_source, read_source, read_verified

if TYPE_CHECKING:
    from supervisor.settings import Settings

JOB_ATTR = "__runspace_job__"
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def parse_size(value: int | str | None) -> int | None:
    """`512M`, `2G`, `1048576` → bytes."""
    if value is None or isinstance(value, int):
        return value
    text = value.strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1] if text and text[-1] in _SIZE_UNITS else ""
    return int(float(text[: len(text) - len(unit)]) * _SIZE_UNITS[unit])


@dataclass(frozen=True)
class JobOptions:
    timeout: float | None = None
    idle_timeout: float | None = None
    kill_grace: float | None = None
    max_memory: int | None = None
    concurrency: int | None = None
    concurrency_key: str | None = None
    retries: int = 0
    retry_backoff: float = 1.0
    log_user: str | None = None
    priority: int = 0
    run_as: str | None = None
    allow_root: bool = False
    max_log_bytes: int | None = None  # job log output beyond it is dropped (default: RUNSPACE_MAX_LOG_BYTES)

    def applied(self, settings: Settings) -> JobOptions:
        """The options that apply: a timeout or kill grace the type leaves unset comes from the settings."""
        return replace(
            self,
            timeout=self.timeout or settings.default_timeout,
            kill_grace=settings.kill_grace if self.kill_grace is None else self.kill_grace,
            max_log_bytes=settings.max_log_bytes if self.max_log_bytes is None else self.max_log_bytes,
        )


@dataclass(frozen=True)
class JobType:
    name: str
    func: Callable[..., Any]
    params_model: type[BaseModel]
    options: JobOptions
    description: str
    kind: Literal["python", "command"]
    module_path: Path | None = None
    module_sha256: str | None = None  # of the source that passed the trust check: what every importer runs

    def validate(self, params: Any, loc: tuple[str | int, ...] = ("params",)) -> BaseModel:
        params = params if params is not None else {}
        unknown = self._unknown_fields(params, loc)
        try:
            data = json.dumps(params)
        except (TypeError, ValueError) as exc:  # a Python caller's object that JSON cannot carry
            raise InvalidParams(f"params for job {self.name!r} are not JSON values: {exc}") from None
        try:
            # Strict, as JSON: a JSON value of the wrong type ("3" or true for an int) is refused,
            # not coerced; a string still makes a datetime, UUID, path or enum, as JSON has none.
            model = self.params_model.model_validate_json(data, strict=True)
        except ValidationError as exc:
            errors = errors_from_pydantic(exc, loc)
            raise InvalidParams(f"params are not valid for job {self.name!r}", unknown + errors) from None
        if unknown:
            raise InvalidParams(f"params are not valid for job {self.name!r}", unknown)
        return model

    def _unknown_fields(self, params: Any, loc: tuple[str | int, ...]) -> list[FieldError]:
        """A misspelt param must not silently run the job with a default instead."""
        if not isinstance(params, dict) or self.params_model.model_config.get("extra") == "allow":
            return []
        known = set(self.params_model.model_fields)
        known |= {f.alias for f in self.params_model.model_fields.values() if f.alias}
        hint = f"not a param of {self.name} (it takes: {', '.join(sorted(known)) or 'none'})"
        return [FieldError([*loc, key], hint) for key in params if key not in known]

    def describe(self, settings: Settings) -> dict[str, Any]:
        """The type as GET /v1/jobtypes shows it: every option with the value that applies."""
        opts = dict(self.options.applied(settings).__dict__)
        return {
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
            "options": opts,
            "params_schema": self.params_model.model_json_schema(),
            "module": str(self.module_path) if self.module_path else None,
        }


def _params_model_of(func: Callable[..., Any]) -> type[BaseModel]:
    hints = get_type_hints(func)
    first = next(iter(inspect.signature(func).parameters), None)
    model = hints.get(first) if first else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"job {func.__name__}: first parameter must be annotated with a pydantic model")
    return model


def _decorator(kind: Literal["python", "command"], name: str | None, options: dict[str, Any]):
    for size in ("max_memory", "max_log_bytes"):
        options[size] = parse_size(options.get(size))
    opts = JobOptions(**options)

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        model = _params_model_of(func)
        for opt in ("log_user", "concurrency_key"):
            param = getattr(opts, opt)
            if param is not None and param not in model.model_fields:
                raise TypeError(f"job {func.__name__}: {opt}={param!r} is not a field of {model.__name__}")
        doc = inspect.getdoc(func) or ""
        setattr(func, JOB_ATTR, JobType(name or func.__name__, func, model, opts, doc, kind))
        return func

    return register


def job(name: str | None = None, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a Python function as a job type. Options: see JobOptions (CONTRACT §3)."""
    return _decorator("python", name, options)


def command_job(name: str | None = None, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a function returning an argv list; the job runs that executable, never via a shell."""
    return _decorator("command", name, options)


@dataclass(frozen=True)
class BrokenModule:
    path: Path
    error: str
    traceback: str | None  # None: refused (not trusted, a name taken), not a crash


@dataclass
class Registry:
    types: dict[str, JobType] = field(default_factory=dict)
    broken: list[BrokenModule] = field(default_factory=list)

    def get(self, name: str) -> JobType:
        try:
            return self.types[name]
        except KeyError:
            raise UnknownJob(f"no job type named {name!r}; `runspace jobs` lists them") from None

    def add(self, source: ModuleSource) -> None:
        """Import the module here and take its types; a module that fails is recorded as broken."""
        try:
            types = job_types_in(import_source(source), source)
        except (Exception, SystemExit) as exc:  # sys.exit() at import must not end the importer
            self.broken.append(BrokenModule(source.path, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
            return
        for jt in types:
            if jt.name in self.types:
                other = self.types[jt.name].module_path
                self.broken.append(BrokenModule(source.path, f"job {jt.name!r} already defined in {other}", None))
                continue
            self.types[jt.name] = jt

    def keeping(self, sources: Iterable[ModuleSource]) -> Registry:
        """Only the types whose module still has one of these sources (same path, same hash)."""
        current = {(source.path, source.sha256) for source in sources}
        return Registry({name: jt for name, jt in self.types.items()
                         if jt.module_path is None or (jt.module_path, jt.module_sha256) in current}, self.broken)


def job_types_in(module: ModuleType, source: ModuleSource) -> list[JobType]:
    found = []
    for value in vars(module).values():
        jt = getattr(value, JOB_ATTR, None)
        if isinstance(jt, JobType) and value.__module__ == module.__name__:
            found.append(replace(jt, module_path=source.path, module_sha256=source.sha256))
    return found


def module_files(dirs: Iterable[Path]) -> list[Path]:
    files = []
    for d in dirs:
        if d.is_dir():
            files.extend(sorted(p for p in d.glob("*.py") if not p.name.startswith("_")))
    return files


def read_modules(paths: Iterable[Path], read: Callable[[Path], ModuleSource] = read_source,
                 ) -> tuple[list[ModuleSource], list[BrokenModule]]:
    """Each module's source (`read`: the trust check, which reads it); refused ones as broken."""
    sources, broken = [], []
    for path in paths:
        try:
            sources.append(read(path))
        except (RunspaceError, OSError) as exc:  # refused or unreadable: nothing of it ran
            broken.append(BrokenModule(path, f"{type(exc).__name__}: {exc}", None))
    return sources, broken


def build_registry(sources: Iterable[ModuleSource], broken: Iterable[BrokenModule] = ()) -> Registry:
    """Import each source here; a module that fails is recorded as broken, the rest still load."""
    registry = Registry(broken=list(broken))
    for source in sources:
        registry.add(source)
    return registry


def load_registry(dirs: Iterable[Path]) -> Registry:
    """Every module in `dirs`, imported here without a trust check (`runspace run`: the caller's own)."""
    return build_registry(*read_modules(module_files(dirs)))


# Filled by the fork server before it forks (preload_job_types): a forked job then finds its
# type with one lookup, instead of walking the module (which writes to the reference count
# of every object in it, and so copies all their pages into the job process).
_preloaded: dict[tuple[Path, str, str], JobType] = {}


def preload_job_types(path: Path, sha256: str) -> None:
    source = read_verified(path, sha256)
    for jt in job_types_in(import_source(source), source):
        _preloaded[(path, source.sha256, jt.name)] = jt


def load_job_type(path: Path, name: str, sha256: str) -> JobType:
    """Used inside a job process: import only the module that defines `name`, as checked."""
    preloaded = _preloaded.get((path, sha256, name))
    if preloaded is not None:
        return preloaded
    source = read_verified(path, sha256)
    for jt in job_types_in(import_source(source, reuse=True), source):
        if jt.name == name:
            return jt
    raise UnknownJob(f"job {name!r} is no longer defined in {path}")
