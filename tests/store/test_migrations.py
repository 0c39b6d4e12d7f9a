"""The schema's history: a database written at an older revision is upgraded when opened and
answers exactly as before; every revision can be undone."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.operations import Operations
from sqlalchemy import Connection

from exporter.errors import DatabaseError
from exporter.simulator import Org, apply_churn, generate_org
from exporter.store.database import alembic_config, open_database
from exporter.store.queries import CHANGE_COLUMNS, PACE_SQL
from exporter.store.sql import CHANGE_KINDS, DIFF_SQL, GRANT_COLUMNS
from exporter.store.writer import RunCounters, SnapshotWriter
from tests.bench.bench_records import FIRST_KINDS, NightWriter, churned_nights
from tests.store.test_unexplained import SOURCES_GO_WHILE_THE_EFFECTIVE_LISTING_FAILS, run_nights

ROOT = Path(__file__).resolve().parents[2]

QUERIES = {
    # The columns of every revision (0008 adds workspace_uuid: checked apart).
    "access_at": "SELECT snapshot_id, snapshot_at, workspace, object_type, object_name, "
    "subject_type, subject_name, permission, source, observed_in, subject_uuid, object_uuid, "
    "scope_id FROM access_at ORDER BY snapshot_id, scope_id, subject_uuid, object_uuid",
    "access_changes": "SELECT * FROM access_changes ORDER BY snapshot_id, scope_id, object_uuid, "
    "subject_uuid, attribute",
    "object_labels": "SELECT * FROM object_labels ORDER BY uuid",
    "current_objects": "SELECT * FROM current_objects ORDER BY uuid",
    "users": "SELECT * FROM users ORDER BY uuid",
}


def answers(db: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(db) as conn:
        return {name: conn.execute(sql).fetchall() for name, sql in QUERIES.items()}


def views_and_tables(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT type, name FROM sqlite_master ORDER BY type, name").fetchall()


def tables(db: Path) -> set[str]:
    return {name for kind, name in views_and_tables(db) if kind == "table"}


async def one_more_night(db: Path, org: Org) -> None:
    """A day of churn on ``org``, then a night of it written into ``db``."""
    nights = NightWriter(db)
    try:
        apply_churn(org, rng=random.Random(9), rate=0.2)
        await nights.night(org)
    finally:
        await nights.close()


async def to_revision(db: Path, revision: str) -> None:
    engine = await open_database(db)

    def downgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    try:
        async with engine.begin() as connection:
            await connection.run_sync(downgrade)
    finally:
        await engine.dispose()


async def test_a_database_of_revision_0001_is_upgraded_and_answers_the_same(
    tmp_path: Path,
) -> None:
    db = tmp_path / "a.db"
    org = generate_org("small", 3)
    nights = NightWriter(db, FIRST_KINDS)
    try:
        await nights.night(org)
        apply_churn(org, rng=random.Random(3), rate=0.2)
        await nights.night(org)
    finally:
        await nights.close()
    before = answers(db)
    assert before["access_at"] and before["object_labels"] and before["access_changes"]

    await to_revision(db, "0001")
    assert "labels" not in tables(db)
    assert answers(db) == before  # 0001 computes the labels in its view

    engine = await open_database(db)  # what every command does first
    await engine.dispose()
    assert "labels" in tables(db)
    assert answers(db) == before
    with sqlite3.connect(db) as conn:
        (labelled,) = conn.execute("SELECT count(*) FROM labels").fetchone()
        (objects,) = conn.execute("SELECT count(DISTINCT uuid) FROM objects").fetchone()
    assert labelled == objects


async def test_an_upgrade_that_fails_half_way_leaves_the_database_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "a.db"
    nights = NightWriter(db, FIRST_KINDS)
    try:
        await nights.night(generate_org("small", 3))
    finally:
        await nights.close()
    await to_revision(db, "0001")
    before = answers(db)
    schema_before = views_and_tables(db)
    execute = Operations.execute

    def fail_late(self: Operations, sql: object, *args: object, **kwargs: object) -> object:
        if isinstance(sql, str) and sql.startswith("INSERT INTO labels"):
            raise RuntimeError("the disk filled up")
        return execute(self, sql, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Operations, "execute", fail_late)
    with pytest.raises(RuntimeError, match="disk filled up"):
        await open_database(db)
    # Views dropped, users rebuilt, labels created: all of it rolled back.
    assert views_and_tables(db) == schema_before and answers(db) == before

    monkeypatch.setattr(Operations, "execute", execute)
    engine = await open_database(db)
    await engine.dispose()
    assert "labels" in tables(db) and answers(db) == before


async def test_a_database_of_revision_0002_is_upgraded_keeping_its_history_and_diffs(
    tmp_path: Path,
) -> None:
    """What 0002 recorded reads the same after 0003: every view, every diff; sources become a
    column, and closures found by their text before become a column too."""
    db = tmp_path / "a.db"
    org = generate_org("small", 5)
    nights = NightWriter(db, FIRST_KINDS)
    try:
        await nights.night(org)
        for day in range(2):
            apply_churn(org, rng=random.Random(day), rate=0.2)
            await nights.night(org)
    finally:
        await nights.close()
    await to_revision(db, "0002")
    with sqlite3.connect(db) as conn:  # a child scope closed as 0002 recorded it
        conn.execute(
            "INSERT INTO scopes (kind, workspace_uuid, object_type, object_uuid, "
            "parent_scope_id, label) SELECT 'repository_user_grants', workspace_uuid, "
            "'repository', '{gone}', id, 'gone/users' FROM scopes WHERE kind = 'repositories' "
            "LIMIT 1"
        )
        conn.execute(
            "INSERT INTO observations (snapshot_id, scope_id, outcome, detail) SELECT 2, id, "
            "'ok', 'deleted with its repository' FROM scopes WHERE label = 'gone/users'"
        )
        columns = ", ".join(CHANGE_COLUMNS)
        logged = conn.execute(f"SELECT {columns} FROM access_changes").fetchall()
        pairs = conn.execute("SELECT DISTINCT from_snapshot_id, snapshot_id FROM access_changes")
        consecutive = pairs.fetchall()
    before = answers(db)

    engine = await open_database(db)
    await engine.dispose()
    assert answers(db) == before
    with sqlite3.connect(db) as conn:
        diffs = [
            row
            for a, b in consecutive
            for row in conn.execute(f"SELECT {columns} FROM ({DIFF_SQL})", {"a": a, "b": b})
        ]
        assert sorted(diffs, key=repr) == sorted(logged, key=repr) and len(consecutive) == 3
        closures = conn.execute("SELECT label FROM scopes JOIN observations ON scope_id = id "
                                "WHERE closure = 'deleted'").fetchall()
        assert closures == [("gone/users",)]
        sources = conn.execute("SELECT DISTINCT kind, source FROM scopes ORDER BY kind")
        assert sources.fetchall() == [
            ("projects", None), ("repositories", None), ("repository_permissions", "effective"),
            ("repository_user_grants", "direct"), ("workspace", None),
            ("workspace_roles", "workspace"),
        ]  # fmt: skip


async def test_a_database_of_revision_0003_is_upgraded_with_the_change_log_of_its_history(
    tmp_path: Path,
) -> None:
    """0004 writes the change log for every complete snapshot already stored: ``access_changes``
    reads it and answers as 0003 computed it, baseline rows of scopes first read in a later
    night (explicit grants, groups) included; a failed run in between is no pair."""
    db = tmp_path / "a.db"
    org = generate_org("small", 7)
    first = NightWriter(db, FIRST_KINDS)
    try:
        await first.night(org)
        engine = first.engine
        assert engine is not None
        failed = SnapshotWriter(engine, tool_version="test")
        await failed.begin()
        await failed.fail("the network went away", RunCounters())
    finally:
        await first.close()
    nights = NightWriter(db)  # every kind: explicit grants and groups read for the first time
    try:
        for day in range(3):
            await nights.night(org)
            apply_churn(org, rng=random.Random(day), rate=0.2)
    finally:
        await nights.close()
    with sqlite3.connect(db) as conn:
        logged = conn.execute("SELECT count(*) FROM change_log").fetchone()[0]
    await to_revision(db, "0003")
    assert not {"change_log", "baseline_scopes"} & tables(db)
    before = answers(db)  # as 0003 computes them, pair by pair
    assert {row[8] for row in before["access_changes"]} >= {"baseline", "granted", "revoked"}

    engine = await open_database(db)
    await engine.dispose()
    assert answers(db) == before
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM change_log").fetchone()[0] == logged > 0
        baselined = conn.execute(
            "SELECT snapshot_id, from_snapshot_id, count(*) FROM baseline_scopes GROUP BY 1, 2"
        ).fetchall()
    # Night 1 read the first kinds; night 3 (after the failed run 2) the rest, against night 1.
    assert [(b, a) for b, a, _ in baselined] == [(1, 0), (3, 1)]


async def one_night(db: Path) -> None:
    """One complete snapshot of the small org into ``db``, at this version's head."""
    writer = NightWriter(db)
    try:
        await writer.night(generate_org("small", 7))
    finally:
        await writer.close()


