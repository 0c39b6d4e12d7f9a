"""The snapshot lifecycle: begin, register scopes, stage records, finish scopes, merge.

While a run goes on, what it fetches is staged (``stage_*`` tables, in the stage file beside the
database: ``database.STAGE_TABLES_DDL``), never held whole in memory and never visible to readers.
``complete`` merges the staged rows of every ok observation into the versioned fact tables in one
transaction: readers see the whole snapshot or nothing of it. A run that dies leaves its
``running`` row and staged rows behind; the next ``begin`` marks the row ``aborted`` and drops
what it staged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from sys import intern

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from exporter.crawl.records import (
    GAP_OUTCOMES,
    GrantRecord,
    ObjectRecord,
    Outcome,
    Record,
    ScopeRef,
    UserRecord,
)
from exporter.errors import DatabaseError
from exporter.store import schema
from exporter.store.database import CACHE_KIB, MERGE_CACHE_KIB, stage_path
from exporter.store.known_grants import KnownGrants
from exporter.store.sql import (
    ANALYZE_SMALL,
    BASELINE_SCOPES,
    EVERY_OUTCOME,
    LOG_CHANGES,
    OUTCOME_ROWS,
    PREVIOUS_COMPLETE,
    REFRESH_LABELS,
    grant_kind,
    latest_run_start,
)
from exporter.store.unexplained import update_unexplained
from exporter.store.unexplained_staged import StagedUnexplained

log = logging.getLogger(__name__)

STAGE_OBJECT = (
    "INSERT INTO stage_objects (snapshot_id, scope_id, uuid, object_type, slug, name, "
    "is_private, parent_uuid) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
STAGE_GRANT = (
    "INSERT INTO stage_grants (snapshot_id, scope_id, subject_id, object_id, grant_kind, "
    "permission_text) VALUES (?, ?, ?, ?, ?, ?)"
)
#: The uuids first seen tonight, with the ids the writer gave them in ``names``.
STAGE_NAME = "INSERT INTO stage_names (snapshot_id, id, uuid) VALUES (?, ?, ?)"
STAGE_USER = (
    "INSERT INTO stage_users (snapshot_id, scope_id, uuid, display_name, nickname, "
    "account_id) VALUES (?, ?, ?, ?, ?, ?)"
)
STAGE_OBSERVATION = (
    "INSERT INTO stage_observations (snapshot_id, scope_id, outcome, detail, requests, delta) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
STAGE_GONE = "INSERT INTO stage_gone (snapshot_id, scope_id, grant_id) VALUES (?, ?, ?)"
STAGE_TABLES = (
    "stage_observations", "stage_objects", "stage_grants", "stage_users", "stage_gone",
    "stage_names",
)
STAGE_ORDER = (
    STAGE_OBJECT, STAGE_GRANT, STAGE_USER, STAGE_GONE, STAGE_NAME, STAGE_OBSERVATION
)
#: A listing's open grants, loaded to stage only what changed (``KnownGrants``): each with its key
#: (``known_grants.grant_key``), in the order of their key, as the open versions' index holds them.
OPEN_GRANTS = (
    "SELECT id, subject_id << 32 | object_id, permission FROM grant_versions "
    "WHERE scope_id = :c AND valid_to IS NULL ORDER BY subject_id, object_id"
)
#: Every uuid's id, loaded when a run begins: the writer stages grants by id.
NAME_IDS = "SELECT uuid, id FROM names"
LOAD_PART_ROWS = 5000
REGISTER_SCOPE = (
    "INSERT OR IGNORE INTO scopes (kind, workspace_uuid, object_type, object_uuid, "
    "parent_scope_id, label, source) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
RELABEL_SCOPE = "UPDATE scopes SET label = ? WHERE kind = ? AND object_uuid = ?"
FIND_SCOPES = text(
    "SELECT kind, object_uuid, id FROM scopes WHERE kind IN :kinds AND object_uuid IN :uuids"
).bindparams(bindparam("kinds", expanding=True), bindparam("uuids", expanding=True))
#: Staged rows written per transaction (about 50 pages of a permissions listing), or fewer when
#: they have waited this long.
STAGE_BATCH_ROWS = 5000
STAGE_FLUSH_SECONDS = 2.0


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class RunCounters:
    """What the HTTP side counted during a run, stored on the snapshot row."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    wait_seconds: float = 0.0  # waiting on the client-side rate budget
    backoff_seconds: float = 0.0  # sleeping after 5xx, timeouts and 429s


@dataclass(frozen=True)
class SnapshotSummary:
    """How a completed snapshot ended: scopes by outcome (closures of deleted objects apart)."""

    snapshot_id: int
    status: str
    outcomes: dict[str, int]
    closed: int = 0

    @property
    def has_gaps(self) -> bool:
        """Some scope could not be read. Scopes the plan left for a later night are no gap:
        rationing them is how a run stays within the rate limit."""
        return any(self.outcomes.get(o, 0) for o in GAP_OUTCOMES if o != Outcome.SKIPPED)


#: Keys of the staged rows, built when the merge starts (by sorting: staged rows are appended in
#: page order, and a key kept up to date row by row rewrote about a page per row), dropped with the
#: staged rows. Of a row staged twice (paging drift) the last one counts.
GRANTS_KEY = (
    # Covering: a scope read for the first time is inserted in this order straight from the key
    # (``INSERT_FRESH_GRANTS``), without reading the stage's rows one by one.
    "CREATE INDEX IF NOT EXISTS stage.stage_grants_key ON stage_grants (scope_id, subject_id, "
    "object_id, grant_kind, permission_text, snapshot_id)",
    """DELETE FROM stage_grants WHERE rowid IN (
         SELECT st.rowid FROM stage_grants st JOIN (
           SELECT scope_id, subject_id, object_id, max(rowid) AS kept FROM stage_grants
            GROUP BY scope_id, subject_id, object_id HAVING count(*) > 1) twice
           ON st.scope_id = twice.scope_id AND st.subject_id = twice.subject_id
          AND st.object_id = twice.object_id AND st.rowid <> twice.kept)""",
)
STAGE_KEYS = (
    # What a run marked aborted staged (it may have gone on writing) is no part of this one.
    "DELETE FROM stage_grants WHERE snapshot_id <> :s",
    "DELETE FROM stage_objects WHERE snapshot_id <> :s",
    "DELETE FROM stage_users WHERE snapshot_id <> :s",
    "DELETE FROM stage_names WHERE snapshot_id <> :s",
    *GRANTS_KEY,
    "CREATE INDEX IF NOT EXISTS stage.stage_objects_key ON stage_objects (scope_id, uuid)",
    """DELETE FROM stage_objects WHERE rowid IN (
         SELECT st.rowid FROM stage_objects st JOIN (
           SELECT scope_id, uuid, max(rowid) AS kept FROM stage_objects
            GROUP BY scope_id, uuid HAVING count(*) > 1) twice
           ON st.scope_id = twice.scope_id AND st.uuid = twice.uuid AND st.rowid <> twice.kept)""",
)
DROP_STAGE_KEYS = (
    "DROP INDEX IF EXISTS stage.stage_grants_key",
    "DROP INDEX IF EXISTS stage.stage_objects_key",
)

