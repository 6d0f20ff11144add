"""Versioned schema migrations, one SQL file per version: `<backend>/NNNN_name.sql`.

A database records the last version applied (SQLite: `PRAGMA user_version`; PostgreSQL: the
`schema_version` table); start-up applies the newer files in order, each in one transaction,
and refuses to touch a database whose version is newer than the files shipped here.

To add a column or a table: add the next-numbered file to BOTH `sqlite/` and `postgres/`
(and the field to JobRecord, if it is one); tests/test_store.py fails until both exist, and
its upgrade test opens a database made by every older version.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer runspace than this one."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(backend: str) -> list[Migration]:
    found = []
    for entry in resources.files(__package__).joinpath(backend).iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{backend} migrations are not numbered 1..n: {[m.version for m in found]}")
    return found


def latest_version(backend: str) -> int:
    return len(migrations(backend))
