"""A snapshot written straight from the simulator's org model through ``SnapshotWriter``.

The records are exactly those the fetchers would yield for the org (same scopes, same shapes,
pages of 100), without HTTP, so that store-side figures (merge, growth over a year, query times)
can be measured at a size and over a number of nights that HTTP would make slow.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from exporter import __version__
from exporter.crawl.records import (
    GrantRecord,
    ObjectRecord,
    Outcome,
    Record,
    ScopeKind,
    ScopeTarget,
    UserRecord,
    WorkspaceRef,
    group_key,
)
from exporter.crawl.scopes import PER_OBJECT, WORKSPACE_WIDE
from exporter.ration import REGISTER_BATCH
from exporter.simulator import Org, apply_churn
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
    if kind is ScopeKind.GROUPS:
        groups: list[Record] = []
        for slug, group in sorted(ws.groups.items()):
            key = group_key(ws.uuid, slug)
            groups.append(ObjectRecord("group", key, slug, group.name, None))
            for user in sorted(group.members):
                groups += [_user(org, user), GrantRecord("user", user, "group", key, "member")]
        return groups
    grants: list[Record] = []
    for (repo, user), permission in sorted(ws.effective_permissions().items()):
        grants += [_user(org, user), GrantRecord("user", user, "repository", repo, permission)]
    return grants


#: The explicit grants of each kind of per-object scope: (table, object type, by group).
EXPLICIT_TABLES = {
    ScopeKind.REPOSITORY_USER_GRANTS: ("repo_user_grants", "repository", False),
    ScopeKind.REPOSITORY_GROUP_GRANTS: ("repo_group_grants", "repository", True),
    ScopeKind.PROJECT_USER_GRANTS: ("project_user_grants", "project", False),
    ScopeKind.PROJECT_GROUP_GRANTS: ("project_group_grants", "project", True),
}


def explicit_records(org: Org, ws: Workspace, kind: ScopeKind, object_uuid: str) -> list[Record]:
    """What the per-object fetcher of ``kind`` would read for one repository or project."""
    table, object_type, by_group = EXPLICIT_TABLES[kind]
    found: list[Record] = []
    for subject, permission in sorted(getattr(ws, table).get(object_uuid, {}).items()):
        if by_group:
            if subject in ws.groups:
                key = group_key(ws.uuid, subject)
                found.append(GrantRecord("group", key, object_type, object_uuid, permission))
        else:
            grant = GrantRecord("user", subject, object_type, object_uuid, permission)
            found += [_user(org, subject), grant]
    return found


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


#: The kinds a database of schema revision 0002 knew: no groups, no explicit grants.
FIRST_KINDS = frozenset({ScopeKind.WORKSPACE, ScopeKind.WORKSPACE_ROLES, ScopeKind.PROJECTS,
                         ScopeKind.REPOSITORIES, ScopeKind.REPOSITORY_PERMISSIONS})  # fmt: skip


async def stage_org(
    writer: SnapshotWriter, org: Org, kinds: frozenset[ScopeKind] | None = None
) -> None:
    """Register, stage and finish every scope of ``org`` (all ``ok``), or those of ``kinds``.

    Per-object scopes are registered ``REGISTER_BATCH`` at a time, as ``run_snapshot`` registers
    them: one at a time, each registration rescans ``scopes``, and 21,000 of them (``large``)
    took longer than the rest of the bench together."""
    for ws in org.workspaces.values():
        ref = WorkspaceRef(ws.uuid, ws.slug)
        for spec in WORKSPACE_WIDE:
            if kinds is None or spec.kind in kinds:
                scope_id = await writer.scope_id(spec.ref(ScopeTarget.of_workspace(ref)))
                await _stage(writer, scope_id, scope_records(org, ws, spec.kind))
        objects = [("repository", r.uuid, r.slug) for r in ws.repositories.values()]
        objects += [("project", p.uuid, p.key) for p in ws.projects.values()]
        per_object = [
            (spec.kind, uuid, spec.ref(ScopeTarget(ref, object_type, uuid, slug)))
            for spec in PER_OBJECT
            if kinds is None or spec.kind in kinds
            for object_type, uuid, slug in objects
            if object_type == spec.object_type
        ]
        for start in range(0, len(per_object), REGISTER_BATCH):
            batch = per_object[start : start + REGISTER_BATCH]
            ids = await writer.scope_ids([scope for _, _, scope in batch])
            for (kind, uuid, _), scope_id in zip(batch, ids, strict=True):
                await _stage(writer, scope_id, explicit_records(org, ws, kind, uuid))


async def _stage(writer: SnapshotWriter, scope_id: int, records: list[Record]) -> None:
    for page in pages_of(records):
        await writer.stage(scope_id, page)
    await writer.finish_scope(scope_id, Outcome.OK, requests=1)


class NightWriter:
    """Writes snapshots of an org into one database, night after night."""

    def __init__(self, db: Path, kinds: frozenset[ScopeKind] | None = None) -> None:
        self.db = db
        self.kinds = kinds
        self.engine: AsyncEngine | None = None

    async def night(self, org: Org) -> tuple[int, float]:
        """One complete snapshot of ``org``: its id and the seconds its merge took."""
        if self.engine is None:
            self.engine = await open_database(self.db)
        writer = SnapshotWriter(self.engine, tool_version=__version__)
        snapshot_id = await writer.begin()
        await stage_org(writer, org, self.kinds)
        started = time.perf_counter()
        await writer.complete(RunCounters())
        return snapshot_id, time.perf_counter() - started

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()
            self.engine = None


async def churned_nights(db: Path, org: Org, nights: int, *, rate: float = 0.2) -> None:
    """``nights`` snapshots of ``org`` into ``db``, a day of churn at ``rate`` after each (the
    day's seed is its number). Mutates ``org``."""
    writer = NightWriter(db)
    try:
        for day in range(nights):
            await writer.night(org)
            apply_churn(org, rng=random.Random(day), rate=rate)
    finally:
        await writer.close()
