"""Bearer tokens for the optional TCP listener: a root-owned file mapping tokens to users.

File format, one entry per line (`#` starts a comment):  USER TOKEN
The file must be owned by root (or the daemon's user) and unreadable by anyone else.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import NotAuthenticated
from supervisor.trust import UntrustedFile

MIN_TOKEN_LENGTH = 16


def _digest(token: str) -> bytes:
    # Comparing fixed-length digests keeps even the token's length out of the timing.
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class TokenTable:
    entries: tuple[tuple[bytes, str], ...]

    @classmethod
    def load(cls, path: Path) -> TokenTable:
        _check_private(path)
        entries = []
        for number, raw in enumerate(path.read_text().splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            user, _, token = line.partition(" ")
            token = token.strip()
            if len(token) < MIN_TOKEN_LENGTH or " " in token:
                raise UntrustedFile(f"{path}:{number}: expected `USER TOKEN` with a token of at least "
                                    f"{MIN_TOKEN_LENGTH} characters (e.g. from `openssl rand -hex 32`)")
            entries.append((_digest(token), user))
        return cls(tuple(entries))

    def user_for(self, authorization: str | None) -> str:
        """The user a `Bearer …` header belongs to; every entry is compared, in constant time."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("this listener needs an `Authorization: Bearer TOKEN` header")
        presented = _digest(token.strip())
        found = None
        for digest, user in self.entries:  # no early exit: the time does not depend on which matched
            if hmac.compare_digest(digest, presented):
                found = user
        if found is None:
            raise NotAuthenticated("the bearer token is not valid")
        return found


def _check_private(path: Path) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UntrustedFile(f"tokens file {path} does not exist (needed because tcp_listen is set)") from None
    if st.st_uid not in (0, os.geteuid()):
        raise UntrustedFile(f"tokens file {path} must be owned by root, not uid {st.st_uid}")
    if st.st_mode & 0o077:
        raise UntrustedFile(f"tokens file {path} must not be readable or writable by others "
                            f"(mode {stat.S_IMODE(st.st_mode):04o}; chmod 600 it)")
