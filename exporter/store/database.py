"""Opening a bbaccess database: the engine, the one-run-at-a-time lock, and schema upgrades.

Alembic owns the schema. ``open_database`` upgrades an older database to this version's head and
refuses one written by a newer version of bbaccess.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from exporter.errors import DatabaseError, SnapshotRunningError

log = logging.getLogger(__name__)

_PACKAGE_DIR = Path(__file__).resolve().parents[1]
# An installed wheel carries the migrations as exporter/migrations; a source checkout keeps them at
# the top of the repository, beside exporter/.
MIGRATIONS_DIRS = (_PACKAGE_DIR / "migrations", _PACKAGE_DIR.parent / "migrations")


def migrations_dir() -> Path:
    for candidate in MIGRATIONS_DIRS:
        if (candidate / "env.py").is_file():
            return candidate
    raise DatabaseError(
        f"the schema migrations are missing (looked in {MIGRATIONS_DIRS[0]}); this bbaccess "
        "install is incomplete: reinstall it with 'pip install --force-reinstall bbaccess'"
    )


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


CACHE_KIB = 64 * 1024


def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    # 64 MiB of page cache (the default is 2 MiB): a merge of 400,000 grants keeps its index
    # pages in memory instead of spilling them (first merge at large: 4 s to 2 s).
    cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    cursor.close()


def create_engine_for(path: Path) -> AsyncEngine:
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    event.listen(engine.sync_engine, "connect", _set_pragmas)
    return engine


def _read_only_uri(path: Path) -> str:
    """A read-only SQLite URI for ``path``. Where bbaccess may not write beside the file (a
    read-only file or folder: an auditor's copy), the file is opened as immutable: SQLite then
    needs no -wal or -shm file, and takes no lock."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    if not (os.access(path, os.W_OK) and os.access(path.resolve().parent, os.W_OK)):
        uri += "&immutable=1"
    return uri


def _set_read_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    cursor.close()


def _reader_engine(path: Path) -> AsyncEngine:
    """An engine that only reads: it takes no write lock, and works on a read-only copy."""
    engine = create_async_engine(
        "sqlite+aiosqlite:///" + _read_only_uri(path) + "&uri=true"
    )
    event.listen(engine.sync_engine, "connect", _set_read_pragmas)
    return engine


@dataclass(frozen=True)
class _Found:
    """What a file holds, read without writing anything."""

    revision: str | None  # the bbaccess schema revision, if any
    foreign: bool  # an SQLite database with tables but no bbaccess schema


def _inspect(path: Path) -> _Found:
    if not path.exists() or path.stat().st_size == 0:
        return _Found(None, False)
    try:
        with contextlib.closing(sqlite3.connect(_read_only_uri(path), uri=True)) as conn:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            row = (conn.execute("SELECT version_num FROM alembic_version").fetchone()
                   if "alembic_version" in names else None)  # fmt: skip
    except sqlite3.DatabaseError as error:
        raise DatabaseError(f"{path} cannot be used as a bbaccess database: {error}") from None
    return _Found(None if not row else str(row[0]), bool(names) and row is None)


def _current_revision(connection: Connection) -> str | None:
    has_table = connection.execute(
        text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'")
    ).first()
    if has_table is None:
        return None
    row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
    return None if row is None else str(row[0])


def _known_revision(scripts: ScriptDirectory, revision: str) -> bool:
    try:
        return scripts.get_revision(revision) is not None
    except CommandError:
        return False


def _upgrade(connection: Connection, path: Path) -> None:
    config = alembic_config()
    scripts = ScriptDirectory.from_config(config)
    revision = _current_revision(connection)
    if revision is not None and not _known_revision(scripts, revision):
        raise DatabaseError(
            f"{path} was written by a newer bbaccess (schema revision {revision!r}); "
            "upgrade bbaccess to use it"
        )
    head = scripts.get_current_head()
    if revision != head:
        log.info("upgrading %s from schema %s to %s", path, revision or "(empty)", head)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def check_database_path(path: Path, *, create: bool = True) -> None:
    """Refuse, with a message saying what to do, a path that cannot be a database."""
    if path.is_dir():
        raise DatabaseError(f"{path} is a folder; --db takes the path of a database file")
    if not create and not path.exists():
        raise DatabaseError(f"no database at {path}: run 'bbaccess snapshot --db {path}' first")
    if not path.parent.is_dir():
        raise DatabaseError(f"the folder {path.parent} does not exist; create it or choose another")
    if _inspect(path).foreign:
        # Refused before anything is written: not even its journal mode is changed.
        raise DatabaseError(
            f"{path} is an SQLite database of another program (it has tables, but no bbaccess "
            "schema); give --db a new file or a bbaccess database"
        )


async def open_database(path: Path, *, create: bool = True) -> AsyncEngine:
    """An engine on ``path`` whose schema is at this version's head.

    With ``create=False`` (the reading commands) a missing file is an error, and a database
    already at the head is opened read-only: no write lock, and a read-only copy works.
    """
    check_database_path(path, create=create)
    found = _inspect(path)
    if not create:
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        if found.revision == head:
            return _reader_engine(path)
        if not os.access(path, os.W_OK) or not os.access(path.resolve().parent, os.W_OK):
            raise DatabaseError(
                f"{path} is read-only and not a bbaccess database of this version's schema "
                f"({head}); open it once with write access to upgrade it, or use the bbaccess "
                "version that wrote it"
            )
    engine = create_engine_for(path)
    try:
        async with engine.connect() as connection:
            # One real transaction for the whole upgrade. The sqlite3 driver would otherwise
            # commit each CREATE and DROP on its own, so that a failure half-way left a schema
            # that is neither version. IMMEDIATE takes the write lock before the revision is
            # read: a second process waits, then finds the database already upgraded.
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
            await connection.run_sync(_upgrade, path)
            await connection.commit()
    except DBAPIError as error:
        await engine.dispose()
        raise DatabaseError(f"{path} cannot be used as a bbaccess database: {error.orig}") from None
    except BaseException:
        await engine.dispose()
        raise
    return engine


def backup_database(path: Path, target: Path) -> int:
    """Copy ``path`` to ``target`` with SQLite's online backup: a consistent copy, safe while a
    snapshot runs (it reads one moment of the database, as any reader does). The pages copied."""
    check_database_path(path, create=False)
    if target.exists():
        raise DatabaseError(f"{target} exists; give backup a new file (nothing was written)")
    if not target.parent.is_dir():
        raise DatabaseError(f"the folder {target.parent} does not exist; create it first")
    with (
        contextlib.closing(sqlite3.connect(_read_only_uri(path), uri=True)) as source,
        contextlib.closing(sqlite3.connect(target)) as copy,
    ):
        source.execute("PRAGMA busy_timeout=30000")
        source.backup(copy)
        (pages,) = copy.execute("PRAGMA page_count").fetchone()
        (check,) = copy.execute("PRAGMA quick_check").fetchone()
    if check != "ok":
        target.unlink()
        raise DatabaseError(f"the copy of {path} failed its check ({check}); nothing was kept")
    return int(pages)


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock on an open file without waiting; False if another process holds
    it. The operating system releases it when the process dies. ``fcntl`` exists on Linux and
    macOS, ``msvcrt`` on Windows; each is imported only here, so that every other command (and
    ``--help``) runs wherever Python does."""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class RunLock:
    """An exclusive lock beside the database, held for the whole of one snapshot.

    The operating system releases it when the process dies, so a killed run never blocks the next.
    """

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        # Resolved, so that a link to the database takes the same lock as the database itself.
        resolved = db_path.resolve()
        self.path = resolved.with_name(resolved.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            raise SnapshotRunningError(
                f"another snapshot is running against {self.db_path}; "
                "wait for it to finish (one snapshot at a time per database)"
            )
        self._fd = fd

    def release(self) -> None:
        # Closing the file releases the lock.
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
