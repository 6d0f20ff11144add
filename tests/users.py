"""Throw-away local users for multi-user tests, and acting as them from forked children.

The tests need root: they create two users and a group with useradd/groupadd (removed again
at teardown) and act as those users from forked, setuid'd children that talk to the daemon's
socket like any other client would.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from supervisor.client import Client
from supervisor.errors import RunspaceError
from tests.conftest import TEST_MARKER, DaemonProcess

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="creates users and switches uids: run the suite as root")


@dataclass(frozen=True)
class LocalUser:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class LocalUsers:
    alice: LocalUser
    bob: LocalUser
    group: str
    group_gid: int


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


@pytest.fixture
def users() -> Iterator[LocalUsers]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create users")
    if not shutil.which("useradd"):
        pytest.skip("useradd is not installed")
    tag = uuid.uuid4().hex[:6]
    group, names = f"rsg{tag}", (f"rsa{tag}", f"rsb{tag}")
    _run("groupadd", group)
    created: list[str] = []
    try:
        for name in names:
            _run("useradd", "--create-home", "--shell", "/bin/sh", "--groups", group, name)
            created.append(name)
        found = [pwd.getpwnam(n) for n in names]
        yield LocalUsers(*(LocalUser(p.pw_name, p.pw_uid, p.pw_gid, p.pw_dir) for p in found),
                         group, grp.getgrnam(group).gr_gid)
    finally:
        for name in created:
            subprocess.run(["userdel", "-r", name], capture_output=True, timeout=60)
        subprocess.run(["groupdel", group], capture_output=True, timeout=60)


@pytest.fixture
def shared_base() -> Iterator[Path]:
    """A daemon base dir other users can pass through (pytest's tmp_path is root-only)."""
    base = Path(tempfile.mkdtemp(prefix="runspace-sec-"))
    os.chmod(base, 0o711)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def multiuser(users: LocalUsers, shared_base: Path, make_daemon: Callable[..., DaemonProcess]) -> Callable[..., DaemonProcess]:
    """A root daemon whose socket the test users' group may open."""

    def start(**env: str) -> DaemonProcess:
        return make_daemon(shared_base / uuid.uuid4().hex[:6], RUNSPACE_SOCKET_GROUP=users.group,
                           RUNSPACE_JOB_ENV_PASSTHROUGH=TEST_MARKER, **env)

    return start


def become(user: LocalUser) -> None:
    """In a forked child: drop to `user`'s groups, gid and uid, for good."""
    os.setgroups(os.getgrouplist(user.name, user.gid))
    os.setgid(user.gid)
    os.setuid(user.uid)


def fork_as(user: LocalUser, child: Callable[[int], None]) -> tuple[int, int]:
    """Fork a child that becomes `user` and runs `child(fd)`, `fd` the write end of a pipe to
    the parent; the child exits when `child` returns or raises, never returning into pytest.
    Returns (the child's pid, the pipe's read end)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            become(user)
            child(write_end)
        finally:
            os._exit(0)
    os.close(write_end)
    return pid, read_end


def as_user(user: LocalUser, daemon: DaemonProcess, action: Callable[[Client], Any]) -> dict[str, Any]:
    """Run `action(client)` in a forked child that has become `user`; returns {"value"} or {"error"}."""

    def child(out: int) -> None:
        try:
            with Client(daemon.socket) as client:
                reply: dict[str, Any] = {"value": action(client)}
        except RunspaceError as exc:
            reply = {"error": type(exc).__name__, "detail": exc.detail}
        except OSError as exc:
            reply = {"error": type(exc).__name__, "detail": str(exc)}
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            reply = {"error": "crash", "detail": repr(exc)}
        os.write(out, json.dumps(reply, default=str).encode())

    pid, read_end = fork_as(user, child)
    with os.fdopen(read_end, "rb") as reader:
        written = reader.read()
    os.waitpid(pid, 0)
    return json.loads(written) if written else {"error": "crash", "detail": f"could not become {user.name}"}


def value(reply: dict[str, Any]) -> Any:
    assert "value" in reply, f"expected success, got {reply}"
    return reply["value"]
