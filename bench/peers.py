"""The peers, each started privately for one benchmark run: task-spooler, nq, redis + RQ workers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import ROOT, marked_env, wait_for


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def have_rq() -> bool:
    try:
        import redis  # noqa: F401
        import rq  # noqa: F401
    except ImportError:
        return False
    return have("redis-server")


class Tsp:
    """A private task-spooler server (its own socket and output dir), `slots` jobs at once."""

    def __init__(self, base: Path, slots: int) -> None:
        base.mkdir(parents=True, exist_ok=True)
        out = base / "out"
        out.mkdir(exist_ok=True)
        self.env = marked_env(TS_SOCKET=str(base / "tsp.sock"), TMPDIR=str(out), TS_SLOTS=str(slots),
                              TS_MAXFINISHED="1000000", TS_MAXCONN="1000")
        self.slots = slots

    def tsp(self, *args: str) -> str:
        return subprocess.run(["tsp", *args], env=self.env, capture_output=True, text=True, check=True).stdout

    def start(self) -> Tsp:
        self.tsp("-S", str(self.slots))
        return self

    def submit(self, *argv: str) -> int:
        return int(self.tsp(*argv).strip())

    def finished(self) -> int:
        return sum(1 for line in self.tsp("-l").splitlines()[1:] if line.split()[1:2] == ["finished"])

    def wait_finished(self, count: int, timeout: float, interval: float = 0.02) -> None:
        wait_for(lambda: self.finished() >= count, timeout, interval, what=f"{count} tsp jobs")

    def stop(self) -> None:
        subprocess.run(["tsp", "-K"], env=self.env, capture_output=True)


class Nq:
    """nq with a private queue directory: every job waits for all earlier ones (serial)."""

    def __init__(self, base: Path) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.env = marked_env(NQDIR=str(base))
        self.base = base

    def submit(self, *argv: str) -> None:
        subprocess.run(["nq", "-q", *argv], env=self.env, check=True)

    def wait_all(self) -> None:
        subprocess.run(["nq", "-w"], env=self.env, check=True, capture_output=True)


class RqPeer:
    """A private redis-server on a Unix socket and `workers` RQ fork-per-job workers."""

    def __init__(self, base: Path, workers: int) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.base = base
        self.socket = base / "redis.sock"
        self.url = f"unix://{self.socket}?db=0"
        self.n_workers = workers
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.queue = None

    def start(self) -> RqPeer:
        from redis import Redis
        from rq import Queue

        self.redis_proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", str(self.base), "--daemonize", "no"],
            env=marked_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.socket.exists, 10, what="redis-server socket")
        self.redis = Redis(unix_socket_path=str(self.socket))
        wait_for(self._ping, 10, what="redis ping")
        self.queue = Queue("bench", connection=self.redis)
        rq_bin = str(Path(sys.executable).parent / "rq")
        env = marked_env(PYTHONPATH=str(ROOT))
        log = open(self.base / "workers.log", "ab")
        for n in range(self.n_workers):
            self.workers.append(subprocess.Popen(
                [rq_bin, "worker", "--url", self.url, "--worker-class", "rq.Worker", "--name", f"bench-{n}-{os.getpid()}",
                 "--logging_level", "WARNING", "bench"], env=env, cwd=ROOT, stdout=log, stderr=log))
        log.close()
        from rq import Worker

        wait_for(lambda: len(Worker.all(connection=self.redis)) >= self.n_workers, 30, 0.05, what="RQ workers")
        return self

    def _ping(self) -> bool:
        try:
            return bool(self.redis.ping())
        except Exception:
            return False

    def finished_count(self) -> int:
        from rq.registry import FinishedJobRegistry

        return FinishedJobRegistry(queue=self.queue).count

    def stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # warm shutdown
        deadline = time.monotonic() + 5
        for proc in self.workers:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.redis_proc is not None and self.redis_proc.poll() is None:
            self.redis_proc.terminate()
            self.redis_proc.wait(10)
