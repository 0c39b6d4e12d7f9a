"""Pruning old snapshots: keep some complete snapshots, remove the rest, and lose no answer about
the ones kept.

``choose_kept`` says which complete snapshots a grandfather-father-son policy keeps; ``prune``
removes every other snapshot (complete, failed or aborted; never while one is ``running``).

What stays exactly as it was, for the kept complete snapshots ``k`` and ``k'`` (and ``0``):

- knowledge at ``k``: every row of ``access_at WHERE snapshot_id = k`` (its ``observed_in`` apart,
  below) and every object version valid at ``k``;
- ``queries.diff(k, k')``: its changes, its baseline rows and ``baseline_count``, and its
  unverified scopes (listed and counted, with the outcome and detail shown): a scope is verified
  between two kept snapshots exactly when it was before;
- the labels and the users (names and ``last_seen`` are not touched; ``last_seen`` may name a
  removed snapshot); the ids of the kept snapshots and their rows (counters included), which still
  describe the runs as they ran.

What may change: ``observed_in`` (``access_at``, ``current_*``, ``scope_freshness``) and the other
freshness columns may name the kept snapshot that absorbed a read made in a removed one: the first
kept snapshot after it, never later than the snapshot asked about. The planner's estimates (which
scope was read least recently, the nightly pace) read those columns too.

How (every snapshot between two kept ones is folded into the later one, ``k'``):

- A version that opened or closed in a removed snapshot ``p`` opens or closes in the first kept
  snapshot after ``p``. Validity at every kept snapshot is unchanged, hence so are the versions a
  diff of two kept snapshots compares. A grant version that opened and closed between two kept
  snapshots held at none of them: it is deleted. An object version in that case is kept with an
  empty period (``valid_from = valid_to``): it is valid nowhere, but the newest version of an
  object (by id) gives its label and the project slugs a diff shows, so none is deleted.
- Of a scope's observations in ``(k, k']`` one is kept, at ``k'``: the newest ``ok`` one if any
  (closure included), else the newest attempt. So a scope verified in ``(k, k']`` stays verified
  there, ``ok`` observations at or before a kept snapshot stay at or before it (the first-read
  rules: baseline, granted on a new object), and the attempt that an unverified scope shows is
  the same one. A failed attempt at ``k'`` itself gives way to an ``ok`` read of the same window.
  The runs of reads (``observation_runs``) are then made again over the kept snapshots: reads
  alike at consecutive kept snapshots are one run, as if the removed snapshots had never been.
- Failed and aborted snapshots hold no facts: their rows go.
- The change log (``access_changes``) of each kept snapshot that absorbed removed ones is written
  again, against the kept snapshot before it; the removed snapshots' entries go.

All of it is one transaction; the space is then reclaimed with ``VACUUM`` (outside it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from exporter.errors import DatabaseError
from exporter.store.writer import log_changes

#: Snapshots that hold nothing: a run that failed, or died and was marked aborted.
INCOMPLETE = ("failed", "aborted")


def choose_kept(
    snapshots: list[tuple[int, datetime]], *, daily: int, weekly: int, monthly: int
) -> set[int]:
    """The complete snapshots a grandfather-father-son policy keeps.

    ``snapshots`` are (id, time) of the complete snapshots, any order; times are read in their own
    time zone (``complete_snapshot_times`` gives UTC start times). Kept:

    - the newest snapshot (highest id), always, whatever the counts;
    - ``daily``: the last snapshot of each of the newest ``daily`` calendar days that have one;
    - ``weekly``: the last snapshot of each of the newest ``weekly`` ISO weeks (Monday to Sunday,
      ISO week-numbering year) that have one;
    - ``monthly``: the last snapshot of each of the newest ``monthly`` calendar months that have
      one.

    The last snapshot of a period is the one with the latest time; of two with the same time, the
    higher id. Each rule counts its periods on its own: a snapshot kept as the last of its day
    still counts as its week's and its month's (so ``--keep-daily 7 --keep-weekly 4`` keeps the
    last seven days with a snapshot and the last four weeks with one, which overlap). Days without
    a snapshot are not counted: ``daily=7`` keeps seven snapshots if there are seven days with
    one, however far apart. A count of 0 keeps nothing by that rule.
    """
    for name, count in (("daily", daily), ("weekly", weekly), ("monthly", monthly)):
        if count < 0:
            raise ValueError(f"{name} must be 0 or more, not {count}")
    newest_first = sorted(snapshots, key=lambda s: (s[1], s[0]), reverse=True)
    if not newest_first:
        return set()
    kept = {max(sid for sid, _ in newest_first)}
    rules = ((daily, _day), (weekly, _iso_week), (monthly, _month))
    for count, period_of in rules:
        seen: set[tuple[int, int, int]] = set()
        for sid, at in newest_first:
            period = period_of(at.date())
            if period in seen:
                continue
            if len(seen) == count:
                break
            seen.add(period)
            kept.add(sid)
    return kept


def _day(d: date) -> tuple[int, int, int]:
    return (d.year, d.month, d.day)


def _iso_week(d: date) -> tuple[int, int, int]:
    year, week, _ = d.isocalendar()
    return (year, week, 0)


def _month(d: date) -> tuple[int, int, int]:
    return (d.year, d.month, 0)


async def complete_snapshot_times(conn: AsyncConnection) -> list[tuple[int, datetime]]:
    """(id, start time in UTC) of every complete snapshot, oldest first: what ``choose_kept``
    reads. The start time, as ``diff --from/--to DATE`` resolves a date: the snapshot kept for a
    day is the one a diff to that day's date picks."""
    rows = await conn.execute(
        text("SELECT id, started_at FROM snapshots WHERE status = 'complete' ORDER BY id")
    )
    found = []
    for sid, started_at in rows:
        at = datetime.fromisoformat(str(started_at))
        found.append(
            (int(sid), at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC))
        )
    return found


