"""Read-side queries: the runs, resolving ``--from``/``--to``, and the diff of two snapshots.

Every answer here is built on *knowledge at a snapshot*: the facts of each scope's latest ok
observation at or before it. The diff's SQL is ``exporter.store.sql.DIFF_SQL``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from sys import intern
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from exporter.errors import ConfigError
from exporter.store.sql import (
    DIFF_BASELINE_COUNT_SQL,
    DIFF_SQL,
    OUTCOME_ROWS,
    latest_ok_read,
    latest_ok_run,
    read_at,
)

CHANGE_COLUMNS = (
    "snapshot_id",
    "snapshot_at",
    "from_snapshot_id",
    "workspace",
    "object_type",
    "object_name",
    "subject_type",
    "subject_name",
    "change",
    "attribute",
    "old_value",
    "new_value",
    "source",
    "reason",
    "subject_uuid",
    "object_uuid",
    "scope_id",
)

#: Order of the change log: the most telling first.
CHANGE_ORDER = (
    "granted",
    "raised",
    "added to group",
    "revoked",
    "lowered",
    "removed from group",
    "changed",
    "created",
    "deleted",
    "baseline",
)


@dataclass(frozen=True)
class SnapshotRow:
    id: int
    started_at: str
    finished_at: str | None
    status: str
    tool_version: str
    requests: int
    retries: int
    throttled: int
    wait_seconds: float
    backoff_seconds: float
    scopes_ok: int
    scopes_forbidden: int
    scopes_failed: int
    scopes_skipped: int
    message: str | None

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        start = datetime.fromisoformat(self.started_at)
        return (datetime.fromisoformat(self.finished_at) - start).total_seconds()


#: The outcome shown for a scope with no attempt at all in between.
NOT_ATTEMPTED = "not attempted"


@dataclass(frozen=True)
class UnverifiedScope:
    label: str
    outcome: str  # of its last attempt in between; 'not attempted' (say, left for a later night)
    detail: str | None
    workspace: str  # the workspace's slug (its uuid if never labelled)


@dataclass(frozen=True)
class UnverifiedCount:
    """Per-object scopes of one kind not observed in between, by how their last attempt ended."""

    kind: str
    outcome: str
    count: int


@dataclass(frozen=True)
class Diff:
    from_id: int
    to_id: int
    changes: list[dict[str, Any]]
    baseline: list[dict[str, Any]]  # listed only when asked for
    baseline_count: int
    unverified: list[UnverifiedScope]  # workspace-wide scopes, one by one
    #: Per-object scopes (thousands, rationed across nights), counted.
    unverified_per_object: list[UnverifiedCount] = field(default_factory=list)


async def list_snapshots(conn: AsyncConnection) -> list[SnapshotRow]:
    rows = await conn.execute(text("SELECT * FROM snapshots ORDER BY id"))
    return [SnapshotRow(**dict(row._mapping)) for row in rows]


async def last_complete_requests(conn: AsyncConnection) -> tuple[int, int] | None:
    """(id, requests) of the newest complete snapshot, to estimate the next run."""
    row = (
        await conn.execute(
            text(
                "SELECT id, requests FROM snapshots WHERE status = 'complete' "
                "ORDER BY id DESC LIMIT 1"
            )
        )
    ).first()
    return None if row is None else (int(row[0]), int(row[1]))


async def known_workspaces(conn: AsyncConnection) -> list[tuple[str, str]]:
    """(uuid, slug) of every workspace an earlier complete snapshot observed ok."""
    rows = await conn.execute(
        text(
            "SELECT o.uuid, o.slug FROM objects o JOIN scopes s ON s.id = o.scope_id "
            "WHERE s.kind = 'workspace' AND o.valid_to IS NULL ORDER BY o.slug"
        )
    )
    return [(str(r[0]), str(r[1])) for r in rows]


async def complete_snapshot_ids(conn: AsyncConnection) -> list[int]:
    rows = await conn.execute(
        text("SELECT id FROM snapshots WHERE status = 'complete' ORDER BY id")
    )
    return [int(r[0]) for r in rows]


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_moment(ref: str) -> datetime:
    """A date means the end of that day (UTC); a timestamp without a zone is UTC."""
    if _DATE.match(ref):
        return datetime.combine(date.fromisoformat(ref) + timedelta(days=1), time(), tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(ref)
    except ValueError:
        raise ConfigError(
            f"{ref!r} is neither a snapshot id, a date (2026-11-20) nor a timestamp "
            "(2026-11-20T06:00:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def resolve_snapshot(conn: AsyncConnection, ref: str) -> int:
    """A snapshot id (0: before the first snapshot, an empty database), or the last complete
    snapshot started at or before a date or timestamp."""
    if ref == "0":
        return 0
    if ref.isdigit():
        row = (
            await conn.execute(text("SELECT status FROM snapshots WHERE id = :i"), {"i": int(ref)})
        ).first()
        if row is None:
            raise ConfigError(f"there is no snapshot {ref}; 'bbaccess snapshots' lists them")
        if row[0] != "complete":
            raise ConfigError(
                f"snapshot {ref} is {row[0]}, not complete: only complete snapshots can be compared"
            )
        return int(ref)
    moment = parse_moment(ref)
    found = None
    for row in await conn.execute(
        text("SELECT id, started_at FROM snapshots WHERE status = 'complete' ORDER BY id")
    ):
        if datetime.fromisoformat(row[1]) < moment or (
            not _DATE.match(ref) and datetime.fromisoformat(row[1]) == moment
        ):
            found = int(row[0])
    if found is None:
        raise ConfigError(f"no complete snapshot at or before {ref}")
    return found


async def default_pair(conn: AsyncConnection) -> tuple[int, int]:
    ids = await complete_snapshot_ids(conn)
    if not ids:
        raise ConfigError("the database holds no complete snapshot yet: run 'bbaccess snapshot'")
    if len(ids) == 1:
        return 0, ids[0]
    return ids[-2], ids[-1]


#: The diff without its baseline rows, and those rows alone (a first snapshot has one per fact).
CHANGES_ONLY_SQL = f"SELECT * FROM ({DIFF_SQL}) WHERE change <> 'baseline'"
BASELINE_SQL = f"SELECT * FROM ({DIFF_SQL}) WHERE change = 'baseline'"
#: The same rows in the order ``bbaccess diff`` prints them, sorted by SQLite (which spills to
#: disk), so that they can be streamed with memory that does not grow with their number.
ORDER_SQL = """ ORDER BY coalesce(workspace, ''), CASE change {whens} END,
    coalesce(object_name, ''), coalesce(subject_name, ''), coalesce(attribute, ''),
    coalesce(object_uuid, ''), coalesce(subject_uuid, ''), scope_id""".format(
    whens=" ".join(f"WHEN '{c}' THEN {i}" for i, c in enumerate(CHANGE_ORDER))
)


async def stream_diff_rows(
    conn: AsyncConnection, a: int, b: int, *, baseline: bool
) -> AsyncIterator[dict[str, Any]]:
    """The changes (or, with ``baseline``, the baseline rows) from ``a`` to ``b``, one at a time,
    in the order of ``diff``."""
    sql = (BASELINE_SQL if baseline else CHANGES_ONLY_SQL) + ORDER_SQL
    result = await conn.stream(text(sql), {"a": a, "b": b})
    async for row in result:
        yield dict(row._mapping)


async def baseline_count(conn: AsyncConnection, a: int, b: int) -> int:
    """How many baseline rows the diff from ``a`` to ``b`` has, without listing them."""
    sql = FROM_NOTHING_COUNT_SQL if a == 0 else DIFF_BASELINE_COUNT_SQL
    return int((await conn.execute(text(sql), {"a": a, "b": b})).scalar_one())


#: From nothing (``a`` = 0) no scope has an ok observation at or before ``a``, so by the diff's
#: rules every fact known at ``b`` is a baseline and nothing is a change: only a count is left.
FROM_NOTHING_COUNT_SQL = """SELECT
    (SELECT count(*) FROM objects WHERE valid_from <= :b AND (valid_to IS NULL OR valid_to > :b))
  + (SELECT count(*) FROM grant_versions
      WHERE valid_from <= :b AND (valid_to IS NULL OR valid_to > :b))"""


async def diff(conn: AsyncConnection, a: int, b: int, *, with_baseline: bool = False) -> Diff:
    """What changed from snapshot ``a`` to snapshot ``b`` (``a`` = 0: from nothing).

    Baseline rows are counted; they are listed only ``with_baseline``.
    """
    if a > b:
        raise ConfigError(f"--from ({a}) is after --to ({b}); swap them")
    params = {"a": a, "b": b}
    unverified, per_object = await unverified_scopes(conn, a, b)
    if a == 0 and not with_baseline:
        count = int((await conn.execute(text(FROM_NOTHING_COUNT_SQL), params)).scalar_one())
        return Diff(a, b, [], [], count, unverified, per_object)
    changes = [dict(r._mapping) for r in await conn.execute(text(CHANGES_ONLY_SQL), params)]
    changes.sort(key=_change_sort_key)
    if with_baseline:
        baseline = [dict(r._mapping) for r in await conn.execute(text(BASELINE_SQL), params)]
        baseline.sort(key=_change_sort_key)
        count = len(baseline)
    else:
        baseline = []
        count = int((await conn.execute(text(DIFF_BASELINE_COUNT_SQL), params)).scalar_one())
    return Diff(a, b, changes, baseline, count, unverified, per_object)


def _change_sort_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        row["workspace"] or "",
        CHANGE_ORDER.index(row["change"]),
        row["object_name"] or "",
        row["subject_name"] or "",
        row["attribute"] or "",
        # Ties (two repositories of one name) broken by key: the order is the same every time.
        row["object_uuid"] or "",
        row["subject_uuid"] or "",
        row["scope_id"],
    )


async def unverified_scopes(
    conn: AsyncConnection, a: int, b: int
) -> tuple[list[UnverifiedScope], list[UnverifiedCount]]:
    """Scopes known by ``b`` with no ok observation in (a, b]: nothing is claimed about them.
    Workspace-wide scopes one by one; per-object scopes counted by kind and outcome."""
    rows = await conn.execute(
        text(f"""SELECT s.label,
                       coalesce((SELECT o.outcome FROM observation_runs o WHERE o.scope_id = s.id
                                   AND o.first_snapshot_id <= :b AND o.last_snapshot_id > :a
                                 ORDER BY o.first_snapshot_id DESC LIMIT 1), :not_attempted),
                       (SELECT o.detail FROM observation_runs o WHERE o.scope_id = s.id
                           AND o.first_snapshot_id <= :b AND o.last_snapshot_id > :a
                         ORDER BY o.first_snapshot_id DESC LIMIT 1),
                       s.parent_scope_id IS NOT NULL, s.kind,
                       coalesce((SELECT l.label FROM labels l WHERE l.uuid = s.workspace_uuid),
                                s.workspace_uuid)
                  FROM scopes s
                 WHERE EXISTS (SELECT 1 FROM observation_runs o WHERE o.scope_id = s.id
                                  AND o.first_snapshot_id <= :b)
                   AND coalesce({latest_ok_read("s.id", ":b")}, :a) <= :a
                 ORDER BY s.label"""),
        {"a": a, "b": b, "not_attempted": NOT_ATTEMPTED},
    )
    listed: list[UnverifiedScope] = []
    counted: dict[tuple[str, str], int] = {}
    for label, outcome, detail, per_object, kind, workspace in rows:
        if per_object:
            counted[(str(kind), str(outcome))] = counted.get((str(kind), str(outcome)), 0) + 1
        else:
            listed.append(UnverifiedScope(str(label), str(outcome), detail, str(workspace)))
    return listed, [UnverifiedCount(k, o, n) for (k, o), n in sorted(counted.items())]


@dataclass(frozen=True, slots=True)
class KnownObject:
    """A repository or project as the latest knowledge has it."""

    workspace_uuid: str
    object_type: str
    uuid: str
    slug: str  # repository slug or project key
    parent_uuid: str | None


async def known_objects(conn: AsyncConnection) -> list[KnownObject]:
    """Every current repository and project, from their workspaces' listings."""
    rows = await conn.execute(
        text(
            "SELECT s.workspace_uuid, o.object_type, o.uuid, o.slug, o.parent_uuid "
            "FROM objects o JOIN scopes s ON s.id = o.scope_id "
            "WHERE o.valid_to IS NULL AND s.kind IN ('repositories', 'projects') "
            "ORDER BY s.workspace_uuid, o.object_type, o.slug"
        )
    )
    # Interned: the plan keys its history by the same uuids, and a workspace or a type is the
    # same string for thousands of objects (at huge, 110,000 objects and 210,000 scopes).
    return [KnownObject(intern(str(r[0])), intern(str(r[1])), intern(str(r[2])), str(r[3]),
                        None if r[4] is None else intern(str(r[4]))) for r in rows]  # fmt: skip


