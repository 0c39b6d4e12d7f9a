"""The snapshot writer's guards: what it refuses so that nothing wrong is merged."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from exporter.crawl.records import GrantRecord, ScopeKind, ScopeRef
from exporter.errors import DatabaseError
from exporter.store.database import open_database
from exporter.store.writer import RunCounters, SnapshotWriter

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
