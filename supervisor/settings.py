"""Typed settings: env `RUNSPACE_*`, then a TOML file, then defaults.

The daemon's settings are read here and nowhere else. The CLI finds the socket without this
model (locate.py, and cli_main.py's status fast path: RUNSPACE_SOCKET, RUNSPACE_CONFIG's
`socket`, the same defaults); the environment is also read for what other programs set
(systemd's NOTIFY_SOCKET/LISTEN_FDS in systemd.py) and passed on to jobs.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from socket import gethostname
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from supervisor.errors import InvalidParams
from supervisor.locate import default_config_file, default_socket, is_root

REPO_JOBS_DIR = Path(__file__).resolve().parent.parent / "jobs"
BUILTIN_JOBS_DIR = Path(__file__).resolve().parent / "builtin_jobs"
CommaList = Annotated[list[str], NoDecode]


def _default_state_dir() -> Path:
    if is_root():
        return Path("/var/lib/runspace")
    return Path.home() / ".local/state/runspace"


def default_jobs_dir() -> Path:
    """Where an install keeps its job modules (`pip install .` does not install jobs/)."""
    if is_root():
        return Path("/etc/runspace/jobs")
    config = os.environ.get("XDG_CONFIG_HOME")
    return (Path(config) if config else Path.home() / ".config") / "runspace" / "jobs"


class Settings(BaseSettings):
    """Every knob of a deployment. Env names are `RUNSPACE_<FIELD>` (e.g. RUNSPACE_SOCKET)."""

    # allow_inf_nan: a kill grace or timeout of `inf` seconds would make "then SIGKILL" never come.
    model_config = SettingsConfigDict(env_prefix="RUNSPACE_", extra="ignore", allow_inf_nan=False)

    socket: Path = Field(default_factory=default_socket, description="Unix socket path the daemon listens on.")
    state_dir: Path = Field(default_factory=_default_state_dir, description="Database and per-job run files.")
    log_dir: Path | None = Field(None, description="Job and user logs (default: <state_dir>/logs, /var/log/runspace as root).")
    jobs_dir: Path = Field(default_factory=default_jobs_dir, description=(
        "The installed job module directory, always loaded (/etc/runspace/jobs as root, "
        "~/.config/runspace/jobs as a user)."))
    jobs_path: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Extra job module directories, ':'-separated; jobs/ is always loaded."
    )
    import_timeout: float = Field(
        10.0, gt=0,
        description="Seconds a job module may take to import (tried in a throwaway process first); slower: broken.",
    )
    max_concurrency: int = Field(8, ge=1, description="Jobs running at once on this host.")
    max_queue: int = Field(100_000, ge=1, description="Queued jobs accepted before 429.")
    default_timeout: float = Field(3600.0, gt=0, description="Hard timeout (s) for types that declare none.")
    kill_grace: float = Field(5.0, ge=0, description="Seconds between SIGTERM and SIGKILL.")
    max_wait: float = Field(300.0, ge=0, description="Cap (s) on how long a request may wait for a result.")
    max_request_bytes: int = Field(64 * 2**20, ge=1024, description="Largest request body accepted (413 above).")
    max_connections_per_user: int = Field(
        64, ge=1, description="Open connections (log follows included) per caller uid; root is not capped."
    )
    idle_timeout: float = Field(5.0, gt=0, description=(
        "Seconds an idle client connection (HTTP keep-alive) stays open; a job's hung detection is its "
        "type's idle_timeout option, not this."))
    max_log_bytes: int = Field(
        2**30, ge=4096, description="Output a job may write to its log (type option max_log_bytes); the rest is dropped."
    )
    max_result_bytes: int = Field(
        16 * 2**20, ge=1024, le=64 * 2**20, description="Largest job result stored; a bigger one fails the job."
    )
    max_queued_per_user: int = Field(10_000, ge=1, description="Queued jobs per requestor before 429 (admins exempt).")
    allowed_users: CommaList = Field(default_factory=list, description="User names allowed to submit (comma-separated).")
    allowed_groups: CommaList = Field(default_factory=list, description="Groups whose members may submit.")
    admins: CommaList = Field(default_factory=list, description="User names that see and cancel every job.")
    socket_group: str | None = Field(None, description="Group owning the socket (mode 0660).")
    store: str | None = Field(
        None, description="Store URL: a SQLite path (default <state_dir>/runspace.db) or postgresql://… shared by hosts."
    )
    host_id: str = Field(default_factory=gethostname, description="Name recorded in processed_by; unique per host.")
    lease_ttl: float = Field(
        30.0, gt=0, description="Shared store: a host silent this long (s) is dead; its running jobs become lost."
    )
    exec: Literal["users", "admins", "off"] = Field(
        "users", description="Who may use `runspace exec` (always as themselves): users, admins or off."
    )
    keep_finished: float = Field(
        30 * 86400.0, ge=0, description="Ended jobs, their logs and results are removed this long after they end "
                                        "(a duration: 30 days, 12h, 3600; 0 keeps them forever)."
    )
    log_rotation: str = Field("50 MB", description="When a user log rotates (loguru rotation).")
    log_retention: str = Field("30 days", description="How long rotated user logs are kept (loguru retention).")
    fork_server: bool = Field(
        True, description="Start jobs from a pre-imported fork server: millisecond starts, shared memory."
    )
    native_shim: bool = Field(
        True, description="Supervise command jobs with the native runspace-shim where it is built (~0.1 MB a job, "
                          "not ~3 MB); false: the Python relay."
    )
    cgroup_root: Path | None = Field(
        None, description="A delegated cgroup v2 directory for per-job cgroups (auto-detected when unset)."
    )
    cgroups: bool = Field(
        True, description="Track job trees with per-job cgroups where cgroup v2 is writable (false: pgid/session + scan)."
    )

    run_as: str | None = Field(
        None, description="As root: user that root's own jobs run as, unless their type sets allow_root (unset: root)."
    )
    job_env_passthrough: CommaList = Field(
        default_factory=list, description="Daemon env variables kept in the clean env of jobs run as another user."
    )
    tcp_listen: str | None = Field(
        None, description="HOST:PORT for an extra HTTP listener with bearer tokens (off by default; use loopback)."
    )
    tokens_file: Path = Field(
        Path("/etc/runspace/tokens"), description="For tcp_listen: root-owned file of `USER TOKEN` lines, mode 0600."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = default_config_file()
        if config_file is not None and config_file.exists():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @field_validator("allowed_users", "allowed_groups", "admins", "job_env_passthrough", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("keep_finished", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            from supervisor.durations import parse_duration

            return parse_duration(value)  # its ValueError names the value and the forms accepted
        return value

    @field_validator("tcp_listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            from supervisor.listener import parse_host_port

            parse_host_port(value)  # its ValueError says what is wrong
        return value

    @field_validator("jobs_path", mode="before")
    @classmethod
    def _split_colons(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part for part in value.split(":") if part]
        return value

    @model_validator(mode="after")
    def _derive_log_dir(self) -> Settings:
        if self.log_dir is None:
            self.log_dir = Path("/var/log/runspace") if is_root() and self.state_dir == _default_state_dir() else self.state_dir / "logs"
        return self

    @property
    def logs(self) -> Path:
        assert self.log_dir is not None
        return self.log_dir

    @property
    def job_dirs(self) -> list[Path]:
        """runspace's own types (exec), `jobs/` of this checkout, the installed job dir, then the extra ones."""
        dirs = [BUILTIN_JOBS_DIR, REPO_JOBS_DIR, self.jobs_dir, *self.jobs_path]
        return list(dict.fromkeys(d.resolve() for d in dirs))

    @property
    def store_url(self) -> str:
        return self.store or str(self.state_dir / "runspace.db")