@dataclass
class ScopeHistories:
    """Of each per-object scope observed ok: its latest ok observation, and whether the effective
    access of its object changed since. Held as one integer per scope, by kind then object uuid
    (the snapshot's id twice, plus one when changed): a pair of tuples took 150 bytes more, 30
    MB for the 210,000 scopes of ``huge``."""

    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)

    def get(self, kind: str, uuid: str) -> tuple[int | None, bool]:
        """(latest ok observation, changed since); (None, False) for a scope never observed."""
        packed = self.by_kind.get(kind, {}).get(uuid)
        if packed is None:
            return None, False
        return packed >> 1, bool(packed & 1)


async def per_object_history(
    conn: AsyncConnection, objects: list[KnownObject]
) -> ScopeHistories:
    """The history of every registered per-object scope. A project counts as changed when one of
    its repositories did."""
    rows = (
        await conn.execute(
            text(
                f"SELECT s.kind, s.object_uuid, {latest_ok_read('s.id')} FROM scopes s "
                "WHERE s.parent_scope_id IS NOT NULL"
            )
        )
    ).all()
    seen = [int(r[2]) for r in rows if r[2] is not None]
    changed_in: dict[str, int] = {}
    if seen:
        for uuid, last in await conn.execute(
            text(
                "SELECT n.uuid, max(g.valid_from, coalesce(g.valid_to, 0)) "
                "FROM grant_versions g JOIN scopes s ON s.id = g.scope_id "
                "JOIN names n ON n.id = g.object_id "
                "WHERE s.kind = 'repository_permissions' "
                "AND (g.valid_from > :since OR g.valid_to > :since)"
            ),
            {"since": min(seen)},
        ):
            changed_in[str(uuid)] = max(changed_in.get(str(uuid), 0), int(last))
        for obj in objects:
            if obj.object_type == "repository" and obj.parent_uuid and obj.uuid in changed_in:
                project = obj.parent_uuid
                changed_in[project] = max(changed_in.get(project, 0), changed_in[obj.uuid])
    histories = ScopeHistories()
    for kind, uuid, last in rows:
        if last is not None:
            changed = changed_in.get(str(uuid), 0) > int(last)
            of_kind = histories.by_kind.setdefault(intern(str(kind)), {})
            of_kind[intern(str(uuid))] = int(last) << 1 | changed
    return histories