#: The scopes read ok tonight with no open grant (read for the first time, or their grants all
#: closed): their staged rows are new versions one and all, found without asking ``grant_versions``.
FRESH_SCOPES = (
    "DROP TABLE IF EXISTS temp.merge_fresh_scopes",
    """CREATE TEMP TABLE merge_fresh_scopes AS
       SELECT so.scope_id FROM stage_observations so
        WHERE so.snapshot_id = :s AND so.outcome = 'ok'
          AND NOT EXISTS (SELECT 1 FROM grant_versions g WHERE g.scope_id = so.scope_id
                             AND g.valid_to IS NULL)""",
)
#: Their grants, inserted in the order of ``ix_grant_versions_open`` (read from the stage's
#: covering key), so each row lands at the end of that index. An INSERT whose SELECT reads
#: ``grant_versions`` first copies every row it inserts to a temporary table (SQLite guards
#: against reading what it writes): at ``huge``'s first night, 4.9 million rows, 14.5 s; this
#: way 5.8 s.
INSERT_FRESH_GRANTS = """INSERT INTO grant_versions (scope_id, subject_id, object_id,
                           grant_kind, permission_text, valid_from, valid_to)
       SELECT st.scope_id, st.subject_id, st.object_id, st.grant_kind, st.permission_text, :s,
              NULL
         FROM stage_grants st
        WHERE st.snapshot_id = :s
          AND st.scope_id IN (SELECT scope_id FROM temp.merge_fresh_scopes)
        ORDER BY st.scope_id, st.subject_id, st.object_id"""
#: The same where ``grant_versions`` has no open version at all (a first night): every scope read
#: ok is fresh, and no statement looks a staged grant up by its key, so none is built. The rows are
#: sorted as they are inserted, the last one staged of each key first; ``ix_grant_versions_open``
#: keeps it and ignores the others. At ``huge`` the key took 6 s and 1.1 GB of the stage file to
#: build, and the removal of the repeats 2 s more. Inserted in stage order and indexed after, the
#: merge took 2 to 5 s less, but the table's rows lay in the order pages came: a question that
#: reads open grants through ``ix_grant_versions_open`` (the cookbook's repositories without an
#: admin, say) then read a page of the table for every few rows, three times as long.
INSERT_FRESH_GRANTS_UNKEYED = (
    INSERT_FRESH_GRANTS.replace("INSERT INTO", "INSERT OR IGNORE INTO", 1) + ", st.rowid DESC"
)
#: The same, sorted by one integer that orders as the three ids do, where they fit in 63 bits
#: (``_packed_key_shifts``): SQLite's sorter compares a first key that is an integer by value,
#: and goes on to the others only on a tie, which (scope, subject, object) one after the other
#: met on most rows. At ``huge``'s first night the sort took 3.8 s instead of 4.5 s. The ids of
#: ``huge`` take 52 bits: eight times as many still fit, ten times not.
INSERT_FRESH_GRANTS_PACKED = INSERT_FRESH_GRANTS_UNKEYED.replace(
    "ORDER BY st.scope_id, st.subject_id, st.object_id,",
    "ORDER BY (st.scope_id << :scope_shift) | (st.subject_id << :subject_shift) | st.object_id,",
)
#: The highest id of a scope, and of a name (a grant's subject or object).
HIGHEST_IDS = (
    "SELECT (SELECT coalesce(max(id), 0) FROM scopes), "
    "max((SELECT coalesce(max(id), 0) FROM names), "
    "(SELECT coalesce(max(id), 0) FROM stage_names))"
)
KEY_BITS = 63

#: The open versions that a listing staged as what changed shows with another permission. With
#: no open grant anywhere it finds none, and without the stage's key it reads every staged row
#: to say so (1.9 s of a first night at ``huge``): the merge then skips it.
CLOSE_CHANGED_PERMISSIONS = """UPDATE grant_versions SET valid_to = :s
        WHERE id IN (SELECT g.id FROM stage_grants st
                       JOIN stage_observations so ON so.snapshot_id = st.snapshot_id
                                                 AND so.scope_id = st.scope_id
                                                 AND so.outcome = 'ok' AND so.delta
                       JOIN grant_versions g ON g.scope_id = st.scope_id
                                    AND g.subject_id = st.subject_id
                                    AND g.object_id = st.object_id AND g.valid_to IS NULL
                      WHERE st.snapshot_id = :s
                        AND (g.grant_kind <> st.grant_kind
                             OR g.permission_text IS NOT st.permission_text))"""

#: The snapshot before ``:s``, whatever its status: a run goes on only from it.
PREVIOUS_SNAPSHOT = "SELECT max(id) FROM snapshots WHERE id < :s"

#: Tonight's reads join the runs (``schema.observation_runs``): a read goes on with its scope's
#: latest run of the same outcome if that run ended at the snapshot just before (a snapshot that
#: failed or died between them breaks it) with the same detail and requests, and is not a
#: closure; otherwise it opens a run. Each scope's latest run is one look-up of the key.
MERGE_RUNS = (
    "DROP TABLE IF EXISTS temp.merge_runs",
    f"""CREATE TEMP TABLE merge_runs AS
       SELECT so.scope_id, so.outcome, so.detail, so.requests, r.first_snapshot_id AS carried
         FROM stage_observations so
         LEFT JOIN observation_runs r
           ON r.scope_id = so.scope_id AND r.outcome = so.outcome
          AND r.first_snapshot_id = {latest_run_start("so.scope_id", "so.outcome")}
          AND r.last_snapshot_id = ({PREVIOUS_SNAPSHOT}) AND r.closure IS NULL
          AND r.detail IS so.detail AND r.requests = so.requests
        WHERE so.snapshot_id = :s""",
    """UPDATE observation_runs SET last_snapshot_id = :s
        WHERE (scope_id, outcome, first_snapshot_id) IN
              (SELECT scope_id, outcome, carried FROM temp.merge_runs WHERE carried IS NOT NULL)""",
    """INSERT INTO observation_runs (scope_id, outcome, first_snapshot_id, last_snapshot_id,
                                    detail, requests)
       SELECT scope_id, outcome, :s, :s, detail, requests FROM temp.merge_runs
        WHERE carried IS NULL ORDER BY scope_id, outcome""",
    "DROP TABLE temp.merge_runs",
)
ANY_RUN = "SELECT EXISTS (SELECT 1 FROM observation_runs)"
#: A database's first reads, with no run to carry on: each opens one, in one statement where
#: ``MERGE_RUNS`` writes them all twice (210,000 at ``huge``).
FIRST_RUNS = """INSERT INTO observation_runs (scope_id, outcome, first_snapshot_id,
                                  last_snapshot_id, detail, requests)
    SELECT scope_id, outcome, :s, :s, detail, requests FROM stage_observations
     WHERE snapshot_id = :s ORDER BY scope_id, outcome"""

