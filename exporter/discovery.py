"""Which workspaces a run reads, and which it read before but may no longer see."""

from __future__ import annotations

import logging

from exporter.config import Settings
from exporter.crawl.fetchers import fetch_workspace, list_workspaces
from exporter.crawl.records import (
    ObjectRecord,
    Outcome,
    ScopeKind,
    ScopeRef,
    ScopeTarget,
    WorkspaceRef,
)
from exporter.crawl.scopes import WORKSPACE_WIDE
from exporter.errors import ForbiddenError, ScopeError, UnsafeUrlError
from exporter.observe import ScopeReport
from exporter.readers import Readers
from exporter.store.writer import SnapshotWriter

log = logging.getLogger(__name__)


def workspace_scopes(ws: WorkspaceRef) -> dict[ScopeKind, ScopeRef]:
    """The workspace-wide scopes of ``ws``, labelled by the endpoint that reads them."""
    target = ScopeTarget.of_workspace(ws)
    return {spec.kind: spec.ref(target) for spec in WORKSPACE_WIDE}


async def discover(
    readers: Readers, settings: Settings
) -> tuple[list[tuple[WorkspaceRef, ObjectRecord | None]], list[str]]:
    """The workspaces to read: those named (on the command line or in the configuration), else
    every one the default credential sees, and every workspace that has a credential of its own."""
    default = readers.get(None)
    found: dict[str, tuple[WorkspaceRef, ObjectRecord | None]] = {}
    unreachable: list[str] = []
    if not settings.workspaces and default is not None:
        for ws in await list_workspaces(default.client):
            found[ws.uuid] = (ws, None)
    named = settings.workspaces or tuple(s for s in readers if s is not None)
    listed = {ws.slug for ws, _ in found.values()}
    for slug in named:
        if slug in listed and slug not in readers:
            continue
        reader = readers.get(slug) or default
        assert reader is not None  # load_settings names a workspace for every credential
        try:
            record = await fetch_workspace(reader.client, slug)
        except ForbiddenError as error:
            unreachable.append(f"workspace {slug!r} is not visible to {reader.name} ({error})")
            continue
        except (ScopeError, UnsafeUrlError) as error:
            unreachable.append(f"workspace {slug!r} could not be read ({error})")
            continue
        # The same workspace named twice (by slug and by {uuid}) is read once.
        ref = WorkspaceRef(record.uuid, record.slug)
        found = {u: w for u, w in found.items() if w[0].slug != record.slug}
        found.setdefault(record.uuid, (ref, record))
    return list(found.values()), unreachable


async def observe_vanished(
    writer: SnapshotWriter, known: list[WorkspaceRef], seen: set[str]
) -> list[ScopeReport]:
    """Workspaces read before that the credential no longer lists: their scopes are recorded as
    forbidden this time, so that nothing about them is claimed and the run reports the gap."""
    reports = []
    for ws in known:
        if ws.uuid in seen:
            continue
        detail = f"workspace {ws.slug!r} is no longer listed by /2.0/user/workspaces"
        log.warning("%s", detail)
        for scope in workspace_scopes(ws).values():
            await writer.finish_scope(await writer.scope_id(scope), Outcome.FORBIDDEN, detail)
            reports.append(ScopeReport(scope.label, Outcome.FORBIDDEN, 0, detail))
    return reports
