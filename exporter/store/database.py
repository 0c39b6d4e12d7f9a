"""Opening a bbaccess database: the engine, the one-run-at-a-time lock, schema upgrades, and
what SQLite's failures mean to the person running bbaccess.

Alembic owns the schema. ``open_database`` upgrades an older database to this version's head and
refuses one written by a newer version of bbaccess; a writing command first checks the file
(``PRAGMA quick_check``), so that a damaged file is refused before a night of fetching.
``describe_database_error`` turns SQLite's operational failures (locked by another program, disk
full, read-only, damaged, disk error: by SQLite's error code, never by message text) into one line
that says what happened and what to do. ``RunFailedError`` (a ``DatabaseError``; the CLI exits 5)
is raised when such a failure ends a run that had begun: the run is recorded ``failed`` where the
database still allows it, and nothing of it was merged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
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


#: Page cache of a connection that writes a snapshot: staging only appends, and a nightly merge
#: changes a few percent of the rows (at ``huge`` 64 MiB saved it 1 s and cost 90 MB). A bulk
#: merge (a first snapshot) raises it to ``MERGE_CACHE_KIB`` while it runs
#: (``writer.merge_staged``).
CACHE_KIB = 16 * 1024
#: 64 MiB (the default is 2 MiB) for the queries. A bulk merge keeps its index pages in memory
#: instead of spilling them (first merge at large: 4 s to 2 s), and SQLite sorts as much in
#: memory when it builds an index: at ``huge`` 32 MiB keep a first snapshot within 300 MB, with
#: the search beside the merge (``unexplained_staged``). With 48 MiB, the merge alone took 36 MB
#: more at its peak (193 MB against 157 MB), and was no faster (11.5 s against 11.2 s).
READ_CACHE_KIB = 64 * 1024
MERGE_CACHE_KIB = 32 * 1024
#: How long a statement waits for another connection's write lock before SQLite gives up (ms).
BUSY_TIMEOUT_MS = 30_000


class RunFailedError(DatabaseError):
    """The database failed a run that had begun (locked by another program, disk full, damaged):
    the run is recorded ``failed`` and nothing of it was merged. The CLI exits 5."""


class DatabaseFault(StrEnum):
    """What an SQLite failure means to the operator, by SQLite's primary error code."""

    LOCKED = "locked"
    FULL = "full"
    READ_ONLY = "read-only"
    DAMAGED = "damaged"
    DISK = "disk error"


_FAULTS = {
    sqlite3.SQLITE_BUSY: DatabaseFault.LOCKED,
    sqlite3.SQLITE_LOCKED: DatabaseFault.LOCKED,
    sqlite3.SQLITE_FULL: DatabaseFault.FULL,
    sqlite3.SQLITE_READONLY: DatabaseFault.READ_ONLY,
    sqlite3.SQLITE_CORRUPT: DatabaseFault.DAMAGED,
    sqlite3.SQLITE_NOTADB: DatabaseFault.DAMAGED,
    sqlite3.SQLITE_IOERR: DatabaseFault.DISK,
}
#: Said after what happened, for a run that had begun.
NOT_MERGED = "nothing of this run was merged"


def database_fault(error: BaseException) -> tuple[DatabaseFault, str] | None:
    """The fault behind an SQLite error (raw, or wrapped by SQLAlchemy) and SQLite's own words;
    None for anything else (a defect, not an operational fault)."""
    cause = error.orig if isinstance(error, DBAPIError) else error
    if not isinstance(cause, sqlite3.Error):
        return None
    code = getattr(cause, "sqlite_errorcode", None)
    fault = None if code is None else _FAULTS.get(code & 0xFF)
    return None if fault is None else (fault, str(cause))


def damaged_message(path: Path | None, detail: str, then: str = "") -> str:
    where = "the database file" if path is None else f"the database file {path}"
    return (f"{where} is damaged ({detail}){then}; restore it from a backup (bbaccess backup "
            "makes one)")  # fmt: skip


