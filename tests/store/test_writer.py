"""The snapshot writer's guards: what it refuses so that nothing wrong is merged."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from exporter.crawl.records import GrantRecord, ScopeKind, ScopeRef
from exporter.errors import DatabaseError
from exporter.store.database import open_database
from exporter.store.writer import STAGE_BATCH_ROWS, RunCounters, SnapshotWriter

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
        await first.finish_scope(scope, "ok")
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
        await writer.finish_scope(scope, "failed", "boom")
        with pytest.raises(RuntimeError, match="already finished"):
            await writer.finish_scope(scope, "ok")
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
                return int((await conn.execute(text("SELECT count(*) FROM stage_grants"))).scalar())

        page = 100
        for n in range(STAGE_BATCH_ROWS // page + 1):
            await writer.stage(scope, [
                GrantRecord("user", f"{{u{n}-{i}}}", "workspace", "{w}", "member")
                for i in range(page)
            ])
        written = await staged()
        assert STAGE_BATCH_ROWS <= written < STAGE_BATCH_ROWS + page
        await writer.finish_scope(scope, "ok")  # a finished scope leaves nothing pending
        assert await staged() == STAGE_BATCH_ROWS + page
        await writer.complete(RunCounters())
        async with engine.connect() as conn:
            grants = (await conn.execute(text("SELECT count(*) FROM grants"))).scalar()
        assert grants == STAGE_BATCH_ROWS + page and await staged() == 0
    finally:
        await engine.dispose()
