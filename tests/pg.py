"""A private PostgreSQL server for tests: initdb into a temp dir, listen on a private Unix socket.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as a
dedicated system user (created with useradd on first use) through `setpriv`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PG_USER = "runspace-pg"  # the OS account that owns the cluster when tests run as root
DB_ROLE = "runspace"


def find_pg_bin() -> Path | None:
    """The bin dir of the newest installed PostgreSQL, or None."""
    for initdb in (shutil.which("initdb"), *sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)):
        if initdb and Path(initdb).exists():
            return Path(os.path.realpath(initdb)).parent
    return None


@dataclass
class PgServer:
    url: str
    socket_dir: Path
    port: int
    _ctl: list[str]  # pg_ctl -D DATA, run as the server's account
    _opts: str
    _log: Path

    def stop(self) -> None:
        """`pg_ctl stop -m fast`: every session is ended, as in a real restart or failover."""
        subprocess.run([*self._ctl, "-m", "fast", "-w", "stop"], check=True, capture_output=True,
                       env={**os.environ, "LC_ALL": "C"})

    def start(self) -> None:
        subprocess.run([*self._ctl, "-l", str(self._log), "-o", self._opts, "-w", "-t", "30", "start"],
                       check=True, capture_output=True, env={**os.environ, "LC_ALL": "C"})


def _server_account() -> tuple[list[str], int | None]:
    """The command prefix that drops to the server's account, and its uid (None: ourselves)."""
    if os.geteuid() != 0:
        return [], None
    try:
        entry = pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
                       check=True, capture_output=True)
        entry = pwd.getpwnam(PG_USER)
    prefix = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", "--"]
    return prefix, entry.pw_uid


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def private_postgres(bin_dir: Path) -> Iterator[PgServer]:
    """Start a throw-away cluster; stop it and remove its files afterwards."""
    prefix, uid = _server_account()
    base = Path(tempfile.mkdtemp(prefix="runspace-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if uid is not None:
        for path in (base, sock):
            os.chown(path, uid, -1)
    env = {**os.environ, "LC_ALL": "C"}
    port = _free_port()
    try:
        subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", DB_ROLE, "--auth=trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True, env=env)
        # Durability is irrelevant for a throw-away test cluster; speed is not.
        opts = (f"-c listen_addresses='' -c unix_socket_directories={sock} -p {port} -c fsync=off "
                f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        server = PgServer(f"postgresql:///postgres?host={sock}&port={port}&user={DB_ROLE}", sock, port,
                          [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data)], opts, base / "server.log")
        server.start()
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, env=env)
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(server_url: str) -> str:
    """A new, empty database on a private server: its URL."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.replace("postgresql:///postgres", f"postgresql:///{name}")
