"""The snapshot writer's guards: what it refuses so that nothing wrong is merged."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from exporter.crawl.records import (
    GrantRecord,
    ObjectRecord,
    Outcome,
    Record,
    ScopeKind,
    ScopeRef,
    UserRecord,
)
from exporter.errors import DatabaseError
from exporter.store import writer as writer_module
from exporter.store.database import open_database, stage_path
from exporter.store.queries import diff
from exporter.store.sql import (
    GRANT_COLUMNS,
    GRANT_OBJECT_TYPES,
    GRANT_PERMISSIONS,
    GRANT_SUBJECT_TYPES,
    LABELS_SQL,
    grant_kind,
)
from exporter.store.writer import (
    MERGE_STATEMENTS,
    STAGE_BATCH_ROWS,
    STAGE_FLUSH_SECONDS,
    RunCounters,
    SnapshotSummary,
    SnapshotWriter,
)

ROLES = ScopeRef(ScopeKind.WORKSPACE_ROLES, "{w}", "workspace", "{w}", "w/permissions")


async def test_a_snapshot_another_run_aborted_is_never_completed(tmp_path: Path) -> None:
    engine = await open_database(tmp_path / "a.db")
    try:
        first = SnapshotWriter(engine, tool_version="t")
        await first.begin()
        scope = await first.scope_id(ROLES)
        await first.stage(scope, [GrantRecord("user", "{u}", "workspace", "{w}", "owner")])
        second = SnapshotWriter(engine, tool_version="t")
        await second.begin()  # finds the first running: marks it aborted, drops its pages
        await first.finish_scope(scope, Outcome.OK)
        with pytest.raises(DatabaseError, match="not running"):
            await first.complete(RunCounters())
        async with engine.connect() as conn:
            statuses = (await conn.execute(text("SELECT status FROM snapshots"))).all()
            grants = (await conn.execute(text("SELECT count(*) FROM grants"))).scalar()
        assert [s[0] for s in statuses] == ["aborted", "running"] and grants == 0
    finally:
        await engine.dispose()


async def test_a_scope_finished_twice_is_refused(tmp_path: Path) -> None:
    engine = await open_database(tmp_path / "a.db")
    try:
        writer = SnapshotWriter(engine, tool_version="t")
        await writer.begin()
        scope = await writer.scope_id(ROLES)
        await writer.finish_scope(scope, Outcome.FAILED, "boom")
        with pytest.raises(RuntimeError, match="already finished"):
            await writer.finish_scope(scope, Outcome.OK)
    finally:
        await engine.dispose()


async def test_staged_rows_are_written_in_batches_not_held_whole(tmp_path: Path) -> None:
    engine = await open_database(tmp_path / "a.db")
    try:
        writer = SnapshotWriter(engine, tool_version="t")
        await writer.begin()
        scope = await writer.scope_id(ROLES)

        async def staged() -> int:
            async with engine.connect() as conn:
                found = await conn.execute(text("SELECT count(*) FROM stage_grants"))
                return int(found.scalar_one())

        page = 100
        for n in range(STAGE_BATCH_ROWS // page + 1):
            await writer.stage(scope, [
                GrantRecord("user", f"{{u{n}-{i}}}", "workspace", "{w}", "member")
                for i in range(page)
            ])
        written = await staged()
        assert STAGE_BATCH_ROWS <= written < STAGE_BATCH_ROWS + page
        # Finishing a scope commits nothing on its own: its observation waits for the batch.
        await writer.finish_scope(scope, Outcome.OK)
        assert await staged() == written
        await writer.complete(RunCounters())
        async with engine.connect() as conn:
            grants = (await conn.execute(text("SELECT count(*) FROM grants"))).scalar()
        assert grants == STAGE_BATCH_ROWS + page
    finally:
        await engine.dispose()


# The deletion rule, names of failed scopes, and the snapshot's counts: a workspace's repository
# listing with the explicit user grants of each repository as its child scopes.
WS = "{w}"
R1, R2 = "{r1}", "{r2}"
U1, U2 = "{u1}", "{u2}"
REPOS = ScopeRef(ScopeKind.REPOSITORIES, WS, "workspace", WS, "w/repositories")
GROUPS = ScopeRef(ScopeKind.GROUPS, WS, "workspace", WS, "w/groups", source="membership")


def direct(repo: str) -> ScopeRef:
    kind, label = ScopeKind.REPOSITORY_USER_GRANTS, f"w/{repo}/grants"
    return ScopeRef(kind, WS, "repository", repo, label, REPOS, "direct")


def repository(uuid: str) -> ObjectRecord:
    return ObjectRecord("repository", uuid, uuid.strip("{}"), uuid.strip("{}"), True)


def grant(user: str, repo: str, permission: str = "read") -> GrantRecord:
    return GrantRecord("user", user, "repository", repo, permission)


Read = tuple[ScopeRef, Outcome, list[Record]]


async def snapshot(engine: AsyncEngine, reads: list[Read], *, skipped: int = 0) -> SnapshotSummary:
    """One complete snapshot: each scope staged, then finished with its outcome."""
    writer = SnapshotWriter(engine, tool_version="test")
    await writer.begin()
    for scope, outcome, records in reads:
        scope_id = await writer.scope_id(scope)
        await writer.stage(scope_id, records)
        await writer.finish_scope(scope_id, outcome)
    return await writer.complete(RunCounters(), skipped=skipped)


def query(path: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Rows of the real database file, read as any SQLite client would; the ``stage_*`` tables
    from the stage file beside it."""
    with closing(sqlite3.connect(path)) as conn:
        if stage_path(path).exists():
            conn.execute("ATTACH DATABASE ? AS stage", (str(stage_path(path)),))
        return list(conn.execute(sql, params))


async def grant_changes(engine: AsyncEngine, a: int, b: int) -> list[dict[str, Any]]:
    """Every grant row of ``bbaccess diff a b``, baseline included."""
    async with engine.connect() as conn:
        found = await diff(conn, a, b, with_baseline=True)
    return [r for r in found.changes + found.baseline if r["subject_uuid"] is not None]


