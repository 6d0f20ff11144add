"""The daemon: wires settings, store, scheduler and API together; lifecycle, signals, systemd."""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import json
import os
import signal
import socket
import sys
import typing
from pathlib import Path

import anyio
import uvicorn
from anyio import CancelScope
from anyio.abc import TaskGroup, UNIXDatagramSocket
from loguru import logger

from supervisor import systemd
from supervisor.api.app import create_app
from supervisor.api.connections import ConnectionTable, PeerCredProtocol
from supervisor.api.state import DaemonState
from supervisor.api.tokens import TokenTable
from supervisor.batches import Batches
from supervisor.daemon_lock import hold_state_dir, refuse_a_live_socket
from supervisor.descriptors import close_inherited_fds, raise_fd_limit
from supervisor.errors import RunspaceError, StoreUnavailable
from supervisor.ids import is_job_id
from supervisor.listener import bind_tcp, bind_unix
from supervisor.preflight import check_settings, doubtful_settings, unknown_env
from supervisor.job_modules import check_job_modules, import_job_modules
from supervisor.registry import Registry
from supervisor.retention import keep_finished
from supervisor.runner.cgroups import JobCgroups, cgroup_root_name, detect_cgroup_root
from supervisor.runner.forkserver import ForkServer
from supervisor.runner.identity import prepare_shared_dirs
from supervisor.runner.reap import Reaper, become_subreaper
from supervisor.runner.shim import holds_fds_safely, native_shim
from supervisor.scheduler import Scheduler, Services
from supervisor.settings import BUILTIN_JOBS_DIR, Settings, default_config_file
from supervisor.store import Store, is_shared, open_store, store_file
from supervisor.store.guard import StoreGuard
from supervisor.trust import Trust
from supervisor.userlog import UserLog

if typing.TYPE_CHECKING:
    from supervisor.cluster import Cluster


def setup_logging(debug: bool) -> None:
    logger.remove()
    logger.add(
        sys.stderr,
        level="DEBUG" if debug else "INFO",
        filter=lambda record: "user_log" not in record["extra"],
        format="{time:YYYY-MM-DDTHH:mm:ss.SSS!UTC}Z {level: <7} {message}",
    )


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns signals."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


class EarlySighup:
    """A SIGHUP that comes while the daemon starts (before its signal receiver exists) asks for
    a reload like any other, done once it serves; the default action would end the daemon."""

    def __init__(self) -> None:
        self.asked = False
        signal.signal(signal.SIGHUP, self._note)

    def _note(self, signum: int, frame: object) -> None:
        self.asked = True


