"""Read-side queries: the runs, resolving ``--from``/``--to``, and the diff of two snapshots.

Every answer here is built on *knowledge at a snapshot*: the facts of each scope's latest ok
observation at or before it. The diff's SQL is ``exporter.store.sql.DIFF_SQL``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from exporter.errors import ConfigError
from exporter.store.sql import DIFF_BASELINE_COUNT_SQL, DIFF_SQL

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
    "revoked",
    "lowered",
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


@dataclass(frozen=True)
class UnverifiedScope:
    label: str
    outcome: str
    detail: str | None


@dataclass(frozen=True)
class Diff:
    from_id: int
    to_id: int
    changes: list[dict[str, Any]]
    baseline: list[dict[str, Any]]  # listed only when asked for
    baseline_count: int
    unverified: list[UnverifiedScope]


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
    """A snapshot id, or the last complete snapshot started at or before a date or timestamp."""
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
#: From nothing (``a`` = 0) no scope has an ok observation at or before ``a``, so by the diff's
#: rules every fact known at ``b`` is a baseline and nothing is a change: only a count is left.
FROM_NOTHING_COUNT_SQL = """SELECT
    (SELECT count(*) FROM objects WHERE valid_from <= :b AND (valid_to IS NULL OR valid_to > :b))
  + (SELECT count(*) FROM grants WHERE valid_from <= :b AND (valid_to IS NULL OR valid_to > :b))"""


async def diff(conn: AsyncConnection, a: int, b: int, *, with_baseline: bool = False) -> Diff:
    """What changed from snapshot ``a`` to snapshot ``b`` (``a`` = 0: from nothing).

    Baseline rows are counted; they are listed only ``with_baseline``.
    """
    if a > b:
        raise ConfigError(f"--from ({a}) is after --to ({b}); swap them")
    params = {"a": a, "b": b}
    unverified = await unverified_scopes(conn, a, b)
    if a == 0 and not with_baseline:
        count = int((await conn.execute(text(FROM_NOTHING_COUNT_SQL), params)).scalar_one())
        return Diff(a, b, [], [], count, unverified)
    changes = [dict(r._mapping) for r in await conn.execute(text(CHANGES_ONLY_SQL), params)]
    changes.sort(key=_change_sort_key)
    if with_baseline:
        baseline = [dict(r._mapping) for r in await conn.execute(text(BASELINE_SQL), params)]
        baseline.sort(key=_change_sort_key)
        count = len(baseline)
    else:
        baseline = []
        count = int((await conn.execute(text(DIFF_BASELINE_COUNT_SQL), params)).scalar_one())
    return Diff(a, b, changes, baseline, count, unverified)


def _change_sort_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        row["workspace"] or "",
        CHANGE_ORDER.index(row["change"]),
        row["object_name"] or "",
        row["subject_name"] or "",
        row["attribute"] or "",
    )


async def unverified_scopes(conn: AsyncConnection, a: int, b: int) -> list[UnverifiedScope]:
    """Scopes known by ``b`` with no ok observation in (a, b]: nothing is claimed about them."""
    rows = await conn.execute(
        text("""SELECT s.label,
                       coalesce((SELECT o.outcome FROM observations o WHERE o.scope_id = s.id
                                   AND o.snapshot_id > :a AND o.snapshot_id <= :b
                                 ORDER BY o.snapshot_id DESC LIMIT 1), 'not attempted'),
                       (SELECT o.detail FROM observations o WHERE o.scope_id = s.id
                           AND o.snapshot_id > :a AND o.snapshot_id <= :b
                         ORDER BY o.snapshot_id DESC LIMIT 1)
                  FROM scopes s
                 WHERE EXISTS (SELECT 1 FROM observations o WHERE o.scope_id = s.id
                                  AND o.snapshot_id <= :b)
                   AND NOT EXISTS (SELECT 1 FROM observations o WHERE o.scope_id = s.id
                                      AND o.outcome = 'ok'
                                      AND o.snapshot_id > :a AND o.snapshot_id <= :b)
                 ORDER BY s.label"""),
        {"a": a, "b": b},
    )
    return [UnverifiedScope(str(r[0]), str(r[1]), r[2]) for r in rows]
