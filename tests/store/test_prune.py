"""Pruning: which snapshots a grandfather-father-son policy keeps, and that removing the others
changes no answer about the kept ones (knowledge, diffs with their baseline and unverified
scopes), against the real store before pruning and against the naive model."""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from exporter.errors import DatabaseError
from exporter.simulator import apply_churn, generate_org
from exporter.store.database import open_database
from exporter.store.prune import PruneReport, choose_kept, complete_snapshot_times, prune
from exporter.store.queries import Diff, diff
from exporter.store.sql import LABELS_SQL
from exporter.store.writer import RunCounters, SnapshotWriter
from tests.bench.bench_records import NightWriter
from tests.store.naive import NaiveStore
from tests.store.test_model_property import (
    API,
    CHILD_READ_OK_AS_ITS_REPOSITORY_GOES,
    SCOPES,
    Night,
    _night,
    check_reads,
    night,
    real_diff,
    real_knowledge,
    run_nights,
)

# ---------------------------------------------------------------------------------------------
# choose_kept

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # a Monday


def at(days: float, hours: float = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours)


def test_the_newest_is_kept_even_with_nothing_asked() -> None:
    snaps = [(1, at(0)), (2, at(1)), (3, at(2))]
    assert choose_kept(snaps, daily=0, weekly=0, monthly=0) == {3}
    assert choose_kept([], daily=3, weekly=3, monthly=3) == set()


def test_daily_keeps_the_last_of_each_of_the_newest_days_that_have_one() -> None:
    # Two a day on days 0, 1 and 2, none on day 3, one on day 4.
    snaps = [(1, at(0)), (2, at(0, 5)), (3, at(1)), (4, at(1, 5)), (5, at(2)), (6, at(2, 5)),
             (7, at(4))]  # fmt: skip
    assert choose_kept(snaps, daily=1, weekly=0, monthly=0) == {7}
    # Day 3 has no snapshot: it is not counted.
    assert choose_kept(snaps, daily=3, weekly=0, monthly=0) == {7, 6, 4}
    assert choose_kept(snaps, daily=10, weekly=0, monthly=0) == {7, 6, 4, 2}


def test_days_end_at_midnight_utc() -> None:
    last_second = datetime(2026, 3, 2, 23, 59, 59, tzinfo=UTC)
    snaps = [(1, last_second), (2, datetime(2026, 3, 3, tzinfo=UTC))]
    assert choose_kept(snaps, daily=2, weekly=0, monthly=0) == {1, 2}
    snaps = [(1, last_second), (2, last_second + timedelta(microseconds=1))]
    assert choose_kept(snaps, daily=2, weekly=0, monthly=0) == {2}


def test_ties_in_time_go_to_the_higher_id_and_order_does_not_matter() -> None:
    snaps = [(5, at(0)), (3, at(0)), (4, at(-1))]
    assert choose_kept(snaps, daily=2, weekly=0, monthly=0) == {5, 4}
    assert choose_kept(list(reversed(snaps)), daily=2, weekly=0, monthly=0) == {5, 4}


def test_the_newest_is_the_highest_id_even_if_its_clock_went_back() -> None:
    snaps = [(1, at(0)), (2, at(5)), (3, at(1))]  # 3 ran after 2, with a clock set back
    assert choose_kept(snaps, daily=1, weekly=0, monthly=0) == {2, 3}


def test_weekly_keeps_the_last_of_each_iso_week() -> None:
    # T0 is Monday 2026-03-02: days 0..6 are one ISO week, day 7 starts the next.
    snaps = [(1, at(-1)), (2, at(0)), (3, at(6, 17)), (4, at(7)), (5, at(8)), (6, at(20))]
    assert choose_kept(snaps, daily=0, weekly=1, monthly=0) == {6}
    # Weeks: (day 20) -> 6; (days 7, 8) -> 5; (days 0..6) -> 3; (day -1, a Sunday) -> 1.
    assert choose_kept(snaps, daily=0, weekly=3, monthly=0) == {6, 5, 3}
    assert choose_kept(snaps, daily=0, weekly=9, monthly=0) == {6, 5, 3, 1}