#: Closing the child scopes of the objects closed tonight, and their facts: skipped when the
#: merge closed no object (every first night, most nights), which each statement would otherwise
#: find by reading its table (at ``huge``'s first night, 1 s in all).
CLOSE_WITH_OBJECTS = (
    # A child scope (say, a repository's explicit grants) whose object left an ok listing of its
    # parent in this snapshot is closed here: its facts end with the object (closure 'deleted'),
    # even if this run read the child before the object went. Only a scope observed ok (before
    # or now) has facts to close; whether some run (perhaps one that crashed) merely attempted
    # it must not change what a diff says. (``+o.valid_to``: the object is found by its uuid;
    # by ``valid_to``, every child scope scanned every object closed tonight, and a night that
    # closed 100,000 repositories never ended.) The scopes are gathered once:
    # ``observation_runs`` is kept by scope, and asked for the closures of one snapshot it would
    # read every row.
    "DROP TABLE IF EXISTS temp.merge_closed_scopes",
    """CREATE TEMP TABLE merge_closed_scopes AS
       SELECT c.id AS scope_id, c.object_type
         FROM scopes c
        WHERE c.parent_scope_id IN (SELECT scope_id FROM stage_observations
                                     WHERE snapshot_id = :s AND outcome = 'ok')
          AND (EXISTS (SELECT 1 FROM observation_runs o WHERE o.scope_id = c.id
                          AND o.outcome = 'ok' AND o.first_snapshot_id < :s)
               OR EXISTS (SELECT 1 FROM stage_observations so WHERE so.snapshot_id = :s
                             AND so.scope_id = c.id AND so.outcome = 'ok'))
          AND EXISTS (SELECT 1 FROM objects o WHERE o.scope_id = c.parent_scope_id
                         AND o.uuid = c.object_uuid AND +o.valid_to = :s)
          AND NOT EXISTS (SELECT 1 FROM objects o WHERE o.scope_id = c.parent_scope_id
                             AND o.uuid = c.object_uuid AND o.valid_to IS NULL)""",
    # The closure replaces what the scope's read tonight said, if it had one: a run it opened
    # goes, a run it carried on ends again where it had ended. The closure is a run of its own.
    f"""DELETE FROM observation_runs
        WHERE scope_id IN (SELECT scope_id FROM temp.merge_closed_scopes)
          AND outcome IN {EVERY_OUTCOME} AND first_snapshot_id = :s""",
    f"""UPDATE observation_runs SET last_snapshot_id = ({PREVIOUS_SNAPSHOT})
        WHERE (scope_id, outcome, first_snapshot_id) IN (
              SELECT c.scope_id, v.outcome, {latest_run_start("c.scope_id", "v.outcome")}
                FROM temp.merge_closed_scopes c
               CROSS JOIN (SELECT column1 AS outcome FROM (VALUES {OUTCOME_ROWS})) v)
          AND last_snapshot_id = :s""",
    """INSERT INTO observation_runs (scope_id, outcome, first_snapshot_id, last_snapshot_id,
                                    detail, closure)
       SELECT scope_id, 'ok', :s, :s, 'deleted with its ' || object_type, 'deleted'
         FROM temp.merge_closed_scopes""",
    """DELETE FROM stage_grants
        WHERE scope_id IN (SELECT scope_id FROM temp.merge_closed_scopes)""",
    """DELETE FROM stage_objects
        WHERE scope_id IN (SELECT scope_id FROM temp.merge_closed_scopes)""",
    """UPDATE grant_versions SET valid_to = :s
        WHERE valid_to IS NULL
          AND scope_id IN (SELECT scope_id FROM temp.merge_closed_scopes)""",
    """UPDATE objects SET valid_to = :s
        WHERE valid_to IS NULL
          AND scope_id IN (SELECT scope_id FROM temp.merge_closed_scopes)""",
    # temp.merge_closed_scopes stays until the snapshot's reads are counted (``CLOSED_OUTCOMES``).
)

# Versions of ``objects`` and ``grant_versions`` are closed when an ok observation of their scope
# no longer shows them with the same values, and opened for staged rows that have no open version.
MERGE_STATEMENTS = (
    # The uuids first seen tonight, named by themselves until a label or a user names them
    # (``sql.REFRESH_LABELS``): every grant's subject and object has its row in ``names``.
    """INSERT INTO names (id, uuid, name)
       SELECT id, uuid, uuid FROM stage_names WHERE snapshot_id = :s""",
    """UPDATE objects SET valid_to = :s
        WHERE valid_to IS NULL
          AND scope_id IN (SELECT scope_id FROM stage_observations
                            WHERE snapshot_id = :s AND outcome = 'ok')
          AND NOT EXISTS (SELECT 1 FROM stage_objects st
                           WHERE st.snapshot_id = :s AND st.scope_id = objects.scope_id
                             AND st.uuid = objects.uuid
                             AND st.object_type = objects.object_type
                             AND st.slug = objects.slug AND st.name = objects.name
                             AND st.is_private IS objects.is_private
                             AND st.parent_uuid IS objects.parent_uuid)""",
    """INSERT INTO objects (scope_id, uuid, object_type, slug, name, is_private, parent_uuid,
                            valid_from, valid_to)
       SELECT st.scope_id, st.uuid, st.object_type, st.slug, st.name, st.is_private,
              st.parent_uuid, :s, NULL
         FROM stage_objects st
         JOIN stage_observations so ON so.snapshot_id = st.snapshot_id
                                   AND so.scope_id = st.scope_id AND so.outcome = 'ok'
        WHERE st.snapshot_id = :s
          AND NOT EXISTS (SELECT 1 FROM objects o WHERE o.valid_to IS NULL
                             AND o.scope_id = st.scope_id AND o.uuid = st.uuid)""",
    *CLOSE_WITH_OBJECTS,
    # A scope staged whole: its open versions that no staged row shows as they are.
    """UPDATE grant_versions SET valid_to = :s
        WHERE valid_to IS NULL
          AND scope_id IN (SELECT scope_id FROM stage_observations
                            WHERE snapshot_id = :s AND outcome = 'ok' AND NOT delta)
          AND NOT EXISTS (SELECT 1 FROM stage_grants st
                           WHERE st.snapshot_id = :s AND st.scope_id = grant_versions.scope_id
                             AND st.subject_id = grant_versions.subject_id
                             AND st.object_id = grant_versions.object_id
                             AND st.grant_kind = grant_versions.grant_kind
                             AND st.permission_text IS grant_versions.permission_text)""",
    # A scope staged as what changed (``KnownGrants``): the versions no row showed, and those a
    # staged row shows with another permission. Read from the stage, not from every open grant.
    """UPDATE grant_versions SET valid_to = :s
        WHERE valid_to IS NULL
          AND id IN (SELECT sg.grant_id FROM stage_gone sg
                       JOIN stage_observations so ON so.snapshot_id = sg.snapshot_id
                                                 AND so.scope_id = sg.scope_id
                                                 AND so.outcome = 'ok' AND so.delta
                      WHERE sg.snapshot_id = :s)""",
    CLOSE_CHANGED_PERMISSIONS,
    *FRESH_SCOPES,
    INSERT_FRESH_GRANTS,
    """INSERT INTO grant_versions (scope_id, subject_id, object_id, grant_kind,
                                   permission_text, valid_from, valid_to)
       SELECT st.scope_id, st.subject_id, st.object_id, st.grant_kind, st.permission_text, :s,
              NULL
         FROM stage_observations so
        CROSS JOIN stage_grants st ON st.snapshot_id = so.snapshot_id AND st.scope_id = so.scope_id
        WHERE so.snapshot_id = :s AND so.outcome = 'ok'
          AND so.scope_id NOT IN (SELECT scope_id FROM temp.merge_fresh_scopes)
          AND NOT EXISTS (SELECT 1 FROM grant_versions g WHERE g.valid_to IS NULL
                             AND g.scope_id = st.scope_id AND g.subject_id = st.subject_id
                             AND g.object_id = st.object_id)""",
    "DROP TABLE temp.merge_fresh_scopes",
    # Names only from scopes read whole: a failed scope's pages may be of another moment.
    """INSERT INTO users (uuid, display_name, nickname, account_id, last_seen)
       SELECT st.uuid, st.display_name, st.nickname, st.account_id, :s FROM stage_users st
         JOIN stage_observations so ON so.snapshot_id = st.snapshot_id
                                   AND so.scope_id = st.scope_id AND so.outcome = 'ok'
        WHERE st.snapshot_id = :s
       ON CONFLICT (uuid) DO UPDATE SET display_name = excluded.display_name,
              nickname = excluded.nickname, account_id = excluded.account_id,
              last_seen = excluded.last_seen""",
)


