"""What the routes see of the daemon (daemon process): built by Daemon.serve, handed to create_app.

The routes import this, never supervisor.daemon, so arrows point one way (daemon → api).
The scheduler is used through its public methods only (tests/test_architecture.py checks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from supervisor.batches import Batches
from supervisor.registry import Registry
from supervisor.runner.forkserver import ForkServer
from supervisor.scheduler import Scheduler
from supervisor.settings import Settings
from supervisor.store.guard import StoreGuard


@dataclass(frozen=True)
class DaemonState:
    settings: Settings
    store: StoreGuard
    scheduler: Scheduler
    batches: Batches
    forkserver: ForkServer | None
    starts: int  # daemon starts on this store, this one included
    live_registry: Callable[[], Registry]  # the daemon replaces its registry on SIGHUP
    live_draining: Callable[[], bool]  # the daemon drains on SIGTERM

    @property
    def registry(self) -> Registry:
        return self.live_registry()

    @property
    def draining(self) -> bool:
        """New work is refused: the daemon is on its way out."""
        return self.live_draining()

    def fork_server_state(self) -> str:
        """`warming` for the second or so after a (re)start while it imports the job modules."""
        if self.forkserver is None:
            return "off"
        if self.forkserver.ready():
            return "ready"
        return "warming" if self.forkserver.running else "down (jobs start with posix_spawn)"