def test_iso_weeks_cross_the_new_year() -> None:
    # 2024-12-30 (Monday) to 2025-01-05 (Sunday) is ISO week 2025-W01.
    snaps = [
        (1, datetime(2024, 12, 29, tzinfo=UTC)),
        (2, datetime(2024, 12, 30, tzinfo=UTC)),
        (3, datetime(2025, 1, 5, 23, tzinfo=UTC)),
        (4, datetime(2025, 1, 6, tzinfo=UTC)),
    ]
    assert choose_kept(snaps, daily=0, weekly=2, monthly=0) == {4, 3}
    assert choose_kept(snaps, daily=0, weekly=3, monthly=0) == {4, 3, 1}


def test_monthly_keeps_the_last_of_each_month() -> None:
    snaps = [(1, datetime(2025, 12, 31, 23, tzinfo=UTC)), (2, datetime(2026, 1, 1, tzinfo=UTC)),
             (3, datetime(2026, 1, 31, tzinfo=UTC)), (4, datetime(2026, 3, 1, tzinfo=UTC)),
             (5, datetime(2026, 3, 15, tzinfo=UTC))]  # fmt: skip
    assert choose_kept(snaps, daily=0, weekly=0, monthly=2) == {5, 3}  # February has none
    assert choose_kept(snaps, daily=0, weekly=0, monthly=12) == {5, 3, 1}


def test_rules_count_their_periods_on_their_own() -> None:
    # Daily for 30 days: the daily, weekly and monthly rules overlap and add up.
    start = datetime(2026, 1, 20, 6, tzinfo=UTC)
    snaps = [(i + 1, start + timedelta(days=i)) for i in range(30)]  # Jan 20 .. Feb 18
    by_id = dict(snaps)
    kept = choose_kept(snaps, daily=3, weekly=2, monthly=2)
    # Feb 16, 17, 18 (daily); the week of Feb 16 (Feb 18) and of Feb 9 (Sunday Feb 15);
    # February (Feb 18) and January (Jan 31).
    assert sorted(by_id[k].date().isoformat() for k in kept) == [
        "2026-01-31", "2026-02-15", "2026-02-16", "2026-02-17", "2026-02-18"]  # fmt: skip


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="daily"):
        choose_kept([(1, at(0))], daily=-1, weekly=0, monthly=0)


# ---------------------------------------------------------------------------------------------
# prune against the real store and the naive model



TABLES = ("snapshots", "scopes", "observations", "objects", "grants", "users", "labels")


