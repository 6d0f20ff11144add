"""The @job and @command_job decorators, and discovery of job modules in directories."""

from __future__ import annotations

import importlib.util
import inspect
import sys
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

    def applied(self, settings: Settings) -> JobOptions:
        """The options that apply: a timeout or kill grace the type leaves unset comes from the settings."""
        return replace(
            self,
            timeout=self.timeout or settings.default_timeout,
            kill_grace=settings.kill_grace if self.kill_grace is None else self.kill_grace,
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

    def validate(self, params: Any, loc: tuple[str | int, ...] = ("params",)) -> BaseModel:
        params = params if params is not None else {}
        unknown = self._unknown_fields(params, loc)
        try:
            model = self.params_model.model_validate(params)
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
    options["max_memory"] = parse_size(options.get("max_memory"))
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


def import_module_file(path: Path, reuse: bool = False) -> ModuleType:
    """Import one job module by path under a name unique to that path.

    `reuse` returns the module already imported from that path (a job forked from the
    pre-warmed fork server); the daemon always re-imports, so SIGHUP sees new code.
    """
    mod_name = "runspace_jobs." + "_".join(path.with_suffix("").parts[1:]).replace("-", "_").replace(".", "_")
    loaded = sys.modules.get(mod_name)
    if reuse and loaded is not None and getattr(loaded, "__file__", None) == str(path):
        return loaded
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(mod_name, None)
        raise
    return module


def job_types_in(module: ModuleType, path: Path) -> list[JobType]:
    found = []
    for value in vars(module).values():
        jt = getattr(value, JOB_ATTR, None)
        if isinstance(jt, JobType) and value.__module__ == module.__name__:
            found.append(JobType(**{**jt.__dict__, "module_path": path}))
    return found


def module_files(dirs: Iterable[Path]) -> list[Path]:
    files = []
    for d in dirs:
        if d.is_dir():
            files.extend(sorted(p for p in d.glob("*.py") if not p.name.startswith("_")))
    return files


def load_registry(dirs: Iterable[Path], check: Callable[[Path], None] | None = None) -> Registry:
    """Import every module; a module that fails is recorded as broken, the rest still load."""
    registry = Registry()
    for path in module_files(dirs):
        try:
            if check is not None:
                check(path)
        except (RunspaceError, OSError) as exc:  # refused or unreadable: nothing of it ran
            registry.broken.append(BrokenModule(path, f"{type(exc).__name__}: {exc}", None))
            continue
        try:
            types = job_types_in(import_module_file(path), path)
        except Exception as exc:
            registry.broken.append(BrokenModule(path, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
            continue
        for jt in types:
            if jt.name in registry.types:
                other = registry.types[jt.name].module_path
                registry.broken.append(BrokenModule(path, f"job {jt.name!r} already defined in {other}", None))
                continue
            registry.types[jt.name] = jt
    return registry


# Filled by the fork server before it forks (preload_job_types): a forked job then finds its
# type with one lookup, instead of walking the module (which writes to the reference count
# of every object in it, and so copies all their pages into the job process).
_preloaded: dict[tuple[Path, str], JobType] = {}


def preload_job_types(path: Path) -> None:
    for jt in job_types_in(import_module_file(path), path):
        _preloaded[(path, jt.name)] = jt


def load_job_type(path: Path, name: str) -> JobType:
    """Used inside a job process: import only the module that defines `name`."""
    preloaded = _preloaded.get((path, name))
    if preloaded is not None:
        return preloaded
    for jt in job_types_in(import_module_file(path, reuse=True), path):
        if jt.name == name:
            return jt
    raise UnknownJob(f"job {name!r} is no longer defined in {path}")