async def test_revision_0008_gives_each_grant_its_workspace_uuid_and_goes_back(
    tmp_path: Path,
) -> None:
    db = tmp_path / "a.db"
    await one_night(db)
    named = ("SELECT DISTINCT a.workspace, a.workspace_uuid, n.name FROM {view} a "
             "LEFT JOIN names n ON n.uuid = a.workspace_uuid")  # fmt: skip
    with sqlite3.connect(db) as conn:
        for view in ("access_at", "current_access", "current_repository_permissions"):
            rows = conn.execute(named.format(view=view)).fetchall()
            assert len(rows) > 1, view  # several workspaces
            assert all(uuid and name == workspace for workspace, uuid, name in rows), rows
    await to_revision(db, "0007")
    with sqlite3.connect(db) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(current_access)")}
    assert "scope_id" in columns and "workspace_uuid" not in columns


async def test_revision_0009_moves_the_stage_out_of_the_database_and_back(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    await one_night(db)
    stage = {"stage_gone", "stage_grants", "stage_objects", "stage_observations", "stage_users"}
    assert not stage & tables(db)
    before = answers(db)
    await to_revision(db, "0008")
    assert stage <= tables(db)  # in the database again, empty, as 0008 had them
    engine = await open_database(db)
    await engine.dispose()
    assert not stage & tables(db) and answers(db) == before


async def test_revision_0010_gives_grants_integer_ids_and_goes_back(tmp_path: Path) -> None:
    """0010 keeps each grant version (its id too, which the change log names) with its subject
    and object as ids in ``names``; ``grants`` becomes a view with the uuids, and every view
    answers as before, both ways."""
    db = tmp_path / "a.db"
    org = generate_org("small", 7)
    await churned_nights(db, org, 3)
    sources = ("SELECT * FROM current_access_sources ORDER BY repository_uuid, user_uuid, "
               "source, group_uuid, project_uuid")  # fmt: skip
    grants = "SELECT * FROM grants ORDER BY id"
    with sqlite3.connect(db) as conn:
        at_head = (conn.execute(sources).fetchall(), conn.execute(grants).fetchall())
        assert conn.execute("SELECT count(*) FROM change_log JOIN change_kinds USING (kind) "
                            "WHERE fact = 'grant'").fetchone()[0]
    before = answers(db)
    assert ("view", "grants") in views_and_tables(db) and "grant_versions" in tables(db)

    await to_revision(db, "0009")
    assert ("table", "grants") in views_and_tables(db) and "grant_versions" not in tables(db)
    with sqlite3.connect(db) as conn:
        assert "id" not in {row[1] for row in conn.execute("PRAGMA table_info(names)")}
        assert (conn.execute(sources).fetchall(), conn.execute(grants).fetchall()) == at_head
    assert answers(db) == before

    engine = await open_database(db)  # upgraded again
    await engine.dispose()
    assert answers(db) == before
    with sqlite3.connect(db) as conn:
        assert (conn.execute(sources).fetchall(), conn.execute(grants).fetchall()) == at_head
        # Every version refers to a name, and no two names share a uuid.
        assert conn.execute(
            "SELECT count(*) FROM grant_versions g WHERE NOT EXISTS (SELECT 1 FROM names n "
            "WHERE n.id = g.subject_id) OR NOT EXISTS (SELECT 1 FROM names n "
            "WHERE n.id = g.object_id)").fetchone() == (0,)  # fmt: skip
    # Nights go on from the upgraded names: a night that changed nothing logs nothing.
    nights = NightWriter(db)
    try:
        await nights.night(org)
        await nights.night(org)
    finally:
        await nights.close()
    with sqlite3.connect(db) as conn:
        logged = conn.execute("SELECT snapshot_id, count(*) FROM change_log WHERE snapshot_id > 3 "
                              "GROUP BY 1").fetchall()  # fmt: skip
        assert conn.execute("SELECT count(*) FROM names GROUP BY uuid HAVING count(*) > 1")\
            .fetchall() == []  # fmt: skip
    assert [b for b, _ in logged] == [4]  # the last churn; night 5 the same as night 4


async def test_revision_0011_counts_access_without_the_workspace_names_and_goes_back(
    tmp_path: Path,
) -> None:
    """From 0011 a count of ``access_at`` or ``current_access`` reads no workspace name (a
    lookup by uuid for every row: 40 % of the count at ``huge``); every column answers the same,
    the workspace's name included, at 0011 and at 0010."""
    db = tmp_path / "a.db"
    await churned_nights(db, generate_org("small", 7), 2)
    every_row = {view: f"SELECT * FROM {view} ORDER BY scope_id, subject_uuid, object_uuid"
                 for view in ("access_at", "current_access")}  # fmt: skip
    counts = ("SELECT count(*) FROM access_at WHERE snapshot_id = 2",
              "SELECT count(*) FROM current_access")  # fmt: skip

    def names_searched_by_uuid(conn: sqlite3.Connection) -> list[str]:
        plans = [row[3] for sql in counts for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
        return [step for step in plans if "autoindex_names" in step or "uq_names_uuid" in step]

    with sqlite3.connect(db) as conn:
        at_head = {view: conn.execute(sql).fetchall() for view, sql in every_row.items()}
        assert all(rows and all(row[0] for row in rows) for rows in at_head.values())
        assert {row[0] for row in at_head["current_access"]} == {
            name for (name,) in conn.execute("SELECT name FROM names n JOIN scopes s "
                                             "ON s.workspace_uuid = n.uuid")}  # fmt: skip
        assert names_searched_by_uuid(conn) == []
    await to_revision(db, "0010")
    with sqlite3.connect(db) as conn:
        assert {view: conn.execute(sql).fetchall() for view, sql in every_row.items()} == at_head
        assert names_searched_by_uuid(conn)  # 0010 looked each one up
    engine = await open_database(db)
    await engine.dispose()
    with sqlite3.connect(db) as conn:
        assert {view: conn.execute(sql).fetchall() for view, sql in every_row.items()} == at_head
        assert names_searched_by_uuid(conn) == []


async def test_revision_0012_stores_observations_and_the_change_log_by_key_and_goes_back(
    tmp_path: Path,
) -> None:
    """From 0012 ``observations`` and ``change_log`` have no rowid and no second copy of their
    key: the database is smaller, and every view answers as before, both ways. Entries written
    at 0012 are numbered within their snapshot; going back numbers them all again."""
    db = tmp_path / "a.db"
    org = generate_org("small", 7)
    await churned_nights(db, org, 3)
    indexes = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? ORDER BY 1"
    rowid_tables = ("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN "
                    "('observations', 'change_log') AND sql NOT LIKE '%WITHOUT ROWID'")  # fmt: skip
    log = "SELECT snapshot_id, id FROM change_log ORDER BY 1, 2"
    with sqlite3.connect(db) as conn:
        assert conn.execute(rowid_tables).fetchall() == []
        assert conn.execute(indexes, ("change_log",)).fetchall() == []  # its key is the table
        entries = conn.execute(log).fetchall()
        # Numbered within each snapshot: 1, 2, ... again for the next.
        assert [n for snapshot, n in entries if snapshot == entries[-1][0]][:2] == [1, 2]
        assert len({n for _snapshot, n in entries}) < len(entries)
    before = answers(db)
    assert before["access_changes"]

    await to_revision(db, "0011")
    with sqlite3.connect(db) as conn:
        assert {name for (name,) in conn.execute(rowid_tables)} == {"observations", "change_log"}
        assert ("ix_change_log_snapshot",) in conn.execute(indexes, ("change_log",)).fetchall()
        ids = [n for _snapshot, n in conn.execute(log)]
        assert ids == list(range(1, len(entries) + 1))  # numbered again, one sequence
    assert answers(db) == before

    engine = await open_database(db)  # upgraded again; quick_check finds nothing amiss
    await engine.dispose()
    assert answers(db) == before
    with sqlite3.connect(db) as conn:
        assert conn.execute(rowid_tables).fetchall() == []
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
    await one_more_night(db, org)  # nights go on: new entries beside the renumbered ones
    with sqlite3.connect(db) as conn:
        newest = conn.execute("SELECT max(snapshot_id), count(*) FROM change_log "
                              "WHERE snapshot_id = (SELECT max(snapshot_id) FROM change_log)"
                              ).fetchone()  # fmt: skip
    assert newest[0] == 4 and newest[1] > 0


@pytest.mark.parametrize("org", [False, True], ids=["sources that went", "a churned org"])
async def test_revision_0014_keeps_the_access_no_source_explains_and_goes_back(
    tmp_path: Path, org: bool
) -> None:
    """From 0014 ``current_access_sources`` reads the effective access no source explains from
    ``unexplained_access``, which the upgrade fills for the current knowledge: every row answers
    as at 0013, both ways."""
    db = tmp_path / "a.db"
    if org:
        await churned_nights(db, generate_org("small", 7), 2)
    else:  # two reaches whose sources went while the effective listing failed
        await run_nights(db, SOURCES_GO_WHILE_THE_EFFECTIVE_LISTING_FAILS[:2])
    every_row = (
        "SELECT * FROM current_access_sources "
        "ORDER BY repository_uuid, user_uuid, source, group_uuid, project_uuid"
    )
    unexplained = "SELECT count(*) FROM unexplained_access"
    with sqlite3.connect(db) as conn:
        at_head = conn.execute(every_row).fetchall()
        kept = conn.execute(unexplained).fetchone()[0]
    assert at_head and kept == sum(1 for row in at_head if row[4] is None)
    assert kept == (0 if org else 2)

    await to_revision(db, "0013")
    assert "unexplained_access" not in tables(db)
    with sqlite3.connect(db) as conn:
        assert conn.execute(every_row).fetchall() == at_head

    engine = await open_database(db)
    await engine.dispose()
    with sqlite3.connect(db) as conn:
        assert conn.execute(unexplained).fetchone()[0] == kept
        assert conn.execute(every_row).fetchall() == at_head
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]


async def test_revision_0015_keeps_each_change_by_kind_and_goes_back(tmp_path: Path) -> None:
    """From 0015 a change log entry is its kind (a row of ``change_kinds``), its versions and a
    group's reach: under half the bytes, and ``access_changes`` and ``latest_access_changes``
    answer every row as at 0014 (reasons and the snapshot compared with included), both ways.
    An entry of no known kind stops the upgrade and changes nothing."""
    db = tmp_path / "a.db"
    await churned_nights(db, generate_org("small", 7), 4, rate=0.3)
    latest = "SELECT * FROM latest_access_changes ORDER BY scope_id, object_uuid, subject_uuid"
    payload = "SELECT sum(payload) FROM dbstat WHERE name = 'change_log'"
    with sqlite3.connect(db) as conn:
        kinds = conn.execute("SELECT * FROM change_kinds ORDER BY kind").fetchall()
        at_head = conn.execute(latest).fetchall()
        small = conn.execute(payload).fetchone()[0]
    assert kinds == list(CHANGE_KINDS)
    before = answers(db)
    changes = before["access_changes"]
    reasons = {str(row[13]).split()[0] for row in changes if row[13] is not None}
    assert {"the", "created", "deleted"} <= reasons  # a group's reach, an object's life
    assert {row[2] for row in changes} > {0}  # later nights compare with the one before
    assert at_head and {row[8] for row in at_head} - {"baseline"}

    await to_revision(db, "0014")
    assert "change_kinds" not in tables(db)
    with sqlite3.connect(db) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(change_log)")}
        assert {"from_snapshot_id", "scope_id", "fact", "change", "reason"} <= columns
        assert conn.execute(latest).fetchall() == at_head
        wide = conn.execute(payload).fetchone()[0]
        # An entry of no kind 0015 knows, written beside the others.
        conn.execute("INSERT INTO change_log SELECT snapshot_id, 999, from_snapshot_id, scope_id, "
                     "fact, old_id, new_id, 'renamed', attribute, reason FROM change_log LIMIT 1")
    assert small < 0.6 * wide
    assert answers(db) != before  # the stray entry shows
    with_stray = answers(db), views_and_tables(db)
    refused = "1 of the change log's entries cannot be kept as they are .* was not upgraded"
    with pytest.raises(DatabaseError, match=refused):
        await open_database(db)
    assert (answers(db), views_and_tables(db)) == with_stray
    # Run by hand, the same: one transaction, rolled back.
    by_hand = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "-x", f"db={db}",
        "upgrade", "head", cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)  # fmt: skip
    _out, err = await by_hand.communicate()
    assert by_hand.returncode != 0 and b"cannot be kept as they are" in err
    assert (answers(db), views_and_tables(db)) == with_stray
    # An entry whose scope is not its versions' would be read with another scope.
    one_entry = ("WHERE (snapshot_id, id) = (SELECT max(snapshot_id), max(id) FROM change_log "
                 "WHERE snapshot_id = 2)")  # fmt: skip
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM change_log WHERE id = 999")
        conn.execute(f"UPDATE change_log SET scope_id = scope_id + 1 {one_entry}")
    with pytest.raises(DatabaseError, match=refused):
        await open_database(db)
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE change_log SET scope_id = scope_id - 1 {one_entry}")
    assert answers(db) == before

    engine = await open_database(db)  # upgraded again
    await engine.dispose()
    assert answers(db) == before
    with sqlite3.connect(db) as conn:
        assert conn.execute(latest).fetchall() == at_head
        assert conn.execute(payload).fetchone()[0] == small
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]