async def dump(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order: to see that nothing changed."""
    out = {}
    async with engine.connect() as conn:
        for table in TABLES:
            rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
            out[table] = sorted((tuple(r) for r in rows), key=repr)
    return out


@dataclass
class Answers:
    """What the store says about the kept snapshots."""

    access_at: dict[int, list[dict[str, Any]]]
    objects_at: dict[int, list[tuple[Any, ...]]]
    diffs: dict[tuple[int, int], Diff]
    counted: dict[tuple[int, int], int]  # baseline_count without listing the baseline
    users: list[tuple[Any, ...]]
    labels: list[tuple[Any, ...]]


async def answers(engine: AsyncEngine, kept: list[int]) -> Answers:
    out = Answers({}, {}, {}, {}, [], [])
    async with engine.connect() as conn:
        for k in kept:
            rows = await conn.execute(
                text("SELECT * FROM access_at WHERE snapshot_id = :k"), {"k": k}
            )
            out.access_at[k] = sorted((dict(r._mapping) for r in rows), key=repr)
            objects = await conn.execute(
                text("SELECT id, scope_id, uuid, object_type, slug, name, is_private, "
                     "parent_uuid FROM objects WHERE valid_from <= :k "
                     "AND (valid_to IS NULL OR valid_to > :k)"),
                {"k": k},
            )  # fmt: skip
            out.objects_at[k] = sorted((tuple(r) for r in objects), key=repr)
        for i, b in enumerate(kept):
            for a in [0, *kept[:i]]:
                out.diffs[(a, b)] = await diff(conn, a, b, with_baseline=True)
                out.counted[(a, b)] = (await diff(conn, a, b)).baseline_count
        out.users = sorted(tuple(r) for r in await conn.execute(text("SELECT * FROM users")))
        out.labels = sorted(tuple(r) for r in await conn.execute(text("SELECT * FROM labels")))
    return out


def absorbed_by(kept: list[int], s: int) -> int:
    return min(k for k in kept if k >= s)


def check_same_answers(before: Answers, after: Answers, kept: list[int]) -> None:
    for k in kept:
        # Every access_at row is the same, but observed_in, which names the kept snapshot that
        # absorbed a read made in a removed one.
        expected = [
            {**row, "observed_in": absorbed_by(kept, row["observed_in"])}
            for row in before.access_at[k]
        ]
        assert after.access_at[k] == sorted(expected, key=repr), k
        assert after.objects_at[k] == before.objects_at[k], k
    assert after.diffs.keys() == before.diffs.keys()
    for pair, found in after.diffs.items():
        was = before.diffs[pair]
        assert found.changes == was.changes, pair
        assert found.baseline == was.baseline, pair
        assert found.baseline_count == was.baseline_count == len(was.baseline), pair
        assert found.unverified == was.unverified, pair
        assert found.unverified_per_object == was.unverified_per_object, pair
        assert after.counted[pair] == before.counted[pair] == was.baseline_count, pair
    assert after.users == before.users
    assert after.labels == before.labels


async def check_against_naive(engine: AsyncEngine, naive: NaiveStore, kept: list[int]) -> None:
    folded = naive.pruned(set(kept))
    assert folded.complete == kept
    await check_reads(engine, folded)  # the runs made again over the kept snapshots
    view = "SELECT * FROM access_changes WHERE snapshot_id = :b AND :a = :a"
    for i, b in enumerate(kept):
        known = await real_knowledge(engine, b)
        for label in SCOPES:
            assert known.get(label, {}) == naive.knowledge(b, label) == folded.knowledge(b, label)
        for a in [0, *kept[:i]]:
            expected = naive.diff(a, b)
            assert await real_diff(engine, a, b) == expected == folded.diff(a, b), (a, b)
        # The change log now pairs each kept snapshot with the kept one before it.
        previous = kept[i - 1] if i else 0
        assert await real_diff(engine, previous, b, view) == naive.diff(previous, b), b


async def end_a_crashed_run(engine: AsyncEngine) -> None:
    """What the next run does to a crashed one: mark it aborted (it then fails itself)."""
    writer = SnapshotWriter(engine, tool_version="test")
    await writer.begin()
    await writer.fail("gave up", RunCounters())


async def check_prune(path: Path, nights: list[Night], keep_bits: list[bool]) -> None:
    naive = await run_nights(path, nights)
    complete = naive.complete
    kept = sorted({c for c, bit in zip(complete, keep_bits, strict=False) if bit} | {complete[-1]})
    engine = await open_database(path)
    try:
        async with engine.connect() as conn:
            running = (
                await conn.execute(text("SELECT count(*) FROM snapshots WHERE status = 'running'"))
            ).scalar_one()
            if running:
                # The last night crashed: its row is still running, and prune refuses.
                table_rows = await dump(engine)
                with pytest.raises(DatabaseError, match="is running"):
                    await prune(conn, set(kept), dry_run=False)
                assert await dump(engine) == table_rows
        if running:
            await end_a_crashed_run(engine)
        before = await answers(engine, kept)
        rows_before = await dump(engine)
        incomplete = tuple(sorted(r[0] for r in rows_before["snapshots"] if r[3] != "complete"))
        async with engine.connect() as conn:
            dry = await prune(conn, set(kept), dry_run=True)
        assert await dump(engine) == rows_before
        async with engine.connect() as conn:
            report = await prune(conn, set(kept), dry_run=False)
        assert replace(dry, dry_run=False, bytes_before=0) == replace(
            report, bytes_before=0, bytes_after=None
        )
        assert report.kept == tuple(kept)
        assert report.removed_complete == tuple(c for c in complete if c not in kept)
        assert report.removed_incomplete == incomplete
        rows_after = await dump(engine)
        assert [r[0] for r in rows_after["snapshots"]] == kept
        assert len(rows_after["grants"]) == len(rows_before["grants"]) - report.versions_deleted
        assert len(rows_after["objects"]) == len(rows_before["objects"])
        assert len(rows_after["observations"]) == (
            len(rows_before["observations"]) - report.observations_deleted
        )
        check_same_answers(before, await answers(engine, kept), kept)
        # The labels the next snapshot will compute from the objects are those of now.
        async with engine.connect() as conn:
            relabelled = sorted(tuple(r) for r in await conn.execute(text(LABELS_SQL)))
        assert relabelled == before.labels
        await check_against_naive(engine, naive, kept)
        # Pruning again with the same snapshots kept changes nothing.
        async with engine.connect() as conn:
            again = await prune(conn, set(kept), dry_run=False)
        assert again.removed == () and again.versions_moved == again.observations_moved == 0
        assert await dump(engine) == rows_after
    finally:
        await engine.dispose()


R3 = ("{u1}", "{r3}")
# {r3}'s grants: read, then write in a night that is removed, then read again, then failed in the
# kept night after a removed night read them ok: the write version held at no kept snapshot.
A_VERSION_BETWEEN_KEPT_SNAPSHOTS = [
    _night({"{r3}": API}, {R3: "read"}, "ok"),
    _night({"{r3}": API}, {R3: "write"}, "ok"),
    _night({"{r3}": API}, {R3: "read"}, "ok"),
    _night({"{r3}": API}, {R3: "admin"}, "ok"),
    _night({"{r3}": API}, {R3: "read"}, "failed"),
]
# {r3} appears, its grants are first read, then it goes, all in removed nights.
AN_OBJECT_BORN_AND_GONE_BETWEEN_KEPT_SNAPSHOTS = [
    _night({}, {}, "absent"),
    _night({"{r3}": API}, {R3: "read"}, "ok"),
    _night({"{r3}": ("web", "Web", True, "{p1}")}, {R3: "write"}, "ok"),
    _night({}, {}, "absent"),
    _night({"{r2}": API}, {}, "absent"),
]
# The first ok read of {r3}'s grants is in a removed night, the kept night after it fails them.
A_FIRST_READ_IN_A_REMOVED_NIGHT = [
    _night({"{r3}": API}, {}, "absent"),
    _night({"{r3}": API}, {R3: "read"}, "ok", outcomes={"ws/roles": "failed"}),
    _night({"{r3}": API}, {R3: "write"}, "forbidden", outcomes={"ws/roles": "skipped"}),
]
ALL = [True] * 6
# {r3}'s grants: read ok, failed in a kept night, ok in a removed night and the kept one after:
# the ok reads of the kept nights around the failure are two runs, not one across it.
A_FAILED_READ_BETWEEN_KEPT_OK_READS = [
    _night({"{r3}": API}, {R3: "read"}, "ok"),
    _night({"{r3}": API}, {R3: "read"}, "failed"),
    _night({"{r3}": API}, {R3: "read"}, "ok"),
    _night({"{r3}": API}, {R3: "read"}, "ok"),
]


#: Three repositories of one name, all deleted in a night that is kept: the diff's order must not
#: depend on the order SQLite happens to return the rows in (it changed after pruning).
_ALL_OK = {label: "ok" for label in ("ws/repositories", "ws/effective", "ws/roles", "ws/groups",
                                      "ws/{r1}/grants", "ws/{r2}/grants", "ws/{r3}/grants")}
_API = ("api", "API", False, None)
SAME_NAMES_DELETED = [
    Night(repos={}, effective={}, roles={}, direct={("{u1}", "{r1}"): "read",
          ("{u1}", "{r2}"): "read"}, outcomes=_ALL_OK, ending="complete"),
    Night(repos={"{r1}": _API, "{r2}": _API, "{r3}": _API}, effective={}, roles={},
          direct={("{u1}", "{r1}"): "read"}, outcomes=_ALL_OK, ending="complete"),
    Night(repos={}, effective={}, roles={}, direct={}, outcomes=_ALL_OK, ending="complete"),
]  # fmt: skip


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    nights=st.lists(night, min_size=1, max_size=5),
    keep_bits=st.lists(st.booleans(), min_size=6, max_size=6),
)
@example(nights=CHILD_READ_OK_AS_ITS_REPOSITORY_GOES, keep_bits=[True, False, False])
@example(nights=A_VERSION_BETWEEN_KEPT_SNAPSHOTS, keep_bits=[True, True, False, True, False])
@example(nights=AN_OBJECT_BORN_AND_GONE_BETWEEN_KEPT_SNAPSHOTS,
         keep_bits=[True, True, False, False, False])  # fmt: skip
@example(nights=A_FIRST_READ_IN_A_REMOVED_NIGHT, keep_bits=[True, True, False, True])
@example(nights=A_FIRST_READ_IN_A_REMOVED_NIGHT, keep_bits=[False, False, False])
@example(nights=A_FAILED_READ_BETWEEN_KEPT_OK_READS, keep_bits=[True, True, True, False, True])
@example(nights=[_night({}, {}, "absent", "crash")], keep_bits=ALL)
@example(nights=SAME_NAMES_DELETED, keep_bits=[False, True, False, False, False, False])
def test_pruning_changes_no_answer_about_kept_snapshots(
    template_db: Path, nights: list[Night], keep_bits: list[bool]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.db"
        shutil.copy(template_db, path)
        asyncio.run(check_prune(path, nights, keep_bits))


# ---------------------------------------------------------------------------------------------
# a churned org over many nights


async def write_nights(db: Path, nights: int, *, seed: int = 7) -> list[int]:
    """The ids of ``nights`` snapshots of a small org churned at 5% a day."""
    org = generate_org("small", seed=seed)
    rng = random.Random(seed)
    writer = NightWriter(db)
    ids = []
    try:
        for i in range(nights):
            if i:
                apply_churn(org, rng=rng, rate=0.05)
            ids.append((await writer.night(org))[0])
    finally:
        await writer.close()
    return ids


async def _prune_long_history(db: Path) -> tuple[PruneReport, list[int], int, int]:
    ids = await write_nights(db, 30)
    engine = await open_database(db)
    try:
        async with engine.connect() as conn:
            # One snapshot a day (the test ran them within a second): 30 days.
            times = [(sid, at(i)) for i, (sid, _) in enumerate(await complete_snapshot_times(conn))]
            kept = choose_kept(times, daily=3, weekly=0, monthly=0)
            assert sorted(kept) == ids[-3:]
            grants_before = (await conn.execute(text("SELECT count(*) FROM grants"))).scalar_one()
            report = await prune(conn, kept, dry_run=False)
            grants_after = (await conn.execute(text("SELECT count(*) FROM grants"))).scalar_one()
            assert (await conn.execute(text("PRAGMA integrity_check"))).scalar_one() == "ok"
    finally:
        await engine.dispose()
    return report, ids, int(grants_before), int(grants_after)


def test_pruning_a_long_history_shrinks_the_file(tmp_path: Path) -> None:
    db = tmp_path / "long.db"
    report, ids, grants_before, grants_after = asyncio.run(_prune_long_history(db))
    assert report.removed_complete == tuple(ids[:-3])
    assert report.versions_deleted > 0 and report.versions_moved > 0
    assert grants_after == grants_before - report.versions_deleted
    assert report.bytes_after is not None
    assert report.bytes_after < report.bytes_before * 0.8, report
    assert db.stat().st_size == report.bytes_after  # the write-ahead log was folded back
    assert not Path(str(db) + "-wal").exists() or Path(str(db) + "-wal").stat().st_size == 0


async def _versions(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    engine = await open_database(db)
    try:
        out = await dump(engine)
    finally:
        await engine.dispose()
    # Grant ids may differ (a deleted row's id can be given again); nothing reads them. The
    # snapshots' times differ: they were taken one after the other.
    out["grants"] = sorted((r[1:] for r in out["grants"]), key=repr)
    out["snapshots"] = sorted((r[0], r[3]) for r in out["snapshots"])
    return out


def test_pruning_then_snapshotting_is_snapshotting_then_pruning(tmp_path: Path) -> None:
    """Nights written after a prune merge as they would have merged before it: the store that
    pruning leaves is one that the writer goes on from. Two databases get the same twelve nights;
    the first is pruned after night 8, the second after night 12 (keeping nights 9 to 12)."""

    async def run() -> None:
        pruned_first, pruned_last = tmp_path / "a.db", tmp_path / "b.db"
        orgs = [generate_org("small", seed=3), generate_org("small", seed=3)]
        rngs = [random.Random(3), random.Random(3)]
        kept = {2, 5, 8}
        writers = [NightWriter(pruned_first), NightWriter(pruned_last)]
        try:
            for i in range(12):
                for org, rng, writer in zip(orgs, rngs, writers, strict=True):
                    if i:
                        apply_churn(org, rng=rng, rate=0.05)
                    assert (await writer.night(org))[0] == i + 1
                if i + 1 == 8:
                    assert writers[0].engine is not None
                    async with writers[0].engine.connect() as conn:
                        await prune(conn, kept, dry_run=False)
            assert writers[1].engine is not None
            async with writers[1].engine.connect() as conn:
                await prune(conn, kept | set(range(9, 13)), dry_run=False)
        finally:
            for writer in writers:
                await writer.close()
        assert await _versions(pruned_first) == await _versions(pruned_last)

    asyncio.run(run())


# ---------------------------------------------------------------------------------------------
# refusal and dry run


async def _two_nights_and_a_running_one(db: Path) -> AsyncEngine:
    await write_nights(db, 2)
    engine = await open_database(db)
    writer = SnapshotWriter(engine, tool_version="test")
    await writer.begin()  # running, never finished
    return engine


def test_prune_is_refused_while_a_snapshot_runs(tmp_path: Path) -> None:
    async def run() -> None:
        engine = await _two_nights_and_a_running_one(tmp_path / "r.db")
        try:
            before = await dump(engine)
            for dry_run in (False, True):
                async with engine.connect() as conn:
                    with pytest.raises(DatabaseError, match="snapshot 3 is running"):
                        await prune(conn, {2}, dry_run=dry_run)
            assert await dump(engine) == before
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_keep_names_only_complete_snapshots(tmp_path: Path) -> None:
    async def run() -> None:
        await write_nights(tmp_path / "k.db", 2)
        engine = await open_database(tmp_path / "k.db")
        try:
            async with engine.connect() as conn:
                with pytest.raises(ValueError, match=r"\[7\]"):
                    await prune(conn, {1, 7}, dry_run=True)
                # The newest is kept unasked.
                report = await prune(conn, set(), dry_run=True)
                assert report.kept == (2,) and report.removed_complete == (1,)
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_a_dry_run_changes_nothing_and_says_what_would_go(tmp_path: Path) -> None:
    async def run() -> None:
        db = tmp_path / "d.db"
        ids = await write_nights(db, 6)
        engine = await open_database(db)
        writer = SnapshotWriter(engine, tool_version="test")
        await writer.begin()
        await writer.fail("gave up", RunCounters())  # a failed snapshot, 7
        try:
            before = await dump(engine)
            size = db.stat().st_size
            async with engine.connect() as conn:
                report = await prune(conn, {ids[1]}, dry_run=True)
            assert await dump(engine) == before
            assert db.stat().st_size == size
            assert report.dry_run and report.bytes_after is None
            assert report.kept == (ids[1], ids[-1])
            assert report.removed_complete == (ids[0], *ids[2:-1])
            assert report.removed_incomplete == (7,)
            assert report.removed == (ids[0], *ids[2:-1], 7)
            assert report.versions_moved > 0
        finally:
            await engine.dispose()

    asyncio.run(run())
