"""A snapshot written straight from the simulator's org model through ``SnapshotWriter``.

The records are exactly those the fetchers would yield for the org (same scopes, same shapes,
pages of 100), without HTTP, so that store-side figures (merge, growth over a year, query times)
can be measured at a size and over a number of nights that HTTP would make slow.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from exporter import __version__
from exporter.crawl.records import (
    GrantRecord,
    ObjectRecord,
    Record,
    ScopeKind,
    UserRecord,
    WorkspaceRef,
)
from exporter.export import workspace_scopes
from exporter.simulator import Org
from exporter.simulator.org import Workspace
from exporter.store.database import open_database
from exporter.store.writer import RunCounters, SnapshotWriter

PAGE = 100


def _user(org: Org, uuid: str) -> UserRecord:
    user = org.users[uuid]
    return UserRecord(uuid, user.display_name, user.nickname, user.account_id)


def scope_records(org: Org, ws: Workspace, kind: ScopeKind) -> list[Record]:
    """What the fetcher of ``kind`` would read from ``ws``, in listing order."""
    if kind is ScopeKind.WORKSPACE:
        return [ObjectRecord("workspace", ws.uuid, ws.slug, ws.name, ws.is_private)]
    if kind is ScopeKind.WORKSPACE_ROLES:
        roles: list[Record] = []
        for user, role in sorted(ws.members.items()):
            roles += [_user(org, user), GrantRecord("user", user, "workspace", ws.uuid, role)]
        return roles
    if kind is ScopeKind.PROJECTS:
        return [
            ObjectRecord("project", p.uuid, p.key, p.name, p.is_private)
            for p in sorted(ws.projects.values(), key=lambda p: p.uuid)
        ]
    if kind is ScopeKind.REPOSITORIES:
        return [
            ObjectRecord("repository", r.uuid, r.slug, r.name, r.is_private, r.project_uuid)
            for r in sorted(ws.repositories.values(), key=lambda r: r.uuid)
        ]
    grants: list[Record] = []
    for (repo, user), permission in sorted(ws.effective_permissions().items()):
        grants += [_user(org, user), GrantRecord("user", user, "repository", repo, permission)]
    return grants


def pages_of(records: Sequence[Record], size: int = PAGE) -> Iterator[Sequence[Record]]:
    """``records`` in pages of ``size`` grants or objects; user records ride along, once a page
    (as the fetchers yield them)."""
    page: list[Record] = []
    users: set[str] = set()
    facts = 0
    for record in records:
        if isinstance(record, UserRecord):
            if record.uuid not in users:
                users.add(record.uuid)
                page.append(record)
            continue
        page.append(record)
        facts += 1
        if facts == size:
            yield page
            page, users, facts = [], set(), 0
    if page:
        yield page


async def stage_org(writer: SnapshotWriter, org: Org) -> None:
    """Register, stage and finish every workspace-wide scope of ``org`` (all ``ok``)."""
    for ws in org.workspaces.values():
        for kind, scope in workspace_scopes(WorkspaceRef(ws.uuid, ws.slug)).items():
            scope_id = await writer.scope_id(scope)
            for page in pages_of(scope_records(org, ws, kind)):
                await writer.stage(scope_id, page)
            await writer.finish_scope(scope_id, "ok")


class NightWriter:
    """Writes snapshots of an org into one database, night after night."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.engine: AsyncEngine | None = None

    async def night(self, org: Org) -> tuple[int, float]:
        """One complete snapshot of ``org``: its id and the seconds its merge took."""
        if self.engine is None:
            self.engine = await open_database(self.db)
        writer = SnapshotWriter(self.engine, tool_version=__version__)
        snapshot_id = await writer.begin()
        await stage_org(writer, org)
        started = time.perf_counter()
        await writer.complete(RunCounters())
        return snapshot_id, time.perf_counter() - started

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()
            self.engine = None