async def workspace_requests_estimate(conn: AsyncConnection) -> dict[str, int]:
    """{workspace uuid: requests its workspace-wide listings took at their latest ok
    observations} (empty: unknown)."""
    rows = await conn.execute(
        text(
            "SELECT s.workspace_uuid, coalesce(sum(o.requests), 0) FROM scopes s "
            f"JOIN observation_runs o ON {latest_ok_run('s.id')} "
            "WHERE s.parent_scope_id IS NULL GROUP BY s.workspace_uuid"
        )
    )
    return {str(uuid): int(total) for uuid, total in rows if total}


@dataclass(frozen=True)
class Coverage:
    """How far the per-object scopes of one workspace and kind have been observed."""

    workspace: str
    kind: str
    objects: int  # current repositories or projects
    observed: int  # of those, with an ok observation of this kind
    never_observed: int
    oldest_observed_in: int | None  # the oldest latest-observation among them
    oldest_observed_at: str | None
    nights_to_full: int | None  # until every scope was observed once; None: unknown pace


#: The per-object scope of kind ``k.kind`` for the object ``o`` (one at most: scopes are unique
#: by kind and object).
_OBJECT_SCOPE = "(SELECT sc.id FROM scopes sc WHERE sc.kind = k.kind AND sc.object_uuid = o.uuid)"
COVERAGE_SQL = f"""WITH objs AS (
    SELECT s.workspace_uuid, o.object_type, o.uuid FROM objects o JOIN scopes s ON s.id = o.scope_id
     WHERE o.valid_to IS NULL AND s.kind IN ('repositories', 'projects')),
kinds(kind, object_type) AS (VALUES
    ('repository_user_grants', 'repository'), ('repository_group_grants', 'repository'),
    ('project_user_grants', 'project'), ('project_group_grants', 'project')),
latest AS (
    SELECT k.kind, o.workspace_uuid, o.uuid,
           {latest_ok_read(_OBJECT_SCOPE)} AS last_ok
      FROM objs o JOIN kinds k ON k.object_type = o.object_type)
SELECT g.*, (SELECT finished_at FROM snapshots WHERE id = g.oldest) FROM (
    SELECT coalesce(w.label, l.workspace_uuid), l.kind, count(*), count(l.last_ok),
           count(*) - count(l.last_ok), min(l.last_ok) AS oldest
      FROM latest l LEFT JOIN labels w ON w.uuid = l.workspace_uuid
     GROUP BY l.workspace_uuid, l.kind) g ORDER BY 1, 2"""

#: Per-object scopes read by the last complete snapshot: the nightly pace.
PACE_SQL = f"""WITH latest(id) AS (SELECT max(id) FROM snapshots WHERE status = 'complete'),
outcomes(outcome) AS (VALUES {OUTCOME_ROWS})
SELECT count(*) FROM scopes s CROSS JOIN latest n CROSS JOIN outcomes v
 WHERE s.parent_scope_id IS NOT NULL
   AND {read_at("s.id", "v.outcome", "n.id", "o.closure IS NULL")}"""


async def coverage(conn: AsyncConnection) -> tuple[list[Coverage], int]:
    """Coverage per workspace and per-object kind, and the last night's pace (scopes read)."""
    pace = int((await conn.execute(text(PACE_SQL))).scalar_one())
    rows = (await conn.execute(text(COVERAGE_SQL))).all()
    never = sum(int(r[4]) for r in rows)
    nights = None if pace == 0 else -(-never // pace)
    found = [
        Coverage(str(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4]), r[5], r[6],
                 0 if int(r[4]) == 0 else nights)
        for r in rows
    ]  # fmt: skip
    return found, pace