async def test_revision_0016_keeps_each_grant_s_kind_as_a_number_and_goes_back(
    tmp_path: Path,
) -> None:
    """From 0016 a grant version keeps its subject type, object type and permission as one small
    number (a permission no number names, as text): the table is smaller by about a third, and
    the same columns read the same values, both ways. A type no number names stops the upgrade
    and changes nothing."""
    db = tmp_path / "a.db"
    await churned_nights(db, generate_org("small", 7), 3, rate=0.3)
    every = "SELECT * FROM grants ORDER BY id"
    payload = "SELECT sum(payload) FROM dbstat WHERE name = 'grant_versions'"
    one = "SELECT id FROM grant_versions WHERE valid_to IS NULL ORDER BY id LIMIT 1"
    await to_revision(db, "0015")
    with sqlite3.connect(db) as conn:
        # A permission Bitbucket may list one day, on a version closed at the second night.
        conn.execute(f"INSERT INTO grant_versions (scope_id, subject_type, subject_id, object_type,"
                     f" object_id, permission, valid_from, valid_to) SELECT scope_id, subject_type,"
                     f" subject_id, object_type, object_id, 'triage', 1, 2 FROM grant_versions "
                     f"WHERE id = ({one})")  # fmt: skip
        at_0015 = conn.execute(every).fetchall()
        wide = conn.execute(payload).fetchone()[0]
    before = answers(db)
    assert "triage" in {row[6] for row in at_0015}

    engine = await open_database(db)
    await engine.dispose()
    with sqlite3.connect(db) as conn:
        assert conn.execute(every).fetchall() == at_0015
        small = conn.execute(payload).fetchone()[0]
        table_sql = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'grant_versions'").fetchone()[0]
        stored = {row[1] for row in conn.execute("PRAGMA table_xinfo(grant_versions)")
                  if row[6] == 0}  # fmt: skip
        assert conn.execute("SELECT grant_kind & 15, permission_text FROM grant_versions "
                            "WHERE permission = 'triage'").fetchall() == [(15, "triage")]
    assert answers(db) == before
    assert small < 0.7 * wide
    assert {"subject_type", "object_type", "permission"}.isdisjoint(stored)
    for name, expression in GRANT_COLUMNS.items():  # the code's columns are the migration's
        assert f"{name} TEXT GENERATED ALWAYS AS ({expression}) VIRTUAL" in table_sql

    await to_revision(db, "0015")
    with sqlite3.connect(db) as conn:
        assert conn.execute(every).fetchall() == at_0015
        assert conn.execute(payload).fetchone()[0] == wide
        conn.execute(f"UPDATE grant_versions SET subject_type = 'team' WHERE id = ({one})")
    strays = answers(db), views_and_tables(db)
    refused = r"1 grant version.* type this version of bbaccess does not know .* was not upgraded"
    with pytest.raises(DatabaseError, match=refused):
        await open_database(db)
    assert (answers(db), views_and_tables(db)) == strays
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE grant_versions SET subject_type = 'user' WHERE id = ({one})")
    engine = await open_database(db)
    await engine.dispose()
    assert answers(db) == before
    with sqlite3.connect(db) as conn:
        assert conn.execute(every).fetchall() == at_0015
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]