@dataclass(frozen=True)
class PruneReport:
    """What ``prune`` removed (or, in a dry run, would remove)."""

    dry_run: bool
    kept: tuple[int, ...]  # complete snapshots kept
    removed_complete: tuple[int, ...]  # complete snapshots removed
    removed_incomplete: tuple[int, ...]  # failed and aborted snapshots removed
    versions_moved: int  # versions whose valid_from or valid_to moved (emptied ones included)
    versions_deleted: int  # grant versions that held at no kept snapshot
    versions_emptied: int  # object versions that held at no kept snapshot (kept, valid nowhere)
    observations_moved: int  # observations carried to the next kept snapshot
    observations_deleted: int
    bytes_before: int  # the database file and its write-ahead log
    bytes_after: int | None  # after VACUUM; None in a dry run

    @property
    def removed(self) -> tuple[int, ...]:
        return tuple(sorted(self.removed_complete + self.removed_incomplete))


#: The kept snapshot that absorbs each removed complete snapshot: the first kept one after it.
_MAP = "temp.prune_map"
#: The kept complete snapshots in order: each with the kept one before it (0 for the first) and
#: its place in the order (``n``), by which the runs of reads are made again.
_KEPT = "temp.prune_kept"
#: Of each scope's reads in each window (the removed snapshots before a kept one, and the kept
#: one), the one that stays, at the kept snapshot: the newest ok one, else the newest attempt;
#: ``at`` is the snapshot it was made in.
_READS = "temp.prune_reads"
_REMOVED = f"(SELECT old FROM {_MAP})"


def _mapped(column: str) -> str:
    return f"coalesce((SELECT m.new FROM {_MAP} m WHERE m.old = {column}), {column})"


def _touched(table: str) -> str:
    return f"({table}.valid_from IN {_REMOVED} OR {table}.valid_to IN {_REMOVED})"


def _empty(table: str) -> str:
    """The version held at no kept snapshot: it opens and closes in the same kept one."""
    return f"{_mapped(f'{table}.valid_from')} = {_mapped(f'{table}.valid_to')}"


_SETUP = (
    f"CREATE TEMP TABLE {_MAP.split('.')[1]} (old INTEGER PRIMARY KEY, new INTEGER NOT NULL)",
    f"CREATE TEMP TABLE {_KEPT.split('.')[1]} (k INTEGER PRIMARY KEY, prev INTEGER NOT NULL, "
    "n INTEGER NOT NULL)",
)
_TEARDOWN = tuple(f"DROP TABLE IF EXISTS {table}" for table in (_MAP, _KEPT, _READS))

#: A run of reads meets the window (prev, k] when it starts at or before k and ends after prev;
#: then it read the scope in the window (every snapshot of a run did, and its first and last are
#: snapshots): at ``min(last, k)``, its newest read there.
_FIND_READS = f"""CREATE TEMP TABLE {_READS.split('.')[1]} AS
SELECT scope_id, k, n, outcome, detail, closure, requests, at FROM (
    SELECT r.scope_id, w.k, w.n, r.outcome, r.detail, r.closure, r.requests,
           min(r.last_snapshot_id, w.k) AS at,
           row_number() OVER (PARTITION BY r.scope_id, w.k
                              ORDER BY r.outcome = 'ok' DESC, r.first_snapshot_id DESC) AS rank
      FROM {_KEPT} w JOIN observation_runs r
        ON r.first_snapshot_id <= w.k AND r.last_snapshot_id > w.prev)
 WHERE rank = 1"""