class Daemon:
    def __init__(self, settings: Settings, early_sighup: EarlySighup | None = None,
                 descriptors: tuple[list[int], int] = ([], 0)) -> None:
        self.settings = settings
        self._early_sighup = early_sighup
        self._descriptors = descriptors  # (closed inherited ones, the limit): said once the state dir is ours
        self.serving = False  # set once start-up is done: errors before it are one line (run_daemon)
        self.failure: str | None = None  # why the daemon stopped by itself: one line, exit 1 (run_daemon)
        self.draining = False
        self.starts = 0
        self.tokens: TokenTable | None = None
        self.registry = Registry()
        self._reloading = anyio.Lock()
        self.forkserver: ForkServer | None = None
        self.cgroups: JobCgroups | None = None
        self._state_lock: int | None = None  # fd of <state dir>/daemon.lock, held for the daemon's life
        self.store: StoreGuard
        self.scheduler: Scheduler

    # -- job definitions ------------------------------------------------------------

    async def load_jobs(self) -> Registry:
        sources, refused = check_job_modules(self.settings.job_dirs, Trust.of_admins(self.settings.admins))
        # At once, before any import: a type stays only while its module's source is the one checked.
        self.registry = self.registry.keeping(sources)
        registry = await import_job_modules(sources, refused, self.settings.import_timeout)
        for broken in registry.broken:
            logger.error("job module {} was not loaded: {}{}", broken.path, broken.error,
                         "\n" + broken.traceback if broken.traceback else "")
        logger.info("job types: {}", ", ".join(sorted(registry.types)) or "none")
        if not any(jt.module_path and jt.module_path.parent != BUILTIN_JOBS_DIR for jt in registry.types.values()):
            looked = ", ".join(str(d) for d in self.settings.job_dirs if d != BUILTIN_JOBS_DIR)
            logger.warning("no job types found besides the built-in ones; looked in {}: put job modules in {} "
                           "(or list directories in RUNSPACE_JOBS_PATH)", looked, self.settings.jobs_dir)
        return registry

    async def reload_jobs(self) -> None:
        """SIGHUP: the definitions as they are now. A module that is refused or fails to import
        loses its types: what runs is only ever what passed the check."""
        async with self._reloading:  # one at a time: a second SIGHUP reloads again after
            self.registry = await self.load_jobs()
            self._restart_forkserver()
            logger.info("job definitions reloaded")

    def _restart_forkserver(self) -> None:
        """The fork server pre-imports exactly the modules the daemon loaded (and trusted)."""
        if self.forkserver is None:
            return
        self.forkserver.close()
        modules = {jt.module_path: jt.module_sha256 for jt in self.registry.types.values()
                   if jt.module_path and jt.module_sha256}
        self.forkserver.start(modules, self.cgroups.root if self.cgroups else None, self.settings.job_env_passthrough)

    # -- lifecycle --------------------------------------------------------------------

    def _cgroups(self) -> JobCgroups | None:
        if not self.settings.cgroups:
            return None
        root = self.settings.cgroup_root or detect_cgroup_root(cgroup_root_name(self.settings.state_dir))
        return JobCgroups(root) if root else None

    def _cluster(self, store: Store) -> Cluster | None:
        """Membership of the shared queue when the store is PostgreSQL (psycopg is imported only then)."""
        if not is_shared(self.settings.store_url):
            return None
        from supervisor.cluster import Cluster

        return Cluster(store, self.settings, lambda: self.registry)  # type: ignore[arg-type]

    def _count_start(self) -> int:
        try:
            return self.store.bump_counter("daemon_starts")
        except StoreUnavailable:  # a full disk: start degraded rather than not at all
            return 0

    async def serve(self) -> None:
        """Start-up, one named step after another; then serve until SIGTERM."""
        s = self.settings
        check_settings(s)  # refuses what cannot work (one line, exit 2)
        self._claim_state_dir()  # before anything else touches the state dir
        self._note_start_conditions()  # after: a second daemon says one line, why it stops
        raw_store = self._open_store()
        self.registry = await self.load_jobs()
        events_path, events = await self._open_events_socket()
        services = self._services(events_path)
        cluster = self._cluster(raw_store)
        self.scheduler = Scheduler(services, lambda: self.registry, self.store.wrap(cluster.queue) if cluster else None)
        self.store.on_recovered.append(self.scheduler.on_store_recovered)
        batches = self._batches(services)
        if cluster:
            cluster.join()  # take the lease before re-adopting, so no survivor settles those jobs
        self.scheduler.recover()  # before the fork server: every spare cgroup found is an earlier one's
        batches.recover()  # after the scheduler's: callbacks of items that ended while we were down
        self._restart_forkserver()
        sockets, inherited = self._listen()
        server = self._http_server(sockets, DaemonState(
            settings=s, store=self.store, scheduler=self.scheduler, batches=batches, forkserver=self.forkserver,
            starts=self.starts, live_registry=lambda: self.registry, live_draining=lambda: self.draining))
        where = f"{inherited[0].getsockname()} (from systemd)" if inherited else s.socket
        logger.info("runspace daemon {} listening on {} (cgroups: {})", os.getpid(), where,
                    self.cgroups.root if self.cgroups else "off")
        self.serving = True
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(services.reaper.run)
                tg.start_soon(self.store.watch)
                tg.start_soon(self.scheduler.run)
                tg.start_soon(keep_finished, self.store, s)
                if cluster:
                    tg.start_soon(cluster.run, self.scheduler, services.user_log, lambda why: self._fail(server, why))
                tg.start_soon(self._receive_events, events)
                tg.start_soon(self._handle_signals, server, tg)
                tg.start_soon(self._announce_ready, server)
                tg.start_soon(self._serve_then_stop, server, sockets, tg.cancel_scope)
        finally:
            self._close(inherited)
        logger.info("daemon stopped; running jobs keep running and will be re-adopted")

    # -- start-up steps, in the order serve() takes them ---------------------------------

    def _claim_state_dir(self) -> None:
        """The state dir is this daemon's alone; so is the socket; then the shared dirs and config."""
        s = self.settings
        s.state_dir.mkdir(parents=True, exist_ok=True)
        self._state_lock = hold_state_dir(s.state_dir)
        if not systemd.socket_activated():
            refuse_a_live_socket(s.socket)
        s.logs.mkdir(parents=True, exist_ok=True)
        check_config_trusted(s)
        prepare_shared_dirs(s.state_dir, s.logs, None if "://" in s.store_url else Path(s.store_url))
        become_subreaper()

    def _note_start_conditions(self) -> None:
        """Warn about settings that look wrong; say which inherited descriptors were closed."""
        for name in unknown_env(os.environ):
            logger.warning("{} is not a runspace setting and is ignored (`runspace daemon --help` lists them)", name)
        for doubt in doubtful_settings(self.settings):
            logger.warning(doubt)
        inherited, nofile = self._descriptors
        if inherited:
            logger.info("closed descriptors left open by the parent: {}", ", ".join(map(str, inherited)))
        logger.debug("descriptor limit: {}", nofile)

    def _open_store(self) -> Store:
        """Open (and migrate) the store behind its guard, and count this start."""
        raw_store = open_store(self.settings.store_url)
        self.store = StoreGuard(raw_store, store_file(self.settings.store_url))
        self.starts = self._count_start()
        return raw_store

    async def _open_events_socket(self) -> tuple[Path, UNIXDatagramSocket]:
        """Where job processes ping the daemon when their progress changes."""
        path = self.settings.state_dir / "events.sock"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return path, await anyio.create_unix_datagram_socket(local_path=path, local_mode=0o666)

    def _services(self, events_path: Path) -> Services:
        """What the scheduler runs jobs with: cgroups, the fork server's handle, the shim, logs."""
        s = self.settings
        self.cgroups = self._cgroups()
        self.forkserver = ForkServer() if s.fork_server else None
        shim = native_shim() if s.native_shim else None
        if shim and os.geteuid() == 0:
            make_shim_private(shim)
        return Services(s, self.store, UserLog(s.logs, s.log_rotation, s.log_retention), Reaper(), self.cgroups,
                        events_path, self.forkserver, shim)

    def _batches(self, services: Services) -> Batches:
        """Batch callbacks: queued as items end, and those missed while the store was down."""
        batches = Batches(self.store, self.scheduler, lambda: self.registry, services.user_log)
        self.scheduler.add_end_hook(batches.on_item_finished)
        self.store.on_recovered.append(batches.queue_missed_callbacks)
        return batches

    def _listen(self) -> tuple[list[socket.socket], list[socket.socket]]:
        """The Unix socket (systemd's, or bound here) and the optional TCP listener; the
        sockets, and those inherited from systemd (never ours to unlink)."""
        s = self.settings
        inherited = systemd.listen_sockets()
        sockets = inherited or [bind_unix(s.socket, s.socket_group)]
        if s.tcp_listen:  # remote callers: same app, identity from a bearer token
            self.tokens = TokenTable.load(s.tokens_file)
            sockets.append(bind_tcp(s.tcp_listen))
            logger.info("also listening on tcp {} ({} tokens)", s.tcp_listen, len(self.tokens.entries))
        return sockets, inherited

    def _http_server(self, sockets: list[socket.socket], state: DaemonState) -> uvicorn.Server:
        # No proxy sits in front of a Unix socket: X-Forwarded-* headers are a client's to forge.
        s = self.settings
        connections = ConnectionTable(s.max_connections_per_user)
        protocol = functools.partial(PeerCredProtocol, connections=connections)
        app = create_app(state, self.tokens, connections)
        return _Server(uvicorn.Config(app, http=protocol, lifespan="off",  # type: ignore[arg-type]
                                      log_config=None, access_log=False, timeout_graceful_shutdown=1,
                                      timeout_keep_alive=s.idle_timeout, proxy_headers=False))

    def _close(self, inherited: list[socket.socket]) -> None:
        if not inherited:  # by path: uvicorn has closed the socket object by now
            with contextlib.suppress(FileNotFoundError):
                self.settings.socket.unlink()
        if self.forkserver:  # first: its spare's cgroup must be empty for cgroups.close()
            self.forkserver.close()
        if self.cgroups:
            self.cgroups.close()
        self.store.close()

    # -- running ------------------------------------------------------------------------

    async def _serve_then_stop(self, server: uvicorn.Server, sockets: list, scope: CancelScope) -> None:
        await server.serve(sockets=sockets)
        scope.cancel()

    async def _announce_ready(self, server: uvicorn.Server) -> None:
        while not server.started:
            await anyio.sleep(0.01)
        systemd.notify("READY=1\nSTATUS=accepting jobs")
        interval = systemd.watchdog_interval()
        while interval:
            systemd.notify("WATCHDOG=1")
            await anyio.sleep(interval)

    async def _handle_signals(self, server: uvicorn.Server, tg: TaskGroup) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            if self._early_sighup is not None and self._early_sighup.asked:  # from here on, signals has them
                tg.start_soon(self.reload_jobs)
            async for signum in signals:
                if signum == signal.SIGHUP:  # in the background: SIGTERM is heard during a reload
                    tg.start_soon(self.reload_jobs)
                    continue
                logger.info("{}: draining; running jobs are left running", signal.Signals(signum).name)
                self.draining = True
                systemd.notify("STOPPING=1\nSTATUS=draining")
                server.should_exit = True
                self.scheduler.release_waiters()  # long-polls answer now instead of holding up the exit

    def _fail(self, server: uvicorn.Server, why: str) -> None:
        """Stop serving because the daemon cannot go on (its shared-store lease was taken over)."""
        self.failure = why
        server.should_exit = True
        self.scheduler.release_waiters()

    async def _receive_events(self, events) -> None:
        async with events:
            async for packet, _ in events:  # the socket is 0666: any local user may send anything
                job_id = ping_job_id(packet)
                if job_id is None:
                    logger.debug("ignored a malformed progress ping")
                    continue
                try:
                    self.scheduler.on_progress_ping(job_id)
                except Exception:  # a report the store refuses must not end the daemon
                    logger.exception("could not record a progress report for job {}", job_id)