async def test_revision_0017_keeps_observations_by_scope_without_a_second_copy_and_goes_back(
    tmp_path: Path,
) -> None:
    """From 0017 ``observations`` is kept by (scope, outcome, snapshot) and has no index beside
    it: the same rows in fewer bytes, a scope's latest ok observation found by its key however
    many failed reads came after it, every view answering as before, both ways; and the nights go
    on."""
    db = tmp_path / "a.db"
    org = generate_org("small", 7)
    await churned_nights(db, org, 3, rate=0.3)
    rows = "SELECT snapshot_id, scope_id, outcome, detail, closure, requests FROM observations"
    indexes = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'observations'"
    size = ("SELECT sum(d.pgsize) FROM dbstat d JOIN sqlite_master m ON m.name = d.name "
            "WHERE m.tbl_name = 'observations'")  # fmt: skip
    latest = ("EXPLAIN QUERY PLAN SELECT max(snapshot_id) FROM observations "
              "WHERE scope_id = 3 AND outcome = 'ok' AND snapshot_id <= 2")  # fmt: skip
    await to_revision(db, "0017")
    before = answers(db)
    assert before["access_changes"]
    with sqlite3.connect(db) as conn:
        kept = sorted(conn.execute(rows))
        assert conn.execute(indexes).fetchall() == []
        assert "PRIMARY KEY (scope_id, outcome, snapshot_id)" in conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'observations'").fetchone()[0]
        plan = " ".join(row[3] for row in conn.execute(latest))
        assert "PRIMARY KEY (scope_id=? AND outcome=? AND snapshot_id<?)" in plan, plan
        by_scope = conn.execute(size).fetchone()[0]

    await to_revision(db, "0016")
    with sqlite3.connect(db) as conn:
        assert sorted(conn.execute(rows)) == kept
        assert conn.execute(indexes).fetchall() == [("ix_observations_scope",)]
        assert conn.execute(size).fetchone()[0] > by_scope
    assert answers(db) == before

    engine = await open_database(db)
    await engine.dispose()
    assert answers(db) == before
    with sqlite3.connect(db) as conn:
        assert sorted(conn.execute(rows)) == kept
        assert conn.execute(indexes).fetchall() == []
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
    await one_more_night(db, org)
    with sqlite3.connect(db) as conn:
        read = conn.execute("SELECT count(*) FROM observations WHERE snapshot_id = 4 "
                            "AND outcome = 'ok' AND closure IS NULL").fetchone()[0]  # fmt: skip
        assert read > 0
        assert conn.execute("SELECT scopes_ok FROM snapshots WHERE id = 4").fetchone() == (read,)


