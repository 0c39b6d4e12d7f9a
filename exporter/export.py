"""One snapshot, end to end: discover workspaces, observe every scope, merge.

``run_snapshot(settings)`` is the one async entry point. It wires the fetchers (HTTP side) to the
snapshot writer (store side); neither knows the other. Every scope ends as one observation: ``ok``
with its records staged page by page, or ``forbidden``/``failed`` with the reason. A refused
credential stops the run at once; nothing of it is merged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from exporter import __version__
from exporter.bitbucket import BitbucketClient, RateBudget
from exporter.config import Settings
from exporter.crawl.fetchers import (
    fetch_projects,
    fetch_repositories,
    fetch_repository_permissions,
    fetch_workspace,
    fetch_workspace_roles,
    list_workspaces,
)
from exporter.crawl.records import ObjectRecord, Record, ScopeKind, ScopeRef, WorkspaceRef
from exporter.errors import ExporterError, ForbiddenError, ScopeError, UnsafeUrlError
from exporter.progress import Plan, plan_line, show_progress
from exporter.store.database import RunLock, check_database_path, open_database
from exporter.store.queries import known_workspaces, last_complete_requests
from exporter.store.writer import RunCounters, SnapshotSummary, SnapshotWriter

log = logging.getLogger(__name__)

Pages = AsyncIterator[Sequence[Record]]


@dataclass(frozen=True)
class ScopeReport:
    label: str
    outcome: str
    rows: int
    detail: str | None = None


@dataclass
class RunResult:
    summary: SnapshotSummary
    counters: RunCounters
    seconds: float
    scopes: list[ScopeReport] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)

    @property
    def has_gaps(self) -> bool:
        return self.summary.has_gaps or bool(self.unreachable)


def workspace_scopes(ws: WorkspaceRef) -> dict[ScopeKind, ScopeRef]:
    """The workspace-wide scopes of ``ws``, labelled by the endpoint that reads them."""
    paths = {
        ScopeKind.WORKSPACE: f"/2.0/workspaces/{ws.slug}",
        ScopeKind.WORKSPACE_ROLES: f"/2.0/workspaces/{ws.slug}/permissions",
        ScopeKind.PROJECTS: f"/2.0/workspaces/{ws.slug}/projects",
        ScopeKind.REPOSITORIES: f"/2.0/repositories/{ws.slug}",
        ScopeKind.REPOSITORY_PERMISSIONS: f"/2.0/workspaces/{ws.slug}/permissions/repositories",
    }
    return {
        kind: ScopeRef(kind, ws.uuid, "workspace", ws.uuid, label) for kind, label in paths.items()
    }


async def _workspace_pages(
    client: BitbucketClient, ws: WorkspaceRef, known: ObjectRecord | None
) -> Pages:
    yield [known if known is not None else await fetch_workspace(client, ws.slug)]


def scope_pages(
    client: BitbucketClient, ws: WorkspaceRef, known: ObjectRecord | None
) -> dict[ScopeKind, Callable[[], Pages]]:
    """How each workspace-wide scope is read: a page iterator per scope kind."""
    return {
        ScopeKind.WORKSPACE: lambda: _workspace_pages(client, ws, known),
        ScopeKind.WORKSPACE_ROLES: lambda: fetch_workspace_roles(client, ws),
        ScopeKind.PROJECTS: lambda: fetch_projects(client, ws),
        ScopeKind.REPOSITORIES: lambda: fetch_repositories(client, ws),
        ScopeKind.REPOSITORY_PERMISSIONS: lambda: fetch_repository_permissions(client, ws),
    }


async def observe_scope(
    writer: SnapshotWriter, scope: ScopeRef, read: Callable[[], Pages]
) -> ScopeReport:
    """Read one scope to its last page, staging each page; record how it ended."""
    scope_id = await writer.scope_id(scope)
    rows, outcome, detail = 0, "ok", None
    try:
        async for batch in read():
            await writer.stage(scope_id, batch)
            rows += len(batch)
    except (ScopeError, UnsafeUrlError) as error:
        outcome = error.outcome if isinstance(error, ScopeError) else "failed"
        detail = str(error)
        log.warning("%s: %s (%s)", scope.label, outcome, detail)
    await writer.finish_scope(scope_id, outcome, detail)
    log.info("%s: %s, %d records", scope.label, outcome, rows)
    return ScopeReport(scope.label, outcome, rows, detail)


async def discover(
    client: BitbucketClient, settings: Settings
) -> tuple[list[tuple[WorkspaceRef, ObjectRecord | None]], list[str]]:
    """The workspaces to read: those named on the command line, or every one the credential sees."""
    if not settings.workspaces:
        return [(ws, None) for ws in await list_workspaces(client)], []
    found: dict[str, tuple[WorkspaceRef, ObjectRecord | None]] = {}
    unreachable: list[str] = []
    for slug in settings.workspaces:
        try:
            record = await fetch_workspace(client, slug)
        except ForbiddenError as error:
            unreachable.append(f"workspace {slug!r} is not visible to this credential ({error})")
            continue
        except (ScopeError, UnsafeUrlError) as error:
            unreachable.append(f"workspace {slug!r} could not be read ({error})")
            continue
        # The same workspace named twice (by slug and by {uuid}) is read once.
        found.setdefault(record.uuid, (WorkspaceRef(record.uuid, record.slug), record))
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
            await writer.finish_scope(await writer.scope_id(scope), "forbidden", detail)
            reports.append(ScopeReport(scope.label, "forbidden", 0, detail))
    return reports


def counters_of(client: BitbucketClient) -> RunCounters:
    stats = client.stats
    return RunCounters(
        requests=stats.requests,
        retries=stats.retries,
        throttled=stats.throttled,
        wait_seconds=stats.budget_wait_seconds,
        backoff_seconds=stats.seconds_slept,
    )


async def observe_all(
    client: BitbucketClient,
    writer: SnapshotWriter,
    settings: Settings,
    previous: tuple[int, int] | None = None,
    known: list[WorkspaceRef] | None = None,
) -> tuple[list[ScopeReport], list[str]]:
    workspaces, unreachable = await discover(client, settings)
    vanished: list[ScopeReport] = []
    if not settings.workspaces and known:
        vanished = await observe_vanished(writer, known, {ws.uuid for ws, _ in workspaces})
    log.info(
        "reading %d workspace(s): %s",
        len(workspaces),
        ", ".join(ws.slug for ws, _ in workspaces) or "none",
    )
    jobs: list[Coroutine[Any, Any, ScopeReport]] = []
    for ws, record in workspaces:
        readers = scope_pages(client, ws, record)
        for kind, scope in workspace_scopes(ws).items():
            jobs.append(observe_scope(writer, scope, readers[kind]))
    plan = Plan(len(jobs), *expected_requests(len(jobs), previous), rate=settings.rate)
    log.info("%s", plan_line(plan))
    finished: list[ScopeReport] = []

    async def observed(job: Coroutine[Any, Any, ScopeReport]) -> ScopeReport:
        report = await job
        finished.append(report)
        return report

    def counts() -> tuple[int, int, float]:
        return client.stats.requests, len(finished), client.stats.budget_wait_seconds

    progress = asyncio.create_task(show_progress(plan, counts, every=settings.progress_every))
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(observed(job)) for job in jobs]
    except ExceptionGroup as failure:
        raise _first_exporter_error(failure) from None
    finally:
        progress.cancel()
        await asyncio.gather(progress, return_exceptions=True)
    return [task.result() for task in tasks] + vanished, unreachable


def expected_requests(listings: int, previous: tuple[int, int] | None) -> tuple[int, str]:
    """How many requests the run should take: as many as the last complete snapshot took, or,
    on a first run, one page per listing (large listings add pages as their sizes show)."""
    if previous is not None and previous[1] > 0:
        return previous[1], f"as snapshot {previous[0]}"
    return listings + 1, "one page per listing; more for large listings"


def _first_exporter_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report for a failed group of fetchers: ours if there is one."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop(0)
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            leaves.append(error)
    return next((e for e in leaves if isinstance(e, ExporterError)), leaves[0])


async def run_snapshot(
    settings: Settings,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> RunResult:
    """Take one snapshot into ``settings.db_path``; one run at a time per database."""
    check_database_path(settings.db_path)
    lock = RunLock(settings.db_path)
    lock.acquire()
    started = time.monotonic()
    try:
        engine = await open_database(settings.db_path)
        try:
            writer = SnapshotWriter(engine, tool_version=__version__)
            async with engine.connect() as conn:
                previous = await last_complete_requests(conn)
                known = [WorkspaceRef(uuid, slug) for uuid, slug in await known_workspaces(conn)]
            snapshot_id = await writer.begin()
            log.info(
                "snapshot %d started against %s as %s",
                snapshot_id,
                settings.api_url,
                settings.auth.describe(),
            )
            async with aiohttp.ClientSession() as session:
                client = BitbucketClient(
                    session,
                    base_url=settings.api_url,
                    auth=settings.auth,
                    concurrency=settings.concurrency,
                    retry=settings.retry,
                    sleep=sleep,
                    timeout=settings.timeout,
                    budget=RateBudget(*settings.rate, sleep=sleep),
                )
                try:
                    scopes, unreachable = await observe_all(
                        client, writer, settings, previous, known
                    )
                except BaseException as error:
                    status = "failed" if isinstance(error, ExporterError) else "aborted"
                    await asyncio.shield(
                        writer.fail(
                            str(error) or type(error).__name__, counters_of(client), status=status
                        )
                    )
                    raise
                counters = counters_of(client)
            summary = await writer.complete(counters)
        finally:
            await engine.dispose()
    finally:
        lock.release()
    return RunResult(summary, counters, time.monotonic() - started, scopes, unreachable)
