"""The effective access no source explains of a database's first snapshot, found from its stage
beside the merge (``StagedUnexplained``), for ``unexplained.update_unexplained``.

A first snapshot's facts, once merged, are what its stage holds of the scopes it read ok: the
question ``unexplained.REBUILD`` asks of the merged tables can be asked of the stage instead, on
a connection and a thread of its own, while the merge inserts the grants. SQLite lets go of
Python while a statement runs, so the search takes the machine's second core: at ``huge`` 7 to
8 s beside a merge of 11 to 14 s, where inside the merge it took 7.3 s after the rest. It may
import the SQL it shares (``sql``, ``unexplained``), nothing of the merge.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

from exporter.store.sql import GRANT_COLUMNS
from exporter.store.unexplained import (
    EXPLAINED_TABLE,
    OWNERS_TABLE,
    REPOS_KEYS,
    UNEXPLAINED_BY_PAIRS_OR_OWNERS,
)

log = logging.getLogger(__name__)

#: The same question of a database's first snapshot, asked of its stage (``StagedUnexplained``):
#: once merged, its facts are the staged rows of the scopes it read ok, the last staged of a key
#: counting (a row staged twice as pages drifted), and its names those it staged. On the stage's
#: own connection, with the scopes copied beside it (``temp.staged_scopes``) before the merge
#: begins. The stage has no key on its grants: they are read twice in all, in the order staged
#: (the effective grants, and once for every other grant of an ok scope: a few percent).
STAGE_REBUILD = (
    """CREATE TEMP TABLE staged_names (uuid TEXT PRIMARY KEY, id INTEGER NOT NULL) WITHOUT ROWID""",
    """INSERT OR REPLACE INTO temp.staged_names
       SELECT uuid, id FROM stage_names WHERE snapshot_id = :s ORDER BY rowid""",
    """CREATE TEMP TABLE staged_ok AS
       SELECT sc.id, sc.kind, sc.object_uuid FROM stage_observations so
         JOIN temp.staged_scopes sc ON sc.id = so.scope_id
        WHERE so.snapshot_id = :s AND so.outcome = 'ok'""",
    "CREATE UNIQUE INDEX temp.staged_ok_id ON staged_ok (id)",
    # The repositories as ``unexplained_repos``: the last staged row of each (scope, uuid).
    """CREATE TEMP TABLE unexplained_repos AS
       SELECT rn.id, o.uuid, o.parent_uuid AS project_uuid, sc.object_uuid AS workspace_uuid,
              pn.id AS project_id, wn.id AS workspace_id
         FROM (SELECT scope_id, uuid, object_type, parent_uuid, max(rowid) FROM stage_objects
                WHERE snapshot_id = :s GROUP BY scope_id, uuid) o
         JOIN temp.staged_ok sc ON sc.id = o.scope_id AND sc.kind = 'repositories'
         JOIN temp.staged_names rn ON rn.uuid = o.uuid
         LEFT JOIN temp.staged_names pn ON pn.uuid = o.parent_uuid
         LEFT JOIN temp.staged_names wn ON wn.uuid = sc.object_uuid
        WHERE o.object_type = 'repository'""",
    *REPOS_KEYS,
    # Every staged grant of an ok scope that a source or an owner is made of (the effective
    # grants' scopes are tested first: one look-up in a few dozen).
    """CREATE TEMP TABLE staged_sources AS
       SELECT sc.kind, sc.object_uuid, st.subject_id, st.object_id, st.grant_kind,
              st.permission_text, st.rowid AS staged
         FROM stage_grants st JOIN temp.staged_ok sc ON sc.id = st.scope_id
        WHERE st.snapshot_id = :s
          AND st.scope_id NOT IN (SELECT id FROM temp.staged_ok
                                   WHERE kind = 'repository_permissions')
          AND sc.kind IN ('repository_user_grants', 'repository_group_grants',
                          'project_user_grants', 'project_group_grants', 'groups',
                          'workspace_roles')""",
    "CREATE INDEX temp.staged_sources_key ON staged_sources "
    "(kind, object_uuid, object_id, subject_id)",
    OWNERS_TABLE,
    f"""INSERT OR IGNORE INTO temp.unexplained_owners
       SELECT subject_id, object_uuid, object_id FROM (
           SELECT subject_id, object_uuid, object_id, grant_kind, permission_text, max(staged)
             FROM temp.staged_sources WHERE kind = 'workspace_roles'
            GROUP BY object_uuid, subject_id, object_id)
        WHERE {GRANT_COLUMNS["permission"]} = 'owner'""",
    EXPLAINED_TABLE,
    """INSERT OR IGNORE INTO temp.unexplained_pairs_explained
       SELECT k FROM (
           SELECT e.subject_id * 4294967296 + r.id AS k
             FROM temp.staged_sources e
            CROSS JOIN temp.unexplained_repos r ON r.uuid = e.object_uuid AND r.id = e.object_id
            WHERE e.kind = 'repository_user_grants'
           UNION ALL
           SELECT m.subject_id * 4294967296 + r.id
             FROM temp.staged_sources e
            CROSS JOIN temp.unexplained_repos r ON r.uuid = e.object_uuid AND r.id = e.object_id
            CROSS JOIN temp.staged_sources m ON m.kind = 'groups'
                   AND m.object_uuid = r.workspace_uuid AND m.object_id = e.subject_id
            WHERE e.kind = 'repository_group_grants'
           UNION ALL
           SELECT e.subject_id * 4294967296 + r.id
             FROM temp.staged_sources e
            CROSS JOIN temp.unexplained_repos r ON r.project_uuid = e.object_uuid
                                               AND r.project_id = e.object_id
            WHERE e.kind = 'project_user_grants'
           UNION ALL
           SELECT m.subject_id * 4294967296 + r.id
             FROM temp.staged_sources e
            CROSS JOIN temp.unexplained_repos r ON r.project_uuid = e.object_uuid
                                               AND r.project_id = e.object_id
            CROSS JOIN temp.staged_sources m ON m.kind = 'groups'
                   AND m.object_uuid = r.workspace_uuid AND m.object_id = e.subject_id
            WHERE e.kind = 'project_group_grants')
        ORDER BY k""",
    """CREATE TEMP TABLE staged_unexplained (
           scope_id INTEGER NOT NULL, subject_id INTEGER NOT NULL, object_id INTEGER NOT NULL,
           PRIMARY KEY (scope_id, subject_id, object_id)) WITHOUT ROWID""",
    f"""INSERT OR IGNORE INTO temp.staged_unexplained
       SELECT ef.scope_id, ef.subject_id, ef.object_id
         FROM stage_grants ef
        WHERE ef.snapshot_id = :s
          AND ef.scope_id IN (SELECT id FROM temp.staged_ok
                               WHERE kind = 'repository_permissions')
          AND {UNEXPLAINED_BY_PAIRS_OR_OWNERS}""",
)

#: The page cache of that connection, which its sorter sizes its memory by too: beside the
#: merge's own cache, 4 MiB took the first snapshot's peak memory at ``huge`` over 300 MB (the
#: search used 24 MB in all); with 1 MiB it uses 10 MB, and is no slower (7.6 s against 8.1 s).
STAGED_CACHE_KIB = 1024

#: The rows handed to the merge at a time: the answer may be millions of rows (an org whose
#: group listing failed), and is never held whole in memory.
STAGED_CHUNK_ROWS = 10_000
#: SQLite's steps between two looks at whether the search was stopped (a few microseconds).
PROGRESS_STEPS = 10_000


class StagedUnexplained:
    """The ``unexplained_access`` rows of a database's first snapshot, found from its stage
    (``STAGE_REBUILD``) on a connection of its own, in a thread of its own, while the merge
    writes: SQLite lets go of the interpreter while it runs a statement, so the two run on two
    cores. Both files are opened read-only. ``start`` copies the scopes from the database: the
    merge must not begin before it returns, nor the stage change after (the merge only reads
    it on a first night). ``close`` always."""

    def __init__(self, db: Path, stage: Path, snapshot_id: int) -> None:
        self._db = db
        self._stage = stage
        self._snapshot_id = snapshot_id
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="bbaccess-unexplained")
        self._conn: sqlite3.Connection | None = None
        self._found: asyncio.Future[float] | None = None
        self._stopped = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._open)
        self._found = loop.run_in_executor(self._executor, self._find)

    def _open(self) -> None:
        conn = sqlite3.connect(_read_only(self._stage), uri=True, isolation_level=None,
                               check_same_thread=False)  # fmt: skip
        self._conn = conn
        conn.execute(f"PRAGMA cache_size=-{STAGED_CACHE_KIB}")
        # Between two statements an interruption finds nothing to stop: a statement that starts
        # after ``close`` stops at once.
        conn.set_progress_handler(lambda: self._stopped, PROGRESS_STEPS)
        conn.execute("ATTACH DATABASE ? AS facts", (_read_only(self._db),))
        conn.execute("CREATE TEMP TABLE staged_scopes (id INTEGER PRIMARY KEY, kind TEXT NOT NULL,"
                     " object_uuid TEXT)")  # fmt: skip
        conn.execute("INSERT INTO temp.staged_scopes "
                     "SELECT id, kind, object_uuid FROM facts.scopes")  # fmt: skip
        conn.execute("DETACH DATABASE facts")

    def _find(self) -> float:
        started = time.monotonic()
        assert self._conn is not None
        for statement in STAGE_REBUILD:
            self._conn.execute(statement, {"s": self._snapshot_id})
        return time.monotonic() - started

    async def chunks(self) -> AsyncIterator[list[tuple[int, int, int]]]:
        """The rows, a chunk at a time, once found."""
        assert self._found is not None and self._conn is not None
        seconds = await self._found
        loop = asyncio.get_running_loop()
        cursor = await loop.run_in_executor(
            self._executor, self._conn.execute,
            "SELECT scope_id, subject_id, object_id FROM temp.staged_unexplained",
        )
        rows = 0
        while chunk := await loop.run_in_executor(
            self._executor, cursor.fetchmany, STAGED_CHUNK_ROWS
        ):
            rows += len(chunk)
            yield chunk
        log.info("found the effective access no source explains from the stage, beside the "
                 "merge, in %.1f s (%d grants)", seconds, rows)  # fmt: skip

    async def close(self) -> None:
        """Stop finding (a merge that failed or was interrupted does not wait for it) and close
        the connection."""
        self._stopped = True
        if self._conn is not None:
            self._conn.interrupt()
        loop = asyncio.get_running_loop()
        closing = loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)
        await asyncio.shield(closing)
        if self._found is not None and self._found.done() and not self._found.cancelled():
            self._found.exception()  # taken: it was stopped, or its error was told already

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _read_only(path: Path) -> str:
    return f"file:{quote(str(path.resolve()))}?mode=ro"