async def test_revision_0018_keeps_reads_as_runs_and_goes_back(tmp_path: Path) -> None:
    """From 0018 a scope's reads alike in consecutive snapshots are one row of
    ``observation_runs``, and the view ``observations`` shows a row per read as the table did:
    the runs are made from the rows and the rows from the runs, every view answering the same
    both ways; a snapshot that failed between two nights ends the runs before it; the code's
    questions of one snapshot look each scope's run up by its key; and the nights go on."""
    db = tmp_path / "a.db"
    org = generate_org("small", 7)
    await churned_nights(db, org, 3, rate=0.3)
    engine = await open_database(db)
    try:
        failed = SnapshotWriter(engine, tool_version="test")
        await failed.begin()
        await failed.fail("gave up", RunCounters())
    finally:
        await engine.dispose()
    for _ in range(2):
        await one_more_night(db, org)  # snapshots 5 and 6, after the failed 4
    rows = "SELECT snapshot_id, scope_id, outcome, detail, closure, requests FROM observations"
    runs = "SELECT * FROM observation_runs ORDER BY scope_id, outcome, first_snapshot_id"
    more = {
        "scope_freshness": "SELECT * FROM scope_freshness ORDER BY scope_id",
        "current_access": "SELECT * FROM current_access ORDER BY scope_id, subject_uuid, "
        "object_uuid",
        "current_access_sources": "SELECT * FROM current_access_sources ORDER BY "
        "repository_uuid, user_uuid, source, via_group, via_project",
    }

    def all_answers() -> dict[str, list[tuple[object, ...]]]:
        with sqlite3.connect(db) as conn:
            return {**answers(db), **{k: conn.execute(q).fetchall() for k, q in more.items()}}

    before = all_answers()
    with sqlite3.connect(db) as conn:
        reads = sorted(conn.execute(rows))
        kept_runs = conn.execute(runs).fetchall()
        by_snapshot = dict(conn.execute("SELECT snapshot_id, count(*) FROM observations "
                                        "GROUP BY 1").fetchall())  # fmt: skip
        scopes = conn.execute("SELECT count(*) FROM scopes").fetchone()[0]
        assert set(by_snapshot) == {1, 2, 3, 5, 6} and by_snapshot[6] > 0
        assert len(kept_runs) < len(reads)
        spans = ("SELECT count(*) FROM observation_runs "
                 "WHERE first_snapshot_id < 4 AND last_snapshot_id > 4")  # fmt: skip
        assert conn.execute(spans).fetchone()[0] == 0
        # Every scope read alike in 5 and 6 is one run of the two (none goes on from 3).
        alike = conn.execute(
            "SELECT count(*) FROM observations a JOIN observations b ON b.scope_id = a.scope_id "
            "AND b.outcome = a.outcome AND b.detail IS a.detail AND b.requests = a.requests "
            "AND a.closure IS NULL AND b.closure IS NULL "
            "WHERE a.snapshot_id = 5 AND b.snapshot_id = 6").fetchone()[0]
        assert alike > scopes // 3
        assert conn.execute("SELECT count(*) FROM observation_runs "
                            "WHERE first_snapshot_id = 5 AND last_snapshot_id = 6"
                            ).fetchone()[0] == alike
        # The code's question of one snapshot: each scope's run, by its key.
        plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {PACE_SQL}"))
        assert "PRIMARY KEY (scope_id=? AND outcome=? AND first_snapshot_id<?)" in plan, plan

    await to_revision(db, "0017")
    assert "observation_runs" not in tables(db)
    with sqlite3.connect(db) as conn:
        assert sorted(conn.execute(rows)) == reads
    assert all_answers() == before

    engine = await open_database(db)
    await engine.dispose()
    with sqlite3.connect(db) as conn:
        assert conn.execute(runs).fetchall() == kept_runs
        assert sorted(conn.execute(rows)) == reads
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
    assert all_answers() == before
    await one_more_night(db, org)
    with sqlite3.connect(db) as conn:
        carried = conn.execute("SELECT count(*) FROM observation_runs "
                               "WHERE first_snapshot_id = 5 AND last_snapshot_id = 7").fetchone()[0]
        assert carried > 0
        read = conn.execute("SELECT count(*) FROM observations WHERE snapshot_id = 7 "
                            "AND outcome = 'ok' AND closure IS NULL").fetchone()[0]  # fmt: skip
        assert conn.execute("SELECT scopes_ok FROM snapshots WHERE id = 7").fetchone() == (read,)