def describe_database_error(
    error: BaseException, path: Path | None, *, consequence: str | None = None
) -> str | None:
    """One line saying what an SQLite failure means and what to do; None if it is no
    operational fault. ``consequence`` (such as ``NOT_MERGED``) is said before the advice."""
    found = database_fault(error)
    if found is None:
        return None
    fault, said = found
    where = "the database" if path is None else f"the database {path}"
    then = f"; {consequence}" if consequence else ""
    if fault is DatabaseFault.DAMAGED:
        return damaged_message(path, said, then)
    return {
        DatabaseFault.LOCKED: f"{where} is locked by another program{then}; run again when it "
        "is free",
        DatabaseFault.FULL: f"the disk is full: {where} could not grow ({said}){then}; free some "
        "space and run again",
        DatabaseFault.READ_ONLY: f"{where} is read-only ({said}){then}; give bbaccess write "
        "access to the file and its folder, or choose another --db",
        DatabaseFault.DISK: f"the disk failed under {where} ({said}){then}; check the disk, then "
        "run again",
    }[fault]


def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    cursor.close()


#: KiB of the stage's own page cache (it is another file, with a cache of its own): the stage is
#: written in order and read in order by the merge.
STAGE_CACHE_KIB = 1024

#: The stage: what a running snapshot has fetched, in a file of its own beside the database
#: (``PATH-stage``), attached to every connection of a writing engine as ``stage``. Nothing of it
#: is needed once the run ends, so it is written once: its journal is in memory (a transaction
#: that fails, a merge say, is rolled back in the file as in the database) and it is never
#: synced. A run starts from a new stage file and removes it at its end (``remove_stage``), so
#: that what a process killed mid-write left is never read. Kept in the database, the stage was
#: written twice (the write-ahead log, then the file), and at ``huge`` a first night left a
#: gigabyte of free pages in the database when the merge emptied it.
STAGE_TABLES_DDL = (
    "CREATE TABLE IF NOT EXISTS stage.stage_observations (snapshot_id INTEGER NOT NULL, "
    "scope_id INTEGER NOT NULL, outcome TEXT NOT NULL, detail TEXT, "
    "requests INTEGER NOT NULL DEFAULT 0, delta BOOLEAN NOT NULL DEFAULT 0, "
    "CONSTRAINT pk_stage_observations PRIMARY KEY (snapshot_id, scope_id))",
    "CREATE TABLE IF NOT EXISTS stage.stage_objects (snapshot_id INTEGER NOT NULL, "
    "scope_id INTEGER NOT NULL, uuid TEXT NOT NULL, object_type TEXT NOT NULL, "
    "slug TEXT NOT NULL, name TEXT NOT NULL, is_private BOOLEAN, parent_uuid TEXT)",
    "CREATE TABLE IF NOT EXISTS stage.stage_grants (snapshot_id INTEGER NOT NULL, "
    "scope_id INTEGER NOT NULL, subject_id INTEGER NOT NULL, object_id INTEGER NOT NULL, "
    "grant_kind INTEGER NOT NULL, permission_text TEXT)",
    "CREATE TABLE IF NOT EXISTS stage.stage_names (snapshot_id INTEGER NOT NULL, "
    "id INTEGER NOT NULL, uuid TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS stage.stage_users (snapshot_id INTEGER NOT NULL, "
    "scope_id INTEGER NOT NULL, uuid TEXT NOT NULL, display_name TEXT NOT NULL, nickname TEXT, "
    "account_id TEXT)",
    "CREATE TABLE IF NOT EXISTS stage.stage_gone (snapshot_id INTEGER NOT NULL, "
    "scope_id INTEGER NOT NULL, grant_id INTEGER NOT NULL)",
)


def stage_path(path: Path) -> Path:
    """The stage file of the database at ``path``: beside the real file, whatever link reaches
    it (as SQLite puts its -wal and -shm files)."""
    real = path.resolve()
    return real.with_name(real.name + "-stage")


def remove_stage(path: Path) -> None:
    """Remove the stage file of the database at ``path``. Only while holding its ``RunLock``,
    with no engine open on it."""
    stage_path(path).unlink(missing_ok=True)