def ping_job_id(packet: bytes) -> str | None:
    """The job id of a progress ping: `{"id": ...}` (jobs send their whole report; only the id is used)."""
    try:
        message = json.loads(packet)
    except (ValueError, RecursionError):  # deep nesting raises the latter
        return None
    job_id = message.get("id") if isinstance(message, dict) else None
    return job_id if isinstance(job_id, str) and is_job_id(job_id) else None


def make_shim_private(shim: Path) -> None:
    """Jobs run as other users use the native shim only if they cannot read it (0711, as setup.py
    leaves it); a wheel installer makes it 0755, so a root daemon puts it right when root owns it."""
    try:
        st = shim.stat()
        if holds_fds_safely(shim):
            return
        if st.st_uid == 0:
            os.chmod(shim, 0o711)
            logger.info("{}: mode {:o} -> 0711 (others must not read it)", shim, st.st_mode & 0o7777)
            return
    except OSError as exc:
        logger.warning("{}: cannot make it mode 0711 ({})", shim, exc)
    logger.warning("{} is readable by others: jobs run as other users relay their commands in Python; "
                   "`chmod 0711 {}` lets them use it", shim, shim)


def check_config_trusted(settings: Settings) -> None:
    """Refuse to start on a config file a non-admin could have written."""
    config = default_config_file()
    if config is not None and config.exists():
        Trust.of_admins(settings.admins).check(config)


def run_daemon(settings: Settings, debug: bool = False) -> None:
    early_sighup = EarlySighup()
    inherited = close_inherited_fds()  # before anything of ours is open
    nofile = raise_fd_limit()
    setup_logging(debug)
    # A fatal signal in C code (SIGBUS when SQLite's -shm mapping cannot grow, e.g. under
    # `chattr +i`) then leaves a line and a traceback in the log instead of nothing.
    faulthandler.enable()
    daemon = Daemon(settings, early_sighup, (inherited, nofile))
    try:
        anyio.run(daemon.serve)
        if daemon.failure:
            raise RunspaceError(daemon.failure)
    except RunspaceError:
        raise
    except Exception as exc:
        if daemon.serving:
            raise
        # A state dir it cannot write, a store it cannot open, a port it cannot bind: one
        # line, as for a bad setting (the traceback with --debug).
        if debug:
            logger.opt(exception=exc).debug("start-up failed")
        raise RunspaceError(f"the daemon could not start: {type(exc).__name__}: {exc}") from None