#: The reads of snapshot ``:s`` by outcome, closures apart, as the merge kept them: its staged
#: reads, every one of which the merge kept as it was (at ``huge``, 0.03 s where asking each
#: scope's runs took 0.5 s), but for a merge that closed objects (``CLOSE_WITH_OBJECTS``): the
#: closure of a scope takes the place of its read, and is counted apart.
STAGED_OUTCOMES = """SELECT outcome, 0, count(*) FROM stage_observations WHERE snapshot_id = :s
 GROUP BY 1"""
CLOSED_OUTCOMES = """SELECT outcome, 0, count(*) FROM stage_observations
 WHERE snapshot_id = :s AND scope_id NOT IN (SELECT scope_id FROM temp.merge_closed_scopes)
 GROUP BY 1
 UNION ALL
SELECT 'ok', 1, count(*) FROM temp.merge_closed_scopes"""
DROP_CLOSED_SCOPES = "DROP TABLE temp.merge_closed_scopes"

#: Why a run is marked aborted by the next one: its process ended without saying.
DEAD_RUN_MESSAGE = (
    "the run ended before it completed (its process was killed, or the machine stopped); "
    "nothing of it was merged"
)
#: Every row in the stage (an aborted run's too, removed as the merge starts): counted whole,
#: from each table's B-tree, not row by row (0.3 s at ``huge`` for a line of the log).
STAGED_ROWS = (
    "SELECT (SELECT count(*) FROM stage_objects) + (SELECT count(*) FROM stage_grants)"
    " + (SELECT count(*) FROM stage_users)"
)


async def merge_staged(
    conn: AsyncConnection, snapshot_id: int, staged: StagedUnexplained | None = None
) -> bool:
    """Merge the staged rows of ``snapshot_id``'s ok observations into the versioned facts, bring
    the effective access no source explains up to date, log what changed since the complete
    snapshot before it, and refresh the labels, the names and the small tables' statistics,
    inside the caller's transaction. With ``staged`` (a first snapshot), the stage has been made
    ready (``prepare_stage``) and the effective access no source explains is being found
    beside. Returns whether the merge closed an object: the closures of the scopes under it
    are then left in ``temp.merge_closed_scopes`` for ``CLOSED_OUTCOMES``."""
    bulk = await _is_bulk(conn)
    if bulk:  # a nightly merge changes a few percent and keeps the stage's smaller cache
        await conn.execute(text(f"PRAGMA cache_size=-{MERGE_CACHE_KIB}"))
    keyed = await _any_open_grant(conn)
    try:
        if staged is None:
            await prepare_stage(conn, snapshot_id, keyed=keyed)
        grants_aside = await _set_aside(conn, GRANTS_ASIDE) if bulk else []
        names_aside = await _set_aside(conn, NAMES_ASIDE) if bulk else []
        objects_closed: bool | None = None  # known once the objects are merged
        any_run = (await conn.execute(text(ANY_RUN))).scalar_one()
        for statement in MERGE_RUNS if any_run else (FIRST_RUNS,):
            await conn.execute(text(statement), {"s": snapshot_id})
        for statement in MERGE_STATEMENTS:
            if not keyed and statement is CLOSE_CHANGED_PERMISSIONS:
                continue
            if statement in CLOSE_WITH_OBJECTS:
                if objects_closed is None:
                    objects_closed = await _any_object_closed(conn, snapshot_id)
                if not objects_closed:
                    continue
            params: dict[str, int] = {"s": snapshot_id}
            if not keyed and statement is INSERT_FRESH_GRANTS:
                shifts = await _packed_key_shifts(conn)
                statement = INSERT_FRESH_GRANTS_UNKEYED if shifts is None else (
                    INSERT_FRESH_GRANTS_PACKED)  # fmt: skip
                params.update(shifts or {})
            await conn.execute(text(statement), params)
        for statement in grants_aside:
            await conn.execute(text(statement))
        await update_unexplained(conn, snapshot_id, whole=bulk, staged=staged)
        await log_changes(conn, snapshot_id)
        for statement in REFRESH_LABELS:
            await conn.execute(text(statement), {"s": snapshot_id})
        for statement in names_aside:
            await conn.execute(text(statement))
        for statement in ANALYZE_SMALL:
            await conn.execute(text(statement), {"s": snapshot_id})
    finally:
        await conn.execute(text(f"PRAGMA cache_size=-{CACHE_KIB}"))
    return bool(objects_closed)


async def prepare_stage(conn: AsyncConnection, snapshot_id: int, *, keyed: bool) -> None:
    """Drop what another run staged, and key the stage for the merge (``STAGE_KEYS``): the grants
    only if ``keyed`` (some grant is open)."""
    for statement in STAGE_KEYS:
        if keyed or statement not in GRANTS_KEY:
            await conn.execute(text(statement), {"s": snapshot_id})