_COUNT_VERSIONS = """SELECT count(*), coalesce(sum({empty}), 0) FROM {table} WHERE {touched}"""
#: Reads carried to the kept snapshot after them; and the reads that go: those of removed
#: snapshots not carried, and those of kept snapshots that gave way to an ok read of their
#: window (a failed attempt at the kept snapshot itself).
_COUNT_OBSERVATIONS = f"""SELECT
    (SELECT count(*) FROM {_READS} WHERE at <> k),
    (SELECT count(*) FROM observation_runs r JOIN {_MAP} m
         ON m.old BETWEEN r.first_snapshot_id AND r.last_snapshot_id)
  - (SELECT count(*) FROM {_READS} WHERE at <> k)
  + (SELECT count(*) FROM {_READS} p WHERE p.at <> p.k
        AND EXISTS (SELECT 1 FROM observation_runs r WHERE r.scope_id = p.scope_id
                       AND r.first_snapshot_id <= p.k AND r.last_snapshot_id >= p.k))"""

#: The runs are made again from the reads that stay, over the kept snapshots: reads with the
#: same outcome, detail and requests at consecutive kept snapshots are one run (a closure is a
#: run of its own), as a merge would have made them had the removed snapshots never been. Only
#: when a complete snapshot goes: a failed or aborted one read nothing, and the runs hold as
#: they are without it.
_REMAKE_RUNS = (
    "DELETE FROM observation_runs",
    f"""INSERT INTO observation_runs (scope_id, outcome, first_snapshot_id, last_snapshot_id,
                                     detail, closure, requests)
        SELECT scope_id, outcome, min(k), max(k), detail, closure, requests FROM (
            SELECT *, n - row_number() OVER (
                       PARTITION BY scope_id, outcome, detail, closure, requests,
                                    CASE WHEN closure IS NOT NULL THEN k END
                       ORDER BY n) AS island
              FROM {_READS})
         GROUP BY scope_id, outcome, detail, closure, requests,
                  CASE WHEN closure IS NOT NULL THEN k END, island
         ORDER BY scope_id, outcome, min(k)""",
)

_APPLY = (
    f"DELETE FROM grant_versions WHERE {_touched('grant_versions')} "
    f"AND {_empty('grant_versions')}",
    f"""UPDATE grant_versions SET valid_from = {_mapped("grant_versions.valid_from")},
                                  valid_to = {_mapped("grant_versions.valid_to")}
         WHERE {_touched("grant_versions")}""",
    f"""UPDATE objects SET valid_from = {_mapped("objects.valid_from")},
                           valid_to = {_mapped("objects.valid_to")}
         WHERE {_touched("objects")}""",
    f"DELETE FROM snapshots WHERE id IN {_REMOVED} OR status IN {INCOMPLETE!r}",
)


async def prune(conn: AsyncConnection, keep: set[int], *, dry_run: bool) -> PruneReport:
    """Remove every complete snapshot not in ``keep``, and every failed or aborted one, so that
    what the module docstring lists stays exactly as it was; then ``VACUUM``.

    ``keep`` names complete snapshots; the newest complete snapshot is kept whether it is named or
    not (the current facts hang on it). Refused (``DatabaseError``, nothing changed) while a
    snapshot is ``running``. Every change is made in one transaction; with ``dry_run`` the same
    figures are computed and nothing is written (a read-only connection will do). ``conn`` is a
    connection of its own: a transaction the caller left open on it is committed first.
    """
    if conn.in_transaction():
        await conn.commit()
    bytes_before = await _database_bytes(conn)
    try:
        await conn.exec_driver_sql("BEGIN" if dry_run else "BEGIN IMMEDIATE")
        report = await _prune_in_transaction(conn, keep, dry_run, bytes_before)
        for statement in _TEARDOWN:
            await conn.exec_driver_sql(statement)
        if dry_run:
            await conn.rollback()
            return report
        await conn.commit()
    except DBAPIError as error:
        await conn.rollback()
        raise DatabaseError(
            f"prune could not change the database; nothing was removed: {error.orig}"
        ) from None
    except BaseException:
        await conn.rollback()
        raise
    try:
        await _reclaim(conn)
    except DBAPIError as error:
        await conn.rollback()
        raise DatabaseError(
            f"the snapshots were removed, but the space could not be reclaimed ({error.orig}); "
            "run prune again when no one reads the database: it will remove nothing more, and "
            "reclaim the space"
        ) from None
    bytes_after = await _database_bytes(conn)
    return replace(report, bytes_after=bytes_after)