async def test_a_child_read_again_as_its_repository_goes_is_closed_as_deleted(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.db"
    engine = await open_database(path)
    try:
        first = await snapshot(engine, [
            (REPOS, Outcome.OK, [repository(R1), repository(R2)]),
            (direct(R1), Outcome.OK, [grant(U1, R1)]),
            (direct(R2), Outcome.OK, [grant(U2, R2)]),
        ])  # fmt: skip
        # R1 leaves the listing, yet its grants page (read first) still shows U1.
        second = await snapshot(engine, [
            (direct(R1), Outcome.OK, [grant(U1, R1)]),
            (REPOS, Outcome.OK, [repository(R2)]),
            (direct(R2), Outcome.OK, [grant(U2, R2)]),
        ])  # fmt: skip
        a, b = first.snapshot_id, second.snapshot_id
        changes = await grant_changes(engine, a, b)
    finally:
        await engine.dispose()
    assert query(path, "SELECT valid_from, valid_to FROM grants WHERE object_uuid = ?", R1) == [
        (a, b)
    ]
    assert query(path, "SELECT * FROM current_access WHERE object_uuid = ?", R1) == []
    assert [r[0] for r in query(path, "SELECT object_uuid FROM current_access")] == [R2]
    at = "SELECT subject_uuid FROM access_at WHERE snapshot_id = ? AND object_uuid = ?"
    assert query(path, at, a, R1) == [(U1,)] and query(path, at, b, R1) == []
    assert [
        (r["change"], r["reason"], r["source"], r["subject_uuid"], r["object_uuid"], r["old_value"])
        for r in changes
    ] == [("revoked", "deleted repository", "direct", U1, R1, "read")]
    view = (
        "SELECT change, reason, subject_uuid FROM access_changes "
        "WHERE snapshot_id = ? AND object_uuid = ? AND subject_uuid IS NOT NULL"
    )
    assert query(path, view, b, R1) == [("revoked", "deleted repository", U1)]


async def test_a_child_first_read_as_its_repository_goes_never_becomes_current(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.db"
    engine = await open_database(path)
    try:
        first = await snapshot(engine, [(REPOS, Outcome.OK, [repository(R1), repository(R2)])])
        # R1's grants are read for the first time in the night R1 leaves the listing.
        second = await snapshot(engine, [
            (REPOS, Outcome.OK, [repository(R2)]),
            (direct(R1), Outcome.OK, [grant(U1, R1, "admin")]),
        ])  # fmt: skip
        a, b = first.snapshot_id, second.snapshot_id
        changes = await grant_changes(engine, a, b)
    finally:
        await engine.dispose()
    assert query(path, "SELECT * FROM grants WHERE object_uuid = ?", R1) == []
    assert query(path, "SELECT * FROM current_access WHERE object_uuid = ?", R1) == []
    at = "SELECT * FROM access_at WHERE snapshot_id = ? AND object_uuid = ?"
    assert query(path, at, b, R1) == []
    assert changes == []  # no grant, and no baseline of one, for a repository already gone
    closure = (
        "SELECT outcome, closure FROM observations WHERE snapshot_id = ? AND scope_id = "
        "(SELECT id FROM scopes WHERE kind = 'repository_user_grants' AND object_uuid = ?)"
    )
    assert query(path, closure, b, R1) == [("ok", "deleted")]


DEVS = "{w}:devs"


def member(user: str) -> GrantRecord:
    return GrantRecord("user", user, "group", DEVS, "member")


@pytest.mark.parametrize("outcome", [Outcome.FAILED, Outcome.FORBIDDEN])
async def test_names_staged_by_a_scope_that_was_not_read_whole_are_dropped(
    tmp_path: Path, outcome: Outcome
) -> None:
    path = tmp_path / "a.db"
    engine = await open_database(path)
    try:
        first = await snapshot(
            engine, [(GROUPS, Outcome.OK, [UserRecord(U1, "Ada Old", "ada", "a-1"), member(U1)])]
        )
        writer = SnapshotWriter(engine, tool_version="test")
        await writer.begin()
        scope_id = await writer.scope_id(GROUPS)
        # A page of the failing listing names U1 anew and a user seen nowhere else.
        await writer.stage(scope_id, [
            UserRecord(U1, "Ada New", "ada2", "a-1"), UserRecord(U2, "Ghost"), member(U2),
        ])  # fmt: skip
        await writer.finish_scope(scope_id, outcome, "gave up")
        assert query(path, "SELECT * FROM stage_users") == []  # a failed scope keeps nothing
        await writer.complete(RunCounters())
    finally:
        await engine.dispose()
    users = "SELECT uuid, display_name, nickname, last_seen FROM users ORDER BY uuid"
    assert query(path, users) == [(U1, "Ada Old", "ada", first.snapshot_id)]
    assert query(path, "SELECT subject_uuid, subject_name FROM current_access") == [(U1, "Ada Old")]


async def test_names_staged_by_a_scope_never_finished_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    engine = await open_database(path)
    try:
        await snapshot(engine, [(GROUPS, Outcome.OK, [UserRecord(U1, "Ada Old"), member(U1)])])
        writer = SnapshotWriter(engine, tool_version="test")
        await writer.begin()
        scope_id = await writer.scope_id(GROUPS)
        await writer.stage(scope_id, [UserRecord(U1, "Ada New"), UserRecord(U2, "Ghost")])
        await writer.complete(RunCounters())  # the scope has no observation: nothing of it
    finally:
        await engine.dispose()
    assert query(path, "SELECT uuid, display_name FROM users") == [(U1, "Ada Old")]


async def test_a_closure_is_counted_apart_from_the_scopes_read_ok(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    engine = await open_database(path)
    try:
        await snapshot(engine, [
            (REPOS, Outcome.OK, [repository(R1), repository(R2)]),
            (direct(R1), Outcome.OK, [grant(U1, R1)]),
            (direct(R2), Outcome.OK, [grant(U2, R2)]),
            (GROUPS, Outcome.OK, [member(U1)]),
        ])  # fmt: skip
        # R1 is gone: its grants are closed without being read. Three per-object scopes were
        # left for a later night, and the group listing failed.
        deleting = await snapshot(engine, [
            (REPOS, Outcome.OK, [repository(R2)]),
            (direct(R2), Outcome.OK, [grant(U2, R2)]),
            (GROUPS, Outcome.FAILED, []),
        ], skipped=3)  # fmt: skip
        # Only rationed scopes are missing: a skipped one finished, two more counted.
        rationed = await snapshot(engine, [
            (REPOS, Outcome.OK, [repository(R2)]),
            (direct(R2), Outcome.SKIPPED, []),
            (GROUPS, Outcome.OK, [member(U1)]),
        ], skipped=2)  # fmt: skip
    finally:
        await engine.dispose()
    assert deleting.outcomes == {"ok": 2, "failed": 1, "skipped": 3}
    assert deleting.closed == 1 and deleting.has_gaps
    assert rationed.outcomes == {"ok": 2, "skipped": 3}
    assert rationed.closed == 0 and not rationed.has_gaps
    counts = (
        "SELECT scopes_ok, scopes_forbidden, scopes_failed, scopes_skipped FROM snapshots "
        "WHERE id = ?"
    )
    assert query(path, counts, deleting.snapshot_id) == [(2, 0, 1, 3)]
    assert query(path, counts, rationed.snapshot_id) == [(2, 0, 0, 3)]
    observed = (
        "SELECT s.object_uuid, o.outcome, o.closure, o.detail FROM observations o "
        "JOIN scopes s ON s.id = o.scope_id WHERE o.snapshot_id = ? AND s.object_type = ? "
        "ORDER BY s.object_uuid"
    )
    assert query(path, observed, deleting.snapshot_id, "repository") == [
        (R1, "ok", "deleted", "deleted with its repository"),
        (R2, "ok", None, None),
    ]
    assert query(path, "SELECT valid_to FROM grants WHERE object_uuid = ?", R1) == [
        (deleting.snapshot_id,)
    ]


@pytest.mark.parametrize("night", ["first", "later"])
async def test_a_scope_read_for_the_first_time_keeps_the_last_value_of_a_repeated_row(
    tmp_path: Path, night: str
) -> None:
    """A scope with no open grant is inserted straight from the stage's key, or on a first
    night (no open grant anywhere) sorted as it is inserted, with no key: either way a row
    repeated pages apart with another value is still one version, the last one staged."""
    path = tmp_path / "a.db"
    engine = await open_database(path)
    try:
        if night == "later":  # another scope's grants are open
            await snapshot(engine, [(ROLES, Outcome.OK, [
                GrantRecord("user", U1, "workspace", WS, "member")])])  # fmt: skip
        writer = SnapshotWriter(engine, tool_version="test")
        await writer.begin()
        repos, grants = await writer.scope_ids([REPOS, direct(R1)])
        await writer.stage(repos, [repository(R1)])
        await writer.stage(grants, [grant(U1, R1, "admin"), grant(U2, R1, "write")])
        await writer.stage(grants, [grant(f"{{x{n}}}", R1) for n in range(STAGE_BATCH_ROWS)])
        await writer.stage(grants, [grant(U1, R1, "read"), grant(U2, R1, "write")])
        await writer.finish_scope(repos, Outcome.OK)
        await writer.finish_scope(grants, Outcome.OK)
        await writer.complete(RunCounters())
    finally:
        await engine.dispose()
    current = ("SELECT subject_uuid, permission FROM grants WHERE subject_uuid IN (?, ?) "
               "AND object_type = 'repository' ORDER BY 1")  # fmt: skip
    assert query(path, current, U1, U2) == [(U1, "read"), (U2, "write")]
    assert query(path, "SELECT count(*) FROM grants WHERE object_type = 'repository'") == [
        (STAGE_BATCH_ROWS + 2,)
    ]


async def test_a_row_staged_twice_counts_once_with_its_last_value(tmp_path: Path) -> None:
    """Paging drift can repeat a row pages apart, even with another value (read in between):
    the stage keeps every row as it comes, and the merge keeps the last one of each key."""
    path = tmp_path / "a.db"
    engine = await open_database(path)
    try:
        await snapshot(engine, [
            (REPOS, Outcome.OK, [repository(R1), repository(R2)]),
            (direct(R1), Outcome.OK, [grant(U1, R1, "read")]),
        ])  # fmt: skip
        renamed = ObjectRecord("repository", R1, "r1-new", "r1-new", True)
        writer = SnapshotWriter(engine, tool_version="test")
        await writer.begin()
        repos, grants = await writer.scope_ids([REPOS, direct(R1)])
        await writer.stage(repos, [repository(R1), repository(R2)])
        await writer.stage(grants, [grant(U1, R1, "read"), grant(U2, R1, "write")])
        for _ in range(3):  # far apart: more rows than a batch in between
            await writer.stage(grants, [grant(f"{{x{n}}}", R1) for n in range(STAGE_BATCH_ROWS)])
        await writer.stage(repos, [renamed, repository(R2)])
        await writer.stage(grants, [grant(U1, R1, "admin"), grant(U2, R1, "write")])
        await writer.finish_scope(repos, Outcome.OK)
        await writer.finish_scope(grants, Outcome.OK)
        await writer.complete(RunCounters())
    finally:
        await engine.dispose()
    current = "SELECT subject_uuid, permission FROM grants WHERE valid_to IS NULL AND " \
              "subject_uuid IN (?, ?) ORDER BY 1"  # fmt: skip
    assert query(path, current, U1, U2) == [(U1, "admin"), (U2, "write")]
    assert query(path, "SELECT count(*) FROM grants WHERE valid_to IS NULL") == [
        (2 + STAGE_BATCH_ROWS,)
    ]
    assert query(path, "SELECT slug FROM objects WHERE valid_to IS NULL ORDER BY slug") == [
        ("r1-new",), ("r2",)
    ]


async def test_a_first_night_keeps_the_last_of_a_row_staged_twice_and_stores_grants_by_key(
    tmp_path: Path,
) -> None:
    """A first night keeps the last row of a key staged twice (paging drift), as any other night
    does, and stores its grants in the order of their key, not in the order pages came: a
    question reading open grants through their index then reads the table in order (three
    times as fast at ``huge`` as in page order)."""
    path = tmp_path / "a.db"
    engine = await open_database(path)
    try:
        writer = SnapshotWriter(engine, tool_version="test")
        await writer.begin()
        repos, grants = await writer.scope_ids([REPOS, direct(R1)])
        await writer.stage(repos, [repository(R1)])
        await writer.stage(grants, [grant(U1, R1, "read"), grant(U2, R1, "write")])
        for _ in range(2):  # far apart: more rows than a batch in between
            await writer.stage(grants, [grant(f"{{x{n}}}", R1) for n in range(STAGE_BATCH_ROWS)])
        await writer.stage(grants, [grant(U1, R1, "admin")])
        await writer.finish_scope(repos, Outcome.OK)
        await writer.finish_scope(grants, Outcome.OK)
        summary = await writer.complete(RunCounters())
    finally:
        await engine.dispose()
    assert summary.status == "complete"
    current = "SELECT subject_uuid, permission FROM grants WHERE valid_to IS NULL AND " \
              "subject_uuid IN (?, ?) ORDER BY 1"  # fmt: skip
    assert query(path, current, U1, U2) == [(U1, "admin"), (U2, "write")]
    assert query(path, "SELECT count(*) FROM grants") == [(2 + STAGE_BATCH_ROWS,)]
    out_of_order = ("SELECT count(*) FROM (SELECT id, lag(id) OVER (ORDER BY scope_id, "
                    "subject_id, object_id) AS before FROM grant_versions) WHERE id < before")
    assert query(path, out_of_order) == [(0,)]


async def test_the_merge_finds_a_deleted_repository_by_its_uuid(tmp_path: Path) -> None:
    """The closure of a deleted object's child scopes looks the object up by its uuid. By
    ``valid_to`` instead (SQLite's choice without a hint), each child scope scanned every object
    closed that night: a night that closed 100,000 repositories (``huge``) never finished."""
    path = tmp_path / "a.db"
    engine = await open_database(path)
    await engine.dispose()
    closure = next(s for s in MERGE_STATEMENTS if "CREATE TEMP TABLE merge_closed_scopes" in s)
    plan = [row[3] for row in query(path, f"EXPLAIN QUERY PLAN {closure}", 2)]
    objects = [step for step in plan if step.startswith("SEARCH o USING") and "objects" in step]
    assert objects and all("valid_to" not in step for step in objects), plan


async def test_a_merge_that_sets_indexes_aside_builds_them_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge that adds more grants than are open drops the indexes it does not read and
    builds them after: the database ends with the same indexes and the same answers."""
    fresh = tmp_path / "fresh.db"
    await (await open_database(fresh)).dispose()
    indexes = "SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
    monkeypatch.setattr(writer_module, "BULK_MIN_ROWS", 0)
    path = tmp_path / "a.db"
    engine = await open_database(path)
    try:
        reads: list[Read] = [
            (REPOS, Outcome.OK, [repository(R1)]),
            (direct(R1), Outcome.OK, [grant(U1, R1)]),
        ]
        await snapshot(engine, reads)
        await snapshot(engine, [*reads[:1], (direct(R1), Outcome.OK, [grant(U1, R1),
                                                                    grant(U2, R1, "admin")])])
        changes = await grant_changes(engine, 1, 2)
    finally:
        await engine.dispose()
    assert query(path, indexes) == query(fresh, indexes)
    assert [(c["subject_uuid"], c["change"], c["new_value"]) for c in changes] == [
        (U2, "granted", "admin")
    ]
    by_subject = ("SELECT count(*) FROM grant_versions INDEXED BY ix_grant_versions_subject "
                  "WHERE subject_id = (SELECT id FROM names WHERE uuid = ?)")
    assert query(path, by_subject, U2) == [(1,)]
    # A uuid first seen goes by itself until a user's name or an object's label names it.
    assert query(path, "SELECT name FROM names WHERE uuid = ?", U2) == [(U2,)]
    # The names, set aside too, are found by name as they are now (built after the labels).
    by_name = "SELECT uuid FROM names INDEXED BY ix_names_name WHERE name = ?"
    assert query(path, by_name, U2) == [(U2,)]
    label = query(path, "SELECT label FROM labels WHERE uuid = ?", R1)[0][0]
    assert query(path, by_name, label) == [(R1,)]
    assert query(path, "SELECT uuid FROM labels INDEXED BY ix_labels_label WHERE label = ?",
                 label) == [(R1,)]  # fmt: skip


async def test_staged_rows_that_waited_long_enough_are_written_without_a_full_batch(
    tmp_path: Path,
) -> None:
    """A slow night's pages reach the file as they come: what has waited STAGE_FLUSH_SECONDS is
    written with the next page or finished listing, batch full or not."""
    now = [0.0]
    engine = await open_database(tmp_path / "a.db")
    try:
        writer = SnapshotWriter(engine, tool_version="t", monotonic=lambda: now[0])
        await writer.begin()
        scope = await writer.scope_id(ROLES)

        def staged() -> list[tuple[Any, ...]]:
            counts = "SELECT (SELECT count(*) FROM stage_grants), " \
                     "(SELECT count(*) FROM stage_observations)"  # fmt: skip
            return query(tmp_path / "a.db", counts)

        await writer.stage(scope, [GrantRecord("user", "{u1}", "workspace", "{w}", "member")])
        now[0] = STAGE_FLUSH_SECONDS - 0.1
        await writer.stage(scope, [GrantRecord("user", "{u2}", "workspace", "{w}", "member")])
        assert staged() == [(0, 0)]
        now[0] = STAGE_FLUSH_SECONDS
        await writer.stage(scope, [GrantRecord("user", "{u3}", "workspace", "{w}", "member")])
        assert staged() == [(3, 0)]
        await writer.finish_scope(scope, Outcome.OK)
        assert staged() == [(3, 0)]  # the observation waits its turn
        now[0] = 2 * STAGE_FLUSH_SECONDS
        other = await writer.scope_id(REPOS)
        await writer.finish_scope(other, Outcome.OK)
        assert staged() == [(3, 2)]
    finally:
        await engine.dispose()


async def test_a_zombie_runs_rows_do_not_displace_the_live_runs_rows_in_the_dedupe(
    tmp_path: Path,
) -> None:
    """A run marked aborted by the next one (the case ``_claim`` exists for) may still flush
    pages: its rows are no part of the live run, even the later copy of a key the live run
    staged (the merge keeps the last copy of a key)."""
    now = [0.0]
    engine = await open_database(tmp_path / "a.db")
    try:
        zombie = SnapshotWriter(engine, tool_version="t", monotonic=lambda: now[0])
        await zombie.begin()
        live = SnapshotWriter(engine, tool_version="t", monotonic=lambda: now[0])
        await live.begin()  # marks the zombie aborted
        scope = await live.scope_id(ROLES)
        await live.stage(scope, [GrantRecord("user", "{u1}", "workspace", WS, "owner")])
        now[0] += 10  # flush due
        await live.stage(scope, [GrantRecord("user", "{u2}", "workspace", WS, "member")])
        zscope = await zombie.scope_id(ROLES)
        now[0] += 10
        await zombie.stage(zscope, [GrantRecord("user", "{u1}", "workspace", WS, "member")])
        await live.finish_scope(scope, Outcome.OK)
        await live.complete(RunCounters())
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT subject_uuid, permission FROM grants WHERE valid_to IS NULL ORDER BY 1"
            ))).all()
    finally:
        await engine.dispose()
    assert [tuple(r) for r in rows] == [("{u1}", "owner"), ("{u2}", "member")]


def test_a_week_of_access_changes_by_date_does_not_read_every_version(
    tmp_path: Path,
) -> None:
    """A question about last week by ``snapshot_at`` reads what last week's snapshots logged and
    opened, not every version of the fact tables (the cost would grow with the history)."""
    asyncio.run(_fresh(tmp_path / "a.db"))
    with sqlite3.connect(tmp_path / "a.db") as conn:
        plan = [r[3] for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM access_changes "
            "WHERE snapshot_at >= date('now', '-7 days')")]
    assert not [step for step in plan if step in ("SCAN o", "SCAN g", "SCAN c")], plan


async def test_latest_access_changes_are_the_latest_complete_snapshots_and_read_only_them(
    tmp_path: Path,
) -> None:
    """``latest_access_changes`` answers as ``access_changes`` of the latest complete snapshot (a
    failed run after it changes nothing), and reads that snapshot's log only; the same filter
    on ``access_changes``, a subquery, reads every night's log."""
    path = tmp_path / "a.db"
    engine = await open_database(path)
    try:
        await snapshot(engine, [(REPOS, Outcome.OK, [repository(R1)]),
                                (direct(R1), Outcome.OK, [grant(U1, R1, "read")])])
        await snapshot(engine, [(REPOS, Outcome.OK, [repository(R1), repository(R2)]),
                                (direct(R1), Outcome.OK, [grant(U1, R1, "write"),
                                                          grant(U2, R1, "read")])])
        writer = SnapshotWriter(engine, tool_version="test")
        await writer.begin()
        await writer.fail("the network went away", RunCounters())
    finally:
        await engine.dispose()
    latest = query(path, "SELECT * FROM latest_access_changes ORDER BY object_uuid, subject_uuid")
    by_subquery = query(path, "SELECT * FROM access_changes WHERE snapshot_id = (SELECT max(id) "
                              "FROM snapshots WHERE status = 'complete') "
                              "ORDER BY object_uuid, subject_uuid")  # fmt: skip
    assert latest == by_subquery
    assert {(row[0], row[8]) for row in latest} == {(2, "created"), (2, "raised"), (2, "granted")}

    def scans(sql: str) -> list[str]:
        plan = [row[3] for row in query(path, f"EXPLAIN QUERY PLAN {sql}")]
        return [step for step in plan if re.match(r"SCAN (sn|snapshots)\b", step)]

    assert scans("SELECT * FROM latest_access_changes") == []
    assert scans(
        "SELECT * FROM access_changes WHERE snapshot_id = (SELECT max(id) FROM snapshots)"
    )  # why the view is there


async def _fresh(path: Path) -> None:
    await (await open_database(path)).dispose()


async def test_a_user_named_on_every_page_of_a_listing_is_staged_once(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    engine = await open_database(path)
    try:
        writer = SnapshotWriter(engine, tool_version="t")
        await writer.begin()
        scope = await writer.scope_id(ROLES)
        for page in range(3):
            await writer.stage(scope, [
                UserRecord(U1, "Ada"),
                GrantRecord("user", U1, "workspace", f"{{w{page}}}", "member"),
            ])  # fmt: skip
        await writer.finish_scope(scope, Outcome.OK)
        await writer._flush()
        staged = query(path, "SELECT uuid, display_name FROM stage_users")
        await writer.complete(RunCounters())
    finally:
        await engine.dispose()
    assert staged == [(U1, "Ada")]
    assert query(path, "SELECT uuid, display_name FROM users") == [(U1, "Ada")]


async def test_every_uuid_a_view_shows_has_a_name_and_a_filter_by_it_finds_the_row(
    tmp_path: Path,
) -> None:
    """A grant to a group whose listing was never read, by someone never named, shows their
    uuids as names (as before), and a filter on that name finds it: the views show
    ``names.name`` as it is, so every uuid must have one."""
    path = tmp_path / "a.db"
    engine = await open_database(path)
    try:
        await snapshot(engine, [
            (REPOS, Outcome.OK, [repository(R1)]),
            (direct(R1), Outcome.OK, [GrantRecord("group", "{g}", "repository", R1, "write"),
                                      GrantRecord("user", U1, "repository", R1, "read")]),
        ])  # fmt: skip
    finally:
        await engine.dispose()
    unnamed = query(path, "SELECT u FROM (SELECT subject_uuid AS u FROM grants UNION "
                          "SELECT object_uuid FROM grants UNION SELECT workspace_uuid FROM scopes) "
                          "WHERE u NOT IN (SELECT uuid FROM names)")  # fmt: skip
    assert unnamed == []
    shown = query(path, "SELECT subject_name, object_name, workspace FROM current_access "
                        "WHERE subject_name = '{g}'")  # fmt: skip
    assert shown == [("{g}", "{w}/r1", "{w}")]
    assert query(path, "SELECT user_name FROM current_access_sources "
                       "WHERE user_name = ?", U1) == [(U1,)]  # fmt: skip


async def test_a_uuid_first_seen_in_a_later_snapshot_gets_a_name_and_a_rename_reaches_it(
    tmp_path: Path,
) -> None:
    """The merge names only what is new or renamed: a group first granted in the second
    snapshot is named, and a user's new display name replaces the old one."""
    path = tmp_path / "a.db"
    engine = await open_database(path)
    try:
        reads: list[Read] = [
            (REPOS, Outcome.OK, [repository(R1)]),
            (direct(R1), Outcome.OK, [UserRecord(U1, "Ada"), grant(U1, R1)]),
        ]
        await snapshot(engine, reads)
        await snapshot(engine, [reads[0], (direct(R1), Outcome.OK, [
            UserRecord(U1, "Ada Lovelace"), grant(U1, R1),
            GrantRecord("group", "{g2}", "repository", R1, "write"),
        ])])  # fmt: skip
    finally:
        await engine.dispose()
    assert query(path, "SELECT subject_name FROM current_access ORDER BY subject_name") == [
        ("Ada Lovelace",), ("{g2}",)
    ]
    assert query(path, "SELECT name FROM names WHERE name = 'Ada'") == []


async def test_a_merge_relabels_what_was_renamed_and_keeps_every_other_label(
    tmp_path: Path,
) -> None:
    """Labels are brought up to date for the objects with a new version and for every object of
    a renamed workspace (its slug is in their labels): the same labels as computed whole."""
    path = tmp_path / "a.db"
    workspace = ScopeRef(ScopeKind.WORKSPACE, WS, "workspace", WS, "w")

    def named(slug: str) -> ObjectRecord:
        return ObjectRecord("workspace", WS, slug, slug.title(), True)

    engine = await open_database(path)
    try:
        repos = [repository(R1), repository(R2), repository("{r3}")]
        await snapshot(engine, [(workspace, Outcome.OK, [named("acme")]),
                                (REPOS, Outcome.OK, repos)])  # fmt: skip
        labels = "SELECT uuid, label FROM labels ORDER BY uuid"
        assert query(path, labels) == [
            (R1, "acme/r1"), (R2, "acme/r2"), ("{r3}", "acme/r3"), (WS, "acme")
        ]
        # r1 renamed, r3 deleted; the workspace as it was.
        renamed = ObjectRecord("repository", R1, "payments", "Payments", True)
        await snapshot(engine, [(workspace, Outcome.OK, [named("acme")]),
                                (REPOS, Outcome.OK, [renamed, repository(R2)])])  # fmt: skip
        assert query(path, labels) == [
            (R1, "acme/payments"), (R2, "acme/r2"), ("{r3}", "acme/r3"), (WS, "acme")
        ]
        # The workspace renamed: every label in it follows, the deleted repository's too.
        await snapshot(engine, [(workspace, Outcome.OK, [named("globex")]),
                                (REPOS, Outcome.OK, [renamed, repository(R2)])])  # fmt: skip
        assert query(path, labels) == [
            (R1, "globex/payments"), (R2, "globex/r2"), ("{r3}", "globex/r3"), (WS, "globex")
        ]
        whole = query(path, f"SELECT uuid, object_type, label, name, workspace_uuid FROM "
                            f"({LABELS_SQL}) ORDER BY uuid")  # fmt: skip
        assert query(path, "SELECT * FROM labels ORDER BY uuid") == whole
        assert query(path, "SELECT name FROM names WHERE uuid IN (?, ?) ORDER BY name", R1, WS) == [
            ("globex",), ("globex/payments",)
        ]
    finally:
        await engine.dispose()


EFFECTIVE = ScopeRef(
    ScopeKind.REPOSITORY_PERMISSIONS, WS, "workspace", WS, "w/effective", source="effective"
)


def users(n: int) -> list[str]:
    return [f"{{u{i}}}" for i in range(n)]


async def staged_at_merge(
    monkeypatch: pytest.MonkeyPatch, engine: AsyncEngine, reads: list[Read]
) -> dict[str, int]:
    """One snapshot of ``reads``; the rows each stage table held when the merge began."""
    seen: dict[str, int] = {}
    merge = writer_module.merge_staged

    async def counting(conn: Any, snapshot_id: int, *rest: Any) -> None:
        for table in ("stage_grants", "stage_gone"):
            found = await conn.execute(text(f"SELECT count(*) FROM {table}"))
            seen[table] = int(found.scalar_one())
        await merge(conn, snapshot_id, *rest)

    monkeypatch.setattr(writer_module, "merge_staged", counting)
    await snapshot(engine, reads)
    monkeypatch.setattr(writer_module, "merge_staged", merge)
    return seen


async def test_a_listing_read_again_stages_only_what_changed_and_every_change_is_merged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A workspace-wide listing of 100,000 rows changes by a few percent a night: only the rows
    that differ are staged, and the versions no page showed; the merge makes of them exactly
    the changes of staging every row, repeats of a key across pages included."""
    path = tmp_path / "a.db"
    engine = await open_database(path)
    u = users(51)
    try:
        await snapshot(engine, [(EFFECTIVE, Outcome.OK, [grant(x, R1) for x in u[:50]])])
        tonight = [grant(x, R1) for x in u[:45]] + [
            grant(u[45], R1, "write"),  # raised
            # u[46] is gone
            grant(u[47], R1), grant(u[48], R1, "write"), grant(u[49], R1),
            grant(u[50], R1),  # new
            # Repeats pages later (paging drift): the last copy counts.
            grant(u[47], R1, "admin"), grant(u[48], R1), grant(u[49], R1),
        ]  # fmt: skip
        staged = await staged_at_merge(monkeypatch, engine, [
            (EFFECTIVE, Outcome.OK, tonight)
        ])  # fmt: skip
        changes = await grant_changes(engine, 1, 2)
    finally:
        await engine.dispose()
    # u45, u47's last copy, u48's two copies, u49's repeat, u50; and u46's version.
    assert staged == {"stage_grants": 6, "stage_gone": 1}
    assert sorted((c["subject_uuid"], c["change"], c["old_value"], c["new_value"])
                  for c in changes) == [
        (u[45], "raised", "read", "write"),
        (u[46], "revoked", "read", None),
        (u[47], "raised", "read", "admin"),
        (u[50], "granted", None, "read"),
    ]  # fmt: skip
    current = "SELECT subject_uuid, permission FROM grants WHERE valid_to IS NULL"
    expected = {x: "read" for x in u if x != u[46]} | {u[45]: "write", u[47]: "admin"}
    assert dict(query(path, current)) == expected
    # Nothing unchanged was closed and opened again: 50 versions, 3 new ones.
    assert query(path, "SELECT count(*) FROM grants") == [(53,)]


async def test_a_listing_that_fails_after_its_first_page_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.db"
    engine = await open_database(path)
    u = users(10)
    try:
        await snapshot(engine, [(EFFECTIVE, Outcome.OK, [grant(x, R1) for x in u])])
        await snapshot(engine, [(EFFECTIVE, Outcome.FAILED, [grant(u[0], R1, "admin")])])
        changes = await grant_changes(engine, 1, 2)
    finally:
        await engine.dispose()
    assert changes == []
    assert query(path, "SELECT count(*), min(permission) FROM grants WHERE valid_to IS NULL") \
        == [(10, "read")]  # fmt: skip


@pytest.mark.parametrize("pages", [0, 1], ids=["no page staged", "an empty page staged"])
async def test_a_listing_read_ok_and_empty_revokes_every_grant_of_it(
    tmp_path: Path, pages: int
) -> None:
    path = tmp_path / "a.db"
    engine = await open_database(path)
    u = users(3)
    try:
        await snapshot(engine, [(EFFECTIVE, Outcome.OK, [grant(x, R1) for x in u])])
        writer = SnapshotWriter(engine, tool_version="test")
        await writer.begin()
        scope_id = await writer.scope_id(EFFECTIVE)
        for _ in range(pages):
            await writer.stage(scope_id, [])
        await writer.finish_scope(scope_id, Outcome.OK)
        await writer.complete(RunCounters())
        changes = await grant_changes(engine, 1, 2)
    finally:
        await engine.dispose()
    assert sorted((c["subject_uuid"], c["change"]) for c in changes) == [
        (x, "revoked") for x in u
    ]
    assert query(path, "SELECT count(*) FROM grants WHERE valid_to IS NULL") == [(0,)]


async def test_a_page_that_waits_for_its_listings_grants_while_a_batch_is_written_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first page of a listing waits while its open grants load; other pages meanwhile fill
    a batch and it is written. The waiting page's rows go to the next batch, not to the one
    already written (they were lost, and the merge closed every repository they named)."""
    path = tmp_path / "a.db"
    engine = await open_database(path)
    flushed = asyncio.Event()
    load = SnapshotWriter._load_known

    async def load_after_a_flush(self: SnapshotWriter, scope_id: int) -> Any:
        await flushed.wait()
        return await load(self, scope_id)

    monkeypatch.setattr(SnapshotWriter, "_load_known", load_after_a_flush)
    try:
        writer = SnapshotWriter(engine, tool_version="test")
        await writer.begin()
        repos, roles = await writer.scope_ids([REPOS, ROLES])
        waiting = asyncio.create_task(writer.stage(repos, [repository(R1), repository(R2)]))
        await asyncio.sleep(0)  # the page waits for its listing's grants
        writer._listing_ids.discard(roles)  # this page does not wait
        await writer.stage(roles, [
            GrantRecord("user", f"{{u{n}}}", "workspace", "{w}", "member")
            for n in range(STAGE_BATCH_ROWS)
        ])  # fmt: skip
        flushed.set()
        await waiting
        for scope_id in (repos, roles):
            await writer.finish_scope(scope_id, Outcome.OK)
        await writer.complete(RunCounters())
    finally:
        await engine.dispose()
    assert query(path, "SELECT uuid FROM objects WHERE valid_to IS NULL ORDER BY 1") == [
        (R1,), (R2,)
    ]


async def test_a_page_given_up_while_its_listings_grants_load_leaves_the_other_pages_theirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of a listing share one load of its open grants. A page that is cancelled while it
    waits must not cancel the load under the other pages: they would end with it, and their
    rows would never be staged."""
    path = tmp_path / "a.db"
    engine = await open_database(path)
    release = asyncio.Event()
    load = SnapshotWriter._load_known

    async def slow_load(self: SnapshotWriter, scope_id: int) -> Any:
        await release.wait()
        return await load(self, scope_id)

    monkeypatch.setattr(SnapshotWriter, "_load_known", slow_load)
    try:
        writer = SnapshotWriter(engine, tool_version="test")
        await writer.begin()
        (roles,) = await writer.scope_ids([ROLES])
        pages = [asyncio.create_task(writer.stage(roles, [
            GrantRecord("user", user, "workspace", "{w}", "member")]))
            for user in ("{u1}", "{u2}")]  # fmt: skip
        await asyncio.sleep(0)  # both wait for the load
        pages[0].cancel()
        release.set()
        await pages[1]
        with pytest.raises(asyncio.CancelledError):
            await pages[0]
        await writer.finish_scope(roles, Outcome.OK)
        await writer.complete(RunCounters())
    finally:
        await engine.dispose()
    assert query(path, "SELECT subject_uuid FROM grants WHERE valid_to IS NULL") == [("{u2}",)]


async def test_the_stage_is_a_file_of_its_own(tmp_path: Path) -> None:
    """What a run stages goes to ``PATH-stage``, not to the database: the merge leaves no free
    pages in the database where the stage was (a snapshot run removes the stage file at its
    end); the next run starts from an empty stage."""
    path = tmp_path / "a.db"
    engine = await open_database(path)
    try:
        writer = SnapshotWriter(engine, tool_version="test")
        await writer.begin()
        (roles,) = await writer.scope_ids([ROLES])
        await writer.stage(roles, [
            GrantRecord("user", f"{{u{n}}}", "workspace", "{w}", "member")
            for n in range(3 * STAGE_BATCH_ROWS)
        ])  # fmt: skip
        await writer.finish_scope(roles, Outcome.OK)
        await writer._flush()
        assert query(path, "SELECT count(*) FROM stage.stage_grants") == [(3 * STAGE_BATCH_ROWS,)]
        await writer.complete(RunCounters())
    finally:
        await engine.dispose()
    assert query(path, "SELECT count(*) FROM grants") == [(3 * STAGE_BATCH_ROWS,)]
    assert not query(path, "SELECT name FROM main.sqlite_master WHERE name LIKE 'stage%'")
    assert query(path, "PRAGMA main.freelist_count") == [(0,)]
    engine = await open_database(path)
    try:
        await SnapshotWriter(engine, tool_version="test").begin()
    finally:
        await engine.dispose()
    assert query(path, "SELECT count(*) FROM stage.stage_grants") == [(0,)]


async def test_a_merge_that_fails_after_it_changed_the_stage_leaves_it_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merge keys and de-duplicates the stage before it fails (here in the change log). The
    stage, larger than its cache, is rolled back with the database: the run is recorded failed,
    not as a damaged database, and the next night merges."""
    path = tmp_path / "a.db"
    rows = [GrantRecord("user", f"{{u{n}}}", "workspace", f"{{w{n % 7}}}", "member")
            for n in range(8 * STAGE_BATCH_ROWS)]  # fmt: skip

    async def night(*, failing: bool) -> None:
        engine = await open_database(path)
        try:
            writer = SnapshotWriter(engine, tool_version="test")
            await writer.begin()
            (roles,) = await writer.scope_ids([ROLES])
            await writer.stage(roles, rows)
            await writer.stage(roles, rows[: len(rows) // 2])  # repeated rows, de-duplicated
            await writer.finish_scope(roles, Outcome.OK)
            if not failing:
                await writer.complete(RunCounters())
                return
            with monkeypatch.context() as patched:
                async def broken(conn: Any, snapshot_id: int) -> None:
                    raise sqlite3.OperationalError("a failure late in the merge")

                patched.setattr(writer_module, "log_changes", broken)
                with pytest.raises(sqlite3.OperationalError):
                    await writer.complete(RunCounters())
            await writer.fail("the merge failed", RunCounters())
        finally:
            await engine.dispose()

    await night(failing=True)
    assert query(path, "SELECT id, status FROM snapshots") == [(1, "failed")]
    assert query(path, "PRAGMA stage.integrity_check") == [("ok",)]
    await night(failing=False)
    assert query(path, "SELECT id, status FROM snapshots") == [(1, "failed"), (2, "complete")]
    assert query(path, "SELECT count(*) FROM grants WHERE valid_to IS NULL") == [(len(rows),)]


async def test_a_stage_file_that_is_no_database_is_made_anew(tmp_path: Path) -> None:
    """The stage has no journal: a machine that stops mid-write may leave it torn. It holds
    nothing a run needs, so the next run makes it anew instead of failing."""
    path = tmp_path / "a.db"
    stage_path(path).write_bytes(b"not a database, " * 1000)
    engine = await open_database(path)
    try:
        writer = SnapshotWriter(engine, tool_version="test")
        await writer.begin()
        (roles,) = await writer.scope_ids([ROLES])
        await writer.stage(roles, [GrantRecord("user", "{u1}", "workspace", "{w}", "member")])
        await writer.finish_scope(roles, Outcome.OK)
        await writer.complete(RunCounters())
    finally:
        await engine.dispose()
    assert query(path, "SELECT subject_uuid FROM grants") == [("{u1}",)]


async def night_of_members(path: Path, rows: int, *, watch: Any = None) -> SnapshotSummary:
    """A snapshot of one workspace listing with ``rows`` members; ``watch`` is called at the end
    of the merge's statements, before its commit."""
    engine = await open_database(path)
    try:
        writer = SnapshotWriter(engine, tool_version="test")
        await writer.begin()
        (roles,) = await writer.scope_ids([ROLES])
        await writer.stage(roles, [
            GrantRecord("user", f"{{u{n}}}", "workspace", "{w}", "member") for n in range(rows)
        ])  # fmt: skip
        await writer.finish_scope(roles, Outcome.OK)
        if watch is None:
            return await writer.complete(RunCounters())
        merge = writer_module.merge_staged

        async def watched(conn: Any, snapshot_id: int, *rest: Any) -> None:
            await merge(conn, snapshot_id, *rest)
            watch()

        with pytest.MonkeyPatch.context() as patched:
            patched.setattr(writer_module, "merge_staged", watched)
            return await writer.complete(RunCounters())
    finally:
        await engine.dispose()


def log_files(path: Path) -> dict[str, int]:
    """The bytes of the database's write-ahead log and rollback journal, 0 where there is none."""
    found = {}
    for suffix in ("-wal", "-journal"):
        beside = path.with_name(path.name + suffix)
        found[suffix] = beside.stat().st_size if beside.exists() else 0
    return found


async def test_the_first_merge_writes_each_page_once_then_readers_get_the_log_back(
    tmp_path: Path,
) -> None:
    """With nothing complete to read, the first merge goes through a rollback journal, which
    holds only the few pages it changes, not through the write-ahead log, from which every page
    would be copied again. The database is in write-ahead-log mode again after it, and later
    merges go through the log, so that readers read while they run."""
    path = tmp_path / "a.db"
    rows = 4 * STAGE_BATCH_ROWS
    during: list[dict[str, int]] = []
    await night_of_members(path, rows, watch=lambda: during.append(log_files(path)))
    size = path.stat().st_size
    assert during[0]["-wal"] == 0 and 0 < during[0]["-journal"] < size // 10, (during, size)
    assert query(path, "PRAGMA journal_mode") == [("wal",)]
    assert query(path, "SELECT id, status FROM snapshots") == [(1, "complete")]
    assert query(path, "SELECT count(*) FROM grants WHERE valid_to IS NULL") == [(rows,)]

    during.clear()
    await night_of_members(path, rows + 10, watch=lambda: during.append(log_files(path)))
    assert during[0]["-wal"] > 0 and during[0]["-journal"] == 0, during
    assert query(path, "SELECT count(*) FROM grants WHERE valid_to IS NULL") == [(rows + 10,)]


async def test_a_reader_holding_the_database_at_the_first_merge_keeps_reading(
    tmp_path: Path,
) -> None:
    """A reader that has the new database open (Datasette, say) keeps it in write-ahead-log
    mode: the first merge goes through the log, completes, and the reader sees it."""
    path = tmp_path / "a.db"
    await (await open_database(path)).dispose()
    with closing(sqlite3.connect(path)) as reader:
        assert reader.execute("SELECT count(*) FROM snapshots").fetchone() == (0,)
        during: list[dict[str, int]] = []
        await night_of_members(path, 100, watch=lambda: during.append(log_files(path)))
        assert during[0]["-wal"] > 0 and during[0]["-journal"] == 0, during
        assert reader.execute("SELECT status FROM snapshots").fetchall() == [("complete",)]
        assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_a_first_merge_that_fails_leaves_nothing_and_the_log_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first merge that fails after its statements ran is rolled back from its journal: no
    grant is kept, the run is still ``running`` for the caller to record it failed, and the
    database is back in write-ahead-log mode."""
    path = tmp_path / "a.db"

    def fail() -> None:
        raise sqlite3.OperationalError("a failure at the end of the merge")

    with pytest.raises(sqlite3.OperationalError, match="end of the merge"):
        await night_of_members(path, 2 * STAGE_BATCH_ROWS, watch=fail)
    assert not path.with_name(path.name + "-journal").exists()
    assert query(path, "PRAGMA journal_mode") == [("wal",)]
    assert query(path, "SELECT count(*) FROM grants") == [(0,)]
    assert query(path, "SELECT status FROM snapshots") == [("running",)]


def test_every_grant_kind_reads_back_as_it_was_staged() -> None:
    """The writer stages a grant's types and permission as ``grant_kind`` (one byte) and
    ``permission_text``; the table's computed columns give back the texts, an unknown permission
    included. A type no kind names is refused before anything is staged."""
    read_back = ", ".join(f"{expression} AS {name}" for name, expression in GRANT_COLUMNS.items())
    with closing(sqlite3.connect(":memory:")) as conn:
        for subject in GRANT_SUBJECT_TYPES:
            for object_type in GRANT_OBJECT_TYPES:
                for permission in (*GRANT_PERMISSIONS, "triage"):
                    kind, other = grant_kind(subject, object_type, permission)
                    assert 0 <= kind < 128  # one byte
                    assert (other is None) == (permission != "triage")
                    row = conn.execute(f"SELECT {read_back} FROM (SELECT ? AS grant_kind, "
                                       "? AS permission_text)", (kind, other)).fetchone()
                    assert row == (subject, object_type, permission)
    with pytest.raises(ValueError, match="no grant kind for a team's grant on a repository"):
        grant_kind("team", "repository", "read")


def test_a_first_night_sorts_its_grants_by_one_key_where_their_ids_fit() -> None:
    """The packed sort key is really in the statement (it is made by replacing the sort of the
    three ids: a change of that text must not leave it out unnoticed). The ids of ``huge``
    (210,300 scopes, 127,782 names) fit in it eight times over, not ten: an org that large is
    sorted by the three ids, as before."""
    packed = writer_module.INSERT_FRESH_GRANTS_PACKED
    assert packed != writer_module.INSERT_FRESH_GRANTS_UNKEYED
    assert "ORDER BY (st.scope_id << :scope_shift) | (st.subject_id << :subject_shift)" in packed

    def fits(scopes: int, names: int) -> bool:
        return scopes.bit_length() + 2 * names.bit_length() <= writer_module.KEY_BITS

    assert fits(8 * 210_300, 8 * 127_782)
    assert not fits(10 * 210_300, 10 * 127_782)


async def test_a_user_named_by_many_listings_is_staged_until_one_of_them_is_kept(
    tmp_path: Path,
) -> None:
    """Every listing that holds a user's grant names them. They are staged by each until a
    listing that named them ends ok; one still going or failed keeps nothing, so a later one
    that ends ok names them still."""
    path = tmp_path / "a.db"
    engine = await open_database(path)
    try:
        writer = SnapshotWriter(engine, tool_version="t")
        await writer.begin()
        roles, groups = await writer.scope_id(ROLES), await writer.scope_id(GROUPS)
        r1, r2 = await writer.scope_id(direct(R1)), await writer.scope_id(direct(R2))
        await writer.stage(roles, [UserRecord(U1, "Ada"), UserRecord(U2, "Bob")])
        await writer.stage(groups, [UserRecord(U1, "Ada"), member(U1)])  # roles still going
        await writer.finish_scope(roles, Outcome.FAILED)
        await writer.stage(r1, [UserRecord(U2, "Bob"), grant(U2, R1)])  # roles kept nothing
        await writer.finish_scope(groups, Outcome.OK)
        await writer.finish_scope(r1, Outcome.OK)
        await writer.stage(r2, [UserRecord(U1, "Ada"), UserRecord(U2, "Bob"), grant(U1, R2)])
        await writer.finish_scope(r2, Outcome.OK)
        await writer._flush()
        staged = query(path, "SELECT scope_id, uuid FROM stage_users ORDER BY rowid")
        await writer.complete(RunCounters())
    finally:
        await engine.dispose()
    assert staged == [(groups, U1), (r1, U2)]
    assert query(path, "SELECT uuid, display_name, last_seen FROM users ORDER BY uuid") == [
        (U1, "Ada", 1), (U2, "Bob", 1)
    ]