def _attach_stage(path: Path) -> Callable[[Any, Any], None]:
    stage = stage_path(path)

    def attach_to(cursor: Any) -> None:
        cursor.execute("ATTACH DATABASE ? AS stage", (str(stage),))
        cursor.execute("PRAGMA stage.journal_mode=MEMORY")
        cursor.execute("PRAGMA stage.synchronous=OFF")
        cursor.execute(f"PRAGMA stage.cache_size=-{STAGE_CACHE_KIB}")
        cursor.execute("PRAGMA stage.table_info(stage_grants)")
        if any(row[1] in ("subject_uuid", "permission") for row in cursor.fetchall()):
            # An earlier version's stage, which staged grants by uuid or with their kinds as
            # text: nothing in it is needed.
            cursor.execute("DROP TABLE stage.stage_grants")
        for statement in STAGE_TABLES_DDL:
            cursor.execute(statement)

    def attach(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            attach_to(cursor)
        except sqlite3.DatabaseError:
            # Not an SQLite file (torn when the machine stopped: its journal is in memory). It
            # holds nothing a run needs: made anew.
            log.warning("the stage file %s could not be read; making it anew", stage)
            cursor.execute("PRAGMA database_list")
            if any(row[1] == "stage" for row in cursor.fetchall()):
                cursor.execute("DETACH DATABASE stage")
            stage.unlink(missing_ok=True)
            attach_to(cursor)
        cursor.close()

    return attach


def create_engine_for(path: Path, *, stage: bool = True) -> AsyncEngine:
    """A writing engine on ``path``; with ``stage``, the stage file attached to each connection."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    event.listen(engine.sync_engine, "connect", _set_pragmas)
    if stage:
        event.listen(engine.sync_engine, "connect", _attach_stage(path))
    return engine


def _read_only_uri(path: Path) -> str:
    """A read-only SQLite URI for ``path``. Where bbaccess may not write beside the file (a
    read-only file or folder: an auditor's copy) and no write-ahead log or rollback journal
    holds pages, the file is opened as immutable: SQLite then needs no -wal or -shm file, and
    takes no lock. (SQLite ignores the log of an immutable file, and would answer as of the last
    checkpoint; and the journal of a merge cut off, and would read its half-written pages.)"""
    real = path.resolve()
    uri = f"file:{quote(str(real))}?mode=ro"
    logged = any(
        beside.exists() and beside.stat().st_size > 0
        for beside in (real.with_name(real.name + "-wal"), real.with_name(real.name + "-journal"))
    )
    if not logged and not _writable(path):
        uri += "&immutable=1"
    return uri


def _writable(path: Path) -> bool:
    """Whether bbaccess may write the file and beside it (its -wal, -shm, -stage and lock files)."""
    return os.access(path, os.W_OK) and os.access(path.resolve().parent, os.W_OK)


def _set_read_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute(f"PRAGMA cache_size=-{READ_CACHE_KIB}")
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


def _inspect(path: Path, *, wait: bool = True) -> _Found:
    if not path.exists() or path.stat().st_size == 0:
        return _Found(None, False)
    try:
        try:
            names, row = _read_revision(path, wait=wait)
        except sqlite3.OperationalError as error:
            code = getattr(error, "sqlite_errorcode", None)
            if not wait and code is not None and code & 0xFF == sqlite3.SQLITE_BUSY:
                return _Found(None, False)  # a first merge holds it: judged when it ends
            if code != sqlite3.SQLITE_READONLY_ROLLBACK:
                raise
            _roll_back_cut_off_merge(path)
            names, row = _read_revision(path)
    except sqlite3.DatabaseError as error:
        if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_NOTADB:
            # Not SQLite at all (a text file, or its header is gone): say so, whatever it holds.
            raise DatabaseError(f"{path} cannot be used as a bbaccess database: {error}") from None
        raise DatabaseError(
            describe_database_error(error, path)
            or f"{path} cannot be used as a bbaccess database: {error}"
        ) from None
    return _Found(None if not row else str(row[0]), bool(names) and row is None)


def _read_revision(path: Path, *, wait: bool = True) -> tuple[set[str], tuple[Any, ...] | None]:
    """The names in ``path``'s schema, and its ``alembic_version`` row if it has one. A first
    snapshot's merge keeps readers out until it commits (``writer``): with ``wait``, waited for
    as long as any lock."""
    timeout = BUSY_TIMEOUT_MS / 1000 if wait else 0
    with contextlib.closing(sqlite3.connect(_read_only_uri(path), uri=True,
                                            timeout=timeout)) as conn:  # fmt: skip
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        row = (conn.execute("SELECT version_num FROM alembic_version").fetchone()
               if "alembic_version" in names else None)  # fmt: skip
    return names, row


def _roll_back_cut_off_merge(path: Path) -> None:
    """Roll back the journal that a first merge cut off left beside the file (``PATH-journal``:
    ``writer._leave_write_ahead_log``), as SQLite does when it opens the file for writing. A
    read-only connection may not, so every reader would be refused until then. Nothing of that
    merge was committed, so nothing is lost: the file is as it was before it."""
    if not _writable(path):
        raise DatabaseError(
            f"{path} holds a merge that was cut off (its process was killed): nothing of it was "
            f"kept, but SQLite must roll it back from {path.resolve()}-journal before the file "
            "can be read; open it once with write access to the file and its folder (bbaccess "
            "snapshot does)"
        )
    log.warning("rolling back the merge that was cut off in %s (nothing of it was kept)", path)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()


def check_integrity(path: Path) -> None:
    """Refuse a damaged file before anything is fetched or written: ``PRAGMA quick_check``
    reads every page once (about 1.5 s for a 1.1 GB file in the page cache, 12 s from a cold
    disk at 100 MB/s) but skips the slow index-to-table cross-checks of ``integrity_check`` (38 s
    there)."""
    try:
        with contextlib.closing(sqlite3.connect(_read_only_uri(path), uri=True)) as conn:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            problems = [
                # One line: SQLite heads its report with "*** in database main ***" and a newline.
                " ".join(str(r[0]).replace("*** in database main ***", "").split())
                for r in conn.execute("PRAGMA quick_check(3)")
                if r[0] != "ok"
            ]
    except sqlite3.DatabaseError as error:
        found = database_fault(error)
        if found is None or found[0] is not DatabaseFault.DAMAGED:
            raise DatabaseError(describe_database_error(error, path) or
                                f"{path} cannot be checked: {error}") from None  # fmt: skip
        problems = [str(error)]
    if problems:
        raise DatabaseError(damaged_message(path, "; ".join(problems)))


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


def check_database_path(path: Path, *, create: bool = True, wait: bool = True) -> None:
    """Refuse, with a message saying what to do, a path that cannot be a database. Without
    ``wait``, a file that another connection holds locked is not waited for, and passes:
    ``open_database`` judges it again."""
    check_sqlite()
    if path.is_dir():
        raise DatabaseError(f"{path} is a folder; --db takes the path of a database file")
    if not create and not path.exists():
        raise DatabaseError(f"no database at {path}: run 'bbaccess snapshot --db {path}' first")
    if not path.parent.is_dir():
        raise DatabaseError(f"the folder {path.parent} does not exist; create it or choose another")
    if create and path.exists() and not _writable(path):
        raise DatabaseError(
            f"{path} is read-only (or its folder is): bbaccess writes to it and beside it (the "
            "-wal, -shm, -stage and lock files); give it write access to both, or choose "
            "another --db"
        )
    if create and not path.exists() and not os.access(path.resolve().parent, os.W_OK):
        raise DatabaseError(f"cannot create {path}: its folder is read-only; choose another --db")
    if _inspect(path, wait=wait).foreign:
        # Refused before anything is written: not even its journal mode is changed.
        raise DatabaseError(
            f"{path} is an SQLite database of another program (it has tables, but no bbaccess "
            "schema); give --db a new file or a bbaccess database"
        )


#: The oldest SQLite that reads the schema: ``grant_versions`` computes three columns (virtual
#: generated columns, SQLite 3.31, 2020).
SQLITE_NEEDED = (3, 31, 0)


def check_sqlite() -> None:
    """Refuse, with what to do, an SQLite library too old for the schema."""
    found = sqlite3.sqlite_version_info
    if found < SQLITE_NEEDED:
        raise DatabaseError(
            f"bbaccess needs SQLite {'.'.join(map(str, SQLITE_NEEDED))} or later, and this "
            f"Python uses SQLite {'.'.join(map(str, found))}; run bbaccess with a Python built "
            "with a newer SQLite (python.org's builds and current Linux distributions have one)"
        )


async def open_database(path: Path, *, create: bool = True, stage: bool = True) -> AsyncEngine:
    """An engine on ``path`` whose schema is at this version's head.

    With ``create=False`` (the reading commands) a missing file is an error, and a database
    already at the head is opened read-only: no write lock, and a read-only copy works. With
    ``stage=False`` (a writer that stages nothing) no stage file is attached or made.
    """
    check_database_path(path, create=create)
    found = _inspect(path)
    if create and found.revision is not None:
        check_integrity(path)
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
    engine = create_engine_for(path, stage=stage and create)
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
        raise DatabaseError(
            describe_database_error(error, path)
            or f"{path} cannot be used as a bbaccess database: {error.orig}"
        ) from None
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


def _machine_lock(name: str) -> int | None:
    """An open lock file ``name`` in the machine's temporary folder, shared by every user (a
    file another user created is opened read-only: a lock needs no write access); None where
    that folder cannot be used."""
    folder = Path(tempfile.gettempdir()) / "bbaccess-locks"
    try:
        folder.mkdir(mode=0o1777, exist_ok=True)
        with contextlib.suppress(OSError):
            folder.chmod(0o1777)  # sticky and open to all, as /tmp itself
        try:
            return os.open(folder / name, os.O_CREAT | os.O_RDWR, 0o644)
        except PermissionError:
            return os.open(folder / name, os.O_RDONLY)
    except OSError:
        return None


class RunLock:
    """An exclusive lock for one database file, held for the whole of one snapshot (or prune).

    It is keyed by the file's device and inode, not by its path: a lock file
    ``.bbaccess-DEV-INODE.lock`` in the folder of the resolved path, so that a symbolic link, a
    hard link beside the file or ``..`` takes the same lock as the file itself; and a second one
    of the same name in the machine's temporary folder, so that a hard link in another folder is
    caught too (where that folder cannot be written, the first lock alone holds). A missing
    database is created empty first, so that it has an inode before anyone locks it. The
    operating system releases the locks when the process dies, so a killed run never blocks the
    next.
    """

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.path: Path | None = None
        self._fd: int | None = None
        self._machine_fd: int | None = None

    def _lock_path(self) -> Path:
        resolved = self.db_path.resolve()
        try:
            if not resolved.exists():
                # O_EXCL: never an open descriptor on a file SQLite may hold locks on (closing
                # one would drop them all, a POSIX rule). Created empty, it is a new database.
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(resolved, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            found = resolved.stat()
        except OSError as error:
            raise DatabaseError(f"cannot create {self.db_path} ({error.strerror}); choose "
                                "another --db or a folder bbaccess may write to") from None
        return resolved.parent / f".bbaccess-{found.st_dev}-{found.st_ino}.lock"

    def acquire(self) -> None:
        self.path = self._lock_path()
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as error:
            raise DatabaseError(
                f"cannot take the run lock {self.path} ({error.strerror}): a snapshot needs "
                f"write access to the folder of {self.db_path}"
            ) from None
        machine = _machine_lock(self.path.name)
        if not _try_lock(fd) or (machine is not None and not _try_lock(machine)):
            for held in (fd, machine):
                if held is not None:
                    os.close(held)
            raise SnapshotRunningError(
                f"another snapshot is running against {self.db_path} (or the same file by another "
                "name); wait for it to finish (one snapshot at a time per database)"
            )
        self._fd, self._machine_fd = fd, machine

    def release(self) -> None:
        # Closing the files releases the locks.
        for fd in (self._machine_fd, self._fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._machine_fd = None