async def _prune_in_transaction(
    conn: AsyncConnection, keep: set[int], dry_run: bool, bytes_before: int
) -> PruneReport:
    snapshots = [
        (int(r[0]), str(r[1]))
        for r in await conn.execute(text("SELECT id, status FROM snapshots ORDER BY id"))
    ]
    running = [sid for sid, status in snapshots if status == "running"]
    if running:
        raise DatabaseError(
            f"snapshot {running[0]} is running; prune waits until no snapshot runs (nothing was "
            "removed). If no run is alive (it was killed), the next 'bbaccess snapshot' marks it "
            "aborted, and prune removes it then"
        )
    complete = [sid for sid, status in snapshots if status == "complete"]
    strays = sorted(keep - set(complete))
    if strays:
        raise ValueError(f"keep names snapshots that are not complete: {strays}")
    kept = sorted(keep | set(complete[-1:]))
    absorbs = _absorbing(complete, kept)
    incomplete = tuple(sid for sid, status in snapshots if status in INCOMPLETE)
    for statement in _SETUP:
        await conn.exec_driver_sql(statement)
    if absorbs:
        await conn.exec_driver_sql(
            f"INSERT INTO {_MAP} (old, new) VALUES (?, ?)", list(absorbs.items())
        )
    if absorbs:
        await conn.exec_driver_sql(
            f"INSERT INTO {_KEPT} (k, prev, n) VALUES (?, ?, ?)",
            [(k, prev, n) for n, (prev, k) in enumerate(zip([0, *kept], kept, strict=False))],
        )
        await conn.exec_driver_sql(_FIND_READS)
    moved = deleted = emptied = 0
    for table in ("grant_versions", "objects"):
        sql = _COUNT_VERSIONS.format(table=table, empty=_empty(table), touched=_touched(table))
        touched, empty = (await conn.execute(text(sql))).one()
        moved += int(touched) - int(empty)
        if table == "grant_versions":
            deleted += int(empty)
        else:
            emptied += int(empty)
    observations_moved = observations_deleted = 0
    if absorbs:
        observations_moved, observations_deleted = (
            await conn.execute(text(_COUNT_OBSERVATIONS))
        ).one()
    if not dry_run:
        for statement in (_REMAKE_RUNS if absorbs else ()) + _APPLY:
            await conn.exec_driver_sql(statement)
        await _relog(conn, sorted(set(absorbs.values())))
    return PruneReport(
        dry_run=dry_run,
        kept=tuple(kept),
        removed_complete=tuple(sorted(absorbs)),
        removed_incomplete=incomplete,
        versions_moved=moved + emptied,
        versions_deleted=deleted,
        versions_emptied=emptied,
        observations_moved=int(observations_moved),
        observations_deleted=int(observations_deleted),
        bytes_before=bytes_before,
        bytes_after=None,
    )


async def _relog(conn: AsyncConnection, absorbing: list[int]) -> None:
    """Write the change log again where the snapshot before a kept one changed: each snapshot
    that absorbed removed ones is now compared with the kept one before it. Every other kept
    snapshot's entries stand: the facts at it and at the one before it are unchanged."""
    for table in ("change_log", "baseline_scopes"):
        await conn.exec_driver_sql(
            f"DELETE FROM {table} WHERE snapshot_id NOT IN "
            "(SELECT id FROM snapshots WHERE status = 'complete') "
            f"OR snapshot_id IN (SELECT new FROM {_MAP})"
        )
    for snapshot_id in absorbing:
        await log_changes(conn, snapshot_id)


def _absorbing(complete: list[int], kept: list[int]) -> dict[int, int]:
    """{removed complete snapshot: the first kept snapshot after it}."""
    absorbs: dict[int, int] = {}
    later = iter(kept)
    target = next(later, None)
    for sid in complete:
        while target is not None and target < sid:
            target = next(later, None)
        if target != sid:
            assert target is not None, "the newest complete snapshot is always kept"
            absorbs[sid] = target
    return absorbs


async def _reclaim(conn: AsyncConnection) -> None:
    """VACUUM (it cannot run in a transaction), then fold the write-ahead log back into the file
    and truncate it, so that the file on disk shrinks now rather than at the next checkpoint."""
    await conn.exec_driver_sql("VACUUM")
    await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    await conn.commit()


async def _database_bytes(conn: AsyncConnection) -> int:
    """Bytes of the database file and its write-ahead log (an in-memory database: its pages)."""
    path = ""
    for _seq, name, file in (await conn.execute(text("PRAGMA database_list"))).all():
        if name == "main":
            path = str(file or "")
    if not path:
        pages = (await conn.execute(text("PRAGMA page_count"))).scalar_one()
        size = (await conn.execute(text("PRAGMA page_size"))).scalar_one()
        return int(pages) * int(size)
    wal = path + "-wal"
    return os.path.getsize(path) + (os.path.getsize(wal) if os.path.exists(wal) else 0)