#: Whether the database holds no fact yet: its first merge's facts are then what it staged.
NO_FACTS = (
    "SELECT NOT EXISTS (SELECT 1 FROM grant_versions) AND NOT EXISTS (SELECT 1 FROM objects) "
    "AND NOT EXISTS (SELECT 1 FROM names)"
)


#: The indexes of ``grant_versions`` that no merge statement looks rows up by, and that new rows
#: land all over. ``ix_grant_versions_valid_from`` stays: every row a merge inserts goes at its
#: end (the snapshot's id is the highest, the row's id too), which costs less than sorting it
#: anew (at ``huge``'s first merge, 0.7 s against 1.05 s, for pages 88 % full, not 100 %).
GRANTS_ASIDE = ("ix_grant_versions_subject", "ix_grant_versions_object")
#: The indexes of names and labels by name, which a first merge rewrites two or three times
#: (a uuid is named by itself, then by its label or its user): built after the labels are (at
#: ``huge``'s first merge, 0.5 s less).
NAMES_ASIDE = ("ix_names_name", "ix_labels_label")
#: Fewer staged grants than this never set indexes aside: it would not pay.
BULK_MIN_ROWS = 10_000


async def _any_open_grant(conn: AsyncConnection) -> bool:
    """Whether ``grant_versions`` has an open version: if not, every scope is read for the first
    time (``INSERT_FRESH_GRANTS_UNKEYED``)."""
    found = await conn.execute(
        text("SELECT EXISTS (SELECT 1 FROM grant_versions WHERE valid_to IS NULL)")
    )
    return bool(found.scalar_one())


async def _packed_key_shifts(conn: AsyncConnection) -> dict[str, int] | None:
    """The shifts that pack a staged grant's (scope, subject, object) into one integer of
    ``KEY_BITS`` bits (``INSERT_FRESH_GRANTS_PACKED``); None if the ids are too large for it."""
    highest = (await conn.execute(text(HIGHEST_IDS))).one()
    scope_bits, name_bits = (int(n).bit_length() for n in highest)
    if scope_bits + 2 * name_bits > KEY_BITS:
        return None
    return {"scope_shift": 2 * name_bits, "subject_shift": name_bits}


async def _any_object_closed(conn: AsyncConnection, snapshot_id: int) -> bool:
    """Whether the merge of ``snapshot_id`` closed a version of an object (``CLOSE_WITH_OBJECTS``
    has nothing to do otherwise)."""
    found = await conn.execute(
        text("SELECT EXISTS (SELECT 1 FROM objects WHERE valid_to = :s)"), {"s": snapshot_id}
    )
    return bool(found.scalar_one())


async def _is_bulk(conn: AsyncConnection) -> bool:
    """Whether the merge is about to add more grants than are open: a first snapshot, or a new
    large workspace."""
    staged = (await conn.execute(text("SELECT count(*) FROM stage_grants"))).scalar_one()
    if staged < BULK_MIN_ROWS:
        return False
    # Counted no further than ``staged``: a nightly merge of a large org stops there.
    open_ = (
        await conn.execute(
            text("SELECT count(*) FROM (SELECT 1 FROM grant_versions WHERE valid_to IS NULL "
                 "LIMIT :n)"),
            {"n": staged},
        )
    ).scalar_one()
    if staged <= open_:
        return False
    log.info("a bulk merge: %d rows staged, %d open", staged, open_)
    return True


async def _set_aside(conn: AsyncConnection, indexes: tuple[str, ...]) -> list[str]:
    """For a bulk merge, drop ``indexes`` (those that no merge statement reads until they are
    built again), and return the statements that build them again once the rows are in. Kept up
    to date row by row, each random uuid landed on a page of its own: at ``huge`` the first
    merge wrote 11 GB; built once, by sorting, they cost their size."""
    found = await conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
    definitions = {str(name): str(sql) for name, sql in found if name in indexes}
    for name in definitions:
        await conn.execute(text(f"DROP INDEX {name}"))
    log.info("building %s after the merge", ", ".join(definitions) or "no index")
    return list(definitions.values())


async def log_changes(conn: AsyncConnection, snapshot_id: int) -> None:
    """Write the change log of ``snapshot_id`` (merged, complete or about to be): its changes
    since the complete snapshot before it, and the scopes it read for the first time."""
    pair = {"b": snapshot_id}
    pair["a"] = int((await conn.execute(text(PREVIOUS_COMPLETE), pair)).scalar_one())
    if pair["a"]:  # before the first, every row is a baseline
        await conn.execute(text(LOG_CHANGES), pair)
    await conn.execute(text(BASELINE_SCOPES), pair)