def load_settings() -> Settings:
    """Settings, or InvalidParams with one line per bad value naming where it came from."""
    config_file = default_config_file()
    if os.environ.get("RUNSPACE_CONFIG") and config_file is not None and not config_file.is_file():
        raise InvalidParams(f"RUNSPACE_CONFIG={config_file}: no such file")
    try:
        settings = Settings()
        if config_file is not None and config_file.is_file():
            _refuse_unknown_keys(config_file)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidParams(f"config file {config_file}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidParams(f"config file {config_file}: cannot read it ({getattr(exc, 'strerror', None) or exc})") \
            from None
    except ValidationError as exc:
        raise InvalidParams("; ".join(_describe_error(err, config_file) for err in exc.errors())) from None
    return settings


def _describe_error(err: Any, config_file: Path | None) -> str:
    name = str(err["loc"][0]) if err["loc"] else "settings"
    # pydantic-settings reads env names in any case: runspace_max_concurrency counts too.
    env_name = next((key for key in os.environ if key.upper() == f"RUNSPACE_{name.upper()}"), None)
    if env_name is not None:
        where = f"{env_name}={os.environ[env_name]!r}"
    else:
        where = f"{name} = {err.get('input')!r} in {config_file}"
    return f"{where}: {err['msg']}"


def _refuse_unknown_keys(config_file: Path) -> None:
    unknown = sorted(set(tomllib.loads(config_file.read_text())) - set(Settings.model_fields))
    if unknown:
        raise InvalidParams(f"config file {config_file}: unknown setting {', '.join(map(repr, unknown))}; "
                            "`runspace daemon --help` lists them")


def describe_settings() -> str:
    """One line per setting, for `runspace daemon --help`: what it is, its choices, its default."""
    lines = []
    width = max(len(name) for name in Settings.model_fields)
    for name, field in Settings.model_fields.items():
        text = field.description or ""
        choices = get_args(field.annotation) if get_origin(field.annotation) is Literal else ()
        if choices and not all(str(choice) in text for choice in choices):
            text += f" One of: {', '.join(map(str, choices))}."
        default = field.get_default(call_default_factory=True)
        if default not in (None, [], ()):
            text += f" [default: {default}]"
        lines.append(f"RUNSPACE_{name.upper():<{width}} {text}")
    return "\n".join(lines)