class SnapshotWriter:
    """Writes one snapshot. Use ``begin`` first, ``complete`` or ``fail`` last."""

    def __init__(
        self, engine: AsyncEngine, *, tool_version: str, clock: Callable[[], str] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self._engine = engine
        self._tool_version = tool_version
        self._clock = clock
        self._monotonic = monotonic
        self._flushed_at = monotonic()
        # The ids of the listings (scopes without a parent), asked for again by their children;
        # a per-object scope is asked for once, and not kept (a large organisation has 200,000).
        self._scope_ids: dict[tuple[str, str], int] = {}
        self._listing_ids: set[int] = set()
        # Each listing's open grants, loaded when its first page arrives (``KnownGrants``); None
        # where the listing is staged whole.
        self._known: dict[int, asyncio.Task[KnownGrants | None]] = {}
        self._load_lock = asyncio.Lock()
        # Fetchers run concurrently; SQLite takes one writer at a time, so writes queue here.
        self._write_lock = asyncio.Lock()
        self._finished: set[int] = set()
        # The users each scope in progress has named: a listing names a user on every page that
        # holds one of theirs (at huge, 3.4 million repeats a night), and one row is enough.
        # Held by id: the ids are the name map's own objects, where a uuid took 90 bytes more.
        self._names_seen: dict[int, set[int]] = {}
        # The users a listing that ended ok has named tonight: every listing that holds one of
        # theirs names them (at ``huge``, 351,000 rows for 20,000 users, which the merge read
        # again, 0.4 s), and the first that is kept is enough. A listing still going or failed
        # keeps nothing, so the others name them until one is kept.
        self._users_kept: set[int] = set()
        # Staged rows wait here until a batch is full: one transaction per page rewrote the same
        # index pages into the WAL again and again, and staging fell behind the fetchers.
        self._pending: dict[str, list[tuple[object, ...]]] = {}
        self._take_pending()
        # Every uuid's id in ``names`` (loaded by ``begin``): grants are staged and kept by id.
        self._name_ids: dict[str, int] = {}
        self._next_name_id = 1
        self.snapshot_id = 0
        self.merged = False

    async def begin(self) -> int:
        """Mark dead runs aborted, empty the stage, and open a ``running`` snapshot."""
        async with self._engine.begin() as conn:
            await self._drop_staged(conn)
            dead = (
                (
                    await conn.execute(
                        select(schema.snapshots.c.id).where(schema.snapshots.c.status == "running")
                    )
                )
                .scalars()
                .all()
            )
            for snapshot_id in dead:
                log.warning("snapshot %d did not finish (its process was killed, or the machine "
                            "stopped); marking it aborted: nothing of it was merged", snapshot_id)
            if dead:
                await conn.execute(
                    update(schema.snapshots)
                    .where(schema.snapshots.c.id.in_(dead))
                    .values(status="aborted", message=DEAD_RUN_MESSAGE)
                )
            result = await conn.execute(
                insert(schema.snapshots).values(
                    started_at=self._clock(), status="running", tool_version=self._tool_version
                )
            )
            pk = result.inserted_primary_key
            assert pk is not None
            self.snapshot_id = int(pk[0])
            names = await conn.execute(text(NAME_IDS))
            # Interned: the plan holds the uuids of repositories and projects interned too, and
            # at ``huge`` a second copy of each took 9 MB.
            self._name_ids = {intern(str(uuid)): int(name_id) for uuid, name_id in names}
        self._next_name_id = max(self._name_ids.values(), default=0) + 1
        return self.snapshot_id

    def _name_id(self, uuid: str) -> int:
        """The id of ``uuid`` in ``names``. A uuid first seen gets the next one, staged with it
        (``stage_names``): the merge writes it before the grants that refer to it."""
        found = self._name_ids.get(uuid)
        if found is None:
            found = self._name_ids[uuid] = self._next_name_id
            self._next_name_id += 1
            self._pending[STAGE_NAME].append((self.snapshot_id, found, uuid))
        return found

    async def scope_id(self, scope: ScopeRef) -> int:
        """The id of ``scope`` (and of its parents), registering them on first sight."""
        return (await self.scope_ids([scope]))[0]

    async def scope_ids(self, scopes: Sequence[ScopeRef]) -> list[int]:
        """The ids of ``scopes`` (and of their parents), registering new ones in one transaction.

        A scope's label (its endpoint) is brought up to date: a renamed repository keeps its id.
        """
        parents = [p for p in dict.fromkeys(s.parent for s in scopes) if p is not None]
        parent_ids = {}
        if parents:
            parent_ids = dict(zip(parents, await self.scope_ids(parents), strict=True))
        known = self._scope_ids
        new = [s for s in dict.fromkeys(scopes) if (s.kind.value, s.object_uuid) not in known]
        found = await self._register(new, parent_ids) if new else {}
        return [known.get(key) or found[key] for key in ((s.kind.value, s.object_uuid)
                                                         for s in scopes)]  # fmt: skip

    async def _register(
        self, scopes: list[ScopeRef], parent_ids: dict[ScopeRef, int]
    ) -> dict[tuple[str, str], int]:
        """Register ``scopes`` (known ones get their label brought up to date); their ids."""
        rows = [
            (s.kind.value, s.workspace_uuid, s.object_type, s.object_uuid,
             None if s.parent is None else parent_ids[s.parent], s.label, s.source)
            for s in scopes
        ]  # fmt: skip
        async with self._write_lock, self._engine.begin() as conn:
            await conn.exec_driver_sql(REGISTER_SCOPE, rows)
            await conn.exec_driver_sql(
                RELABEL_SCOPE, [(s.label, s.kind.value, s.object_uuid) for s in scopes]
            )
            wanted = {(s.kind.value, s.object_uuid) for s in scopes}
            # Looked up by the (kind, object_uuid) index, not by reading every scope: a large
            # organisation has tens of thousands.
            found = await conn.execute(
                FIND_SCOPES,
                {"kinds": sorted({k for k, _ in wanted}), "uuids": sorted({u for _, u in wanted})},
            )
            ids = {}
            for kind, object_uuid, scope_id in found:
                key = (str(kind), str(object_uuid))
                if key in wanted:
                    ids[key] = int(scope_id)
        for s in scopes:
            if s.parent is None:
                scope_id = ids[(s.kind.value, s.object_uuid)]
                self._scope_ids[(s.kind.value, s.object_uuid)] = scope_id
                self._listing_ids.add(scope_id)
        return ids

    async def stage(self, scope_id: int, records: Iterable[Record]) -> None:
        """Stage one page of a scope's records. A record seen twice (paging drift) counts once.

        Rows are written in batches of ``STAGE_BATCH_ROWS``, and whenever a scope is finished,
        never held whole.
        """
        s = self.snapshot_id
        known = await self._known_grants(scope_id) if scope_id in self._listing_ids else None
        # Taken after the wait: a flush meanwhile replaced the lists (rows appended to the old
        # ones were lost).
        objects, grants, users = (self._pending[sql] for sql in STAGE_ORDER[:3])
        name_id = self._name_id
        for r in records:
            if isinstance(r, ObjectRecord):
                objects.append(
                    (s, scope_id, r.uuid, r.object_type, r.slug, r.name, r.is_private,
                     r.parent_uuid)
                )
            elif isinstance(r, GrantRecord):
                subject_id, object_id = name_id(r.subject_uuid), name_id(r.object_uuid)
                if known is not None and known.unchanged(subject_id, object_id, r.permission):
                    continue
                kind = grant_kind(r.subject_type, r.object_type, r.permission)
                grants.append((s, scope_id, subject_id, object_id, *kind))
            elif isinstance(r, UserRecord):
                seen = self._names_seen.setdefault(scope_id, set())
                user_id = name_id(r.uuid)
                # Every page names its users again, and every listing.
                if user_id not in seen and user_id not in self._users_kept:
                    seen.add(user_id)
                    users.append((s, scope_id, r.uuid, r.display_name, r.nickname, r.account_id))
        await self._flush_if_due()

    async def _known_grants(self, scope_id: int) -> KnownGrants | None:
        """The open grants of listing ``scope_id``, loaded once (pages of a listing arrive
        concurrently: the first one loads, the others wait for it)."""
        task = self._known.get(scope_id)
        if task is None:
            task = self._known[scope_id] = asyncio.ensure_future(self._load_known(scope_id))
        # Shielded: a page given up while it waits must not cancel the load under the others.
        return await asyncio.shield(task)

    async def _load_known(self, scope_id: int) -> KnownGrants | None:
        """One listing at a time, read in parts: the listings of several workspaces (up to
        100,000 rows each at ``huge``) start together."""
        known = KnownGrants()
        async with self._load_lock, self._engine.connect() as conn:
            # Read through the driver: plain tuples, made in its thread. SQLAlchemy's rows were
            # made on the event loop, which stalled the night's first requests while 5.2 million
            # open grants loaded at ``huge`` (970,000 rows: 1.6 s that way, 0.6 s this way).
            driver = (await conn.get_raw_connection()).driver_connection
            if driver is None:
                return None  # no driver to read through: staged whole, which is always right
            cursor = await driver.execute(OPEN_GRANTS, {"c": scope_id})
            try:
                while part := await cursor.fetchmany(LOAD_PART_ROWS):
                    # 100,000 rows take a few hundredths of a second: not on the event loop,
                    # which goes on fetching meanwhile.
                    await asyncio.to_thread(known.extend, part)
            except ValueError:
                return None  # too many distinct permissions to code: staged whole
            finally:
                await cursor.close()
        if not len(known):
            return None  # nothing open (a first night): staged whole, with no digest to take
        return await asyncio.to_thread(known.ready)

    async def _flush_if_due(self) -> None:
        """Write what waits once it makes a batch, or once it has waited ``STAGE_FLUSH_SECONDS``
        (a slow night's pages reach the file as they come, not all at its end)."""
        waiting = sum(len(rows) for rows in self._pending.values())
        due = self._monotonic() - self._flushed_at >= STAGE_FLUSH_SECONDS
        if waiting >= STAGE_BATCH_ROWS or (waiting and due):
            await self._flush()

    async def _flush(self) -> None:
        """Write the pending rows in a transaction of their own."""
        if any(self._pending.values()):
            async with self._write_lock, self._engine.begin() as conn:
                await self._write_pending(conn)

    def _take_pending(self) -> dict[str, list[tuple[object, ...]]]:
        """The rows waiting to be staged, by statement, leaving none behind."""
        self._flushed_at = self._monotonic()
        pending = self._pending
        self._pending = {sql: [] for sql in STAGE_ORDER}
        return pending

    async def _write_pending(self, conn: AsyncConnection) -> None:
        pending = self._take_pending()
        # Plain tuples through the driver: staging is the hot path of a large run.
        for statement in STAGE_ORDER:
            if pending[statement]:
                await conn.exec_driver_sql(statement, pending[statement])

    async def finish_scope(
        self, scope_id: int, outcome: Outcome, detail: str | None = None, *, requests: int = 0
    ) -> None:
        """Record how the scope's observation ended (and how many requests it took). Only ``ok``
        keeps what was staged: the merge reads the staged rows of ok observations alone.

        The observation waits with the staged rows for the next batch: a transaction per scope
        (200,000 explicit-grant scopes at ``huge``) rewrote the same pages again and again."""
        outcome = Outcome(outcome)
        if scope_id in self._finished:
            # Two readers of one scope would mix their pages: a bug, never a merge.
            raise RuntimeError(f"scope {scope_id} was already finished in this snapshot")
        self._finished.add(scope_id)
        named = self._names_seen.pop(scope_id, None)
        if named and outcome == Outcome.OK:
            self._users_kept |= named
        task = self._known.pop(scope_id, None)
        known = await task if task is not None else None
        if known is not None and outcome == Outcome.OK:
            self._pending[STAGE_GONE].extend(
                (self.snapshot_id, scope_id, version_id) for version_id in known.gone()
            )
        if outcome != Outcome.OK:  # what is still waiting need not be written at all
            for statement in (STAGE_OBJECT, STAGE_GRANT, STAGE_USER):
                rows = self._pending[statement]
                if any(row[1] == scope_id for row in rows):
                    self._pending[statement] = [row for row in rows if row[1] != scope_id]
        self._pending[STAGE_OBSERVATION].append(
            (self.snapshot_id, scope_id, outcome.value, detail, requests, known is not None)
        )
        await self._flush_if_due()

    async def complete(self, counters: RunCounters, *, skipped: int = 0) -> SnapshotSummary:
        """Merge everything staged into the fact tables, in one transaction.

        ``skipped`` counts the per-object scopes the plan left for a later night: they are
        counted on the snapshot row, not stored one by one (thousands a night)."""
        s = self.snapshot_id
        started = time.monotonic()
        # Nothing is staged from here on: the ids (160,000 at ``huge``, 26 MB) are not held
        # through the merge.
        self._name_ids.clear()
        self._users_kept.clear()
        first = await self._nothing_complete()
        if first:  # the pool's idle connections would keep the write-ahead log in use
            await self._engine.dispose()
        async with self._engine.connect() as conn:
            unlogged = first and await _leave_write_ahead_log(conn)
            beside: StagedUnexplained | None = None
            try:
                if first:
                    beside = await self._find_unexplained_beside(conn)
                async with conn.begin():
                    await self._claim(conn)
                    await self._write_pending(conn)
                    staged = (await conn.execute(text(STAGED_ROWS))).scalar_one()
                    log.info("merging snapshot %d (%d rows in the stage)", s, staged)
                    objects_closed = await merge_staged(conn, s, beside)
                    outcomes, closed = await self._outcomes(conn, objects_closed)
                    outcomes[Outcome.SKIPPED] = outcomes.get(Outcome.SKIPPED, 0) + skipped
                    await conn.execute(
                        update(schema.snapshots)
                        .where(schema.snapshots.c.id == s)
                        .values(
                            status="complete",
                            finished_at=self._clock(),
                            **_counter_values(counters),
                            **{f"scopes_{o.value}": outcomes.get(o, 0) for o in Outcome},
                        )
                    )
                # Committed: whatever stops the run now, the snapshot is complete.
                self.merged = True
            finally:
                try:
                    if beside is not None:
                        await beside.close()
                finally:  # even if a second Ctrl-C cuts the wait for the search short
                    if unlogged:
                        await _return_to_write_ahead_log(conn)
        log.info("merged snapshot %d in %.1f s", s, time.monotonic() - started)
        return SnapshotSummary(s, "complete", outcomes, closed)

    async def _find_unexplained_beside(self, conn: AsyncConnection) -> StagedUnexplained | None:
        """For a database with no fact yet, stage the last rows and make the stage ready in a
        transaction of their own, then start finding the effective access no source explains
        from the stage, beside the merge (``StagedUnexplained``). None where the database holds
        facts, or the search could not start: the merge then finds it itself."""
        async with conn.begin():
            await self._claim(conn)
            if not (await conn.execute(text(NO_FACTS))).scalar_one():
                return None
            await self._write_pending(conn)
            await prepare_stage(conn, self.snapshot_id, keyed=False)
        db = Path(str(self._engine.url.database))
        beside = StagedUnexplained(db, stage_path(db), self.snapshot_id)
        try:
            await beside.start()
        except sqlite3.Error as error:
            log.warning("could not start to find the effective access no source explains beside "
                        "the merge (%s); the merge finds it itself", error)  # fmt: skip
            await beside.close()
            return None
        except BaseException:  # interrupted as it starts: nothing is left running
            await beside.close()
            raise
        return beside

    async def _nothing_complete(self) -> bool:
        """Whether no snapshot of the database is complete yet: readers have nothing to read."""
        async with self._engine.connect() as conn:
            found = await conn.execute(
                text("SELECT EXISTS (SELECT 1 FROM snapshots WHERE status = 'complete')")
            )
            return not found.scalar_one()

    async def fail(self, message: str, counters: RunCounters, *, status: str = "failed") -> None:
        """End the snapshot without merging anything: facts stay as they were."""
        self._take_pending()  # nothing of a failed snapshot is staged
        self._name_ids.clear()
        loads = list(self._known.values())  # shielded from the pages: ended here
        self._known.clear()
        for task in loads:
            task.cancel()
        await asyncio.gather(*loads, return_exceptions=True)
        async with self._engine.begin() as conn:
            await self._claim(conn)
            await conn.execute(
                update(schema.snapshots)
                .where(schema.snapshots.c.id == self.snapshot_id)
                .values(
                    status=status,
                    finished_at=self._clock(),
                    message=message,
                    **_counter_values(counters),
                )
            )

    async def merged_after_all(self) -> bool:
        """Whether this snapshot is complete in the database, for a run whose merge was
        interrupted: an interruption during the commit stops the wait for it, not the commit.
        Read under the write lock (BEGIN IMMEDIATE), which the merge holds until its commit or
        rollback has ended. False if the database cannot say."""
        if not self.merged:
            try:
                async with self._engine.connect() as conn:
                    await conn.exec_driver_sql("BEGIN IMMEDIATE")
                    status = await self._status(conn)
                    await conn.rollback()
            except Exception as error:  # locked for good, or gone: as if not merged
                log.debug("could not read the status of snapshot %d: %s", self.snapshot_id, error)
                return False
            self.merged = status == "complete"
        return self.merged

    async def _status(self, conn: AsyncConnection) -> str | None:
        """This snapshot's status as ``conn`` sees it; None if its row is gone."""
        found = await conn.execute(
            select(schema.snapshots.c.status).where(schema.snapshots.c.id == self.snapshot_id)
        )
        status = found.scalar_one_or_none()
        return None if status is None else str(status)

    async def _claim(self, conn: AsyncConnection) -> None:
        """Make sure this snapshot is still ``running``: another run may have marked it aborted
        (and dropped what it staged), and then nothing of it may be merged."""
        status = await self._status(conn)
        if status != "running":
            raise DatabaseError(
                f"snapshot {self.snapshot_id} is {status or 'gone'}, not running: another run "
                "took over the database, so nothing of this one was merged"
            )

    async def _outcomes(
        self, conn: AsyncConnection, objects_closed: bool
    ) -> tuple[dict[str, int], int]:
        """Observations of this snapshot by outcome, and apart the closures of child scopes of
        deleted objects (not observations of a listing, so not counted as ok). A merge that
        closed objects (``objects_closed``) left those closures in ``temp.merge_closed_scopes``
        (``CLOSE_WITH_OBJECTS``), dropped here."""
        sql = CLOSED_OUTCOMES if objects_closed else STAGED_OUTCOMES
        rows = (await conn.execute(text(sql), {"s": self.snapshot_id})).all()
        if objects_closed:
            await conn.execute(text(DROP_CLOSED_SCOPES))
        outcomes: dict[str, int] = {}
        closed = 0
        for outcome, is_closure, count in rows:
            if is_closure:
                closed += int(count)
            else:
                outcomes[str(outcome)] = int(count)
        return outcomes, closed

    @staticmethod
    async def _drop_staged(conn: AsyncConnection) -> None:
        """Empty the stage, before a run stages anything. One run at a time holds the database
        (``RunLock``), so whatever is staged there is an earlier run's. A snapshot run starts
        from a new stage file and removes it at its end (``database.remove_stage``), so the merge
        need not empty it: in the merge's transaction, the journal of a gigabyte's freed pages
        (kept in memory) took about 540 MB at ``huge``. A DELETE without WHERE lets SQLite drop the
        pages whole instead of row by row (400,000 rows: 1.4 s to a few ms)."""
        log.debug("emptying the stage")
        for name in STAGE_TABLES:
            await conn.execute(text(f"DELETE FROM {name}"))
        for statement in DROP_STAGE_KEYS:
            await conn.execute(text(statement))


async def _leave_write_ahead_log(conn: AsyncConnection) -> bool:
    """Switch the database on ``conn`` to a rollback journal for the first merge, and say
    whether it could.

    A first merge only appends pages to the file, and a rollback journal keeps only the pages a
    transaction changes, so every page is written once. Through the write-ahead log each was
    written twice, once to the log and once more by the checkpoint after the commit: at ``huge``
    1.9 GB of a first night's 5.2 GB, and 12 to 20 s of its merge. A reader opening the
    database meanwhile waits for the merge (with nothing complete there is nothing to read), and
    a reader that has it open already keeps the log: SQLite then refuses the switch, and the
    merge goes through the log as any other. Such a merge is synced fully (``synchronous=FULL``):
    a rollback journal needs it to be safe from a power cut."""
    try:
        mode = await conn.exec_driver_sql("PRAGMA main.journal_mode=DELETE")
        switched = str(mode.scalar_one()).lower() == "delete"
    except OperationalError as error:  # another connection has the database open
        log.debug("the first merge keeps the write-ahead log: %s", error.orig)
        switched = False
    if switched:
        await conn.exec_driver_sql("PRAGMA main.synchronous=FULL")
        log.info("the first merge writes the database once, without the write-ahead log")
    await conn.commit()  # ends the transaction SQLAlchemy began: the merge begins its own
    return switched


async def _return_to_write_ahead_log(conn: AsyncConnection) -> None:
    """Put the database back in write-ahead-log mode after the first merge, committed or not,
    and not cut short by a Ctrl-C. A commit that failed (a full disk) leaves its transaction
    open, and the mode cannot change inside one: it is rolled back first. If the switch fails
    all the same (a reader holds the database at that moment), the connection is dropped from
    the pool, and the next connection of bbaccess that writes sets the mode as it connects."""

    async def switch() -> None:
        driver = (await conn.get_raw_connection()).driver_connection
        if driver is not None:
            await driver.rollback()  # nothing, after a commit
        await conn.exec_driver_sql("PRAGMA main.journal_mode=WAL")
        await conn.exec_driver_sql("PRAGMA main.synchronous=NORMAL")
        await conn.commit()

    switching = asyncio.ensure_future(switch())
    try:
        await asyncio.shield(switching)
    except OperationalError as error:
        log.warning("the database stays without its write-ahead log until the next snapshot "
                    "(%s)", error.orig)  # fmt: skip
        await conn.invalidate()
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await switching  # the mode is switched back before the interruption goes on
        raise


def _counter_values(counters: RunCounters) -> dict[str, object]:
    return {
        "requests": counters.requests,
        "retries": counters.retries,
        "throttled": counters.throttled,
        "wait_seconds": round(counters.wait_seconds, 3),
        "backoff_seconds": round(counters.backoff_seconds, 3),
    }
