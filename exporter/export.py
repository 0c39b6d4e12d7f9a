"""One snapshot, end to end: discover workspaces, observe every scope, merge.

``run_snapshot(settings)`` is the one async entry point. It wires the fetchers (HTTP side) to the
snapshot writer (store side); neither knows the other. The workspace-wide listings are read
first, whole; then the per-object scopes (explicit grants of each repository and project) in the
planner's order, until the night's request budget or deadline (``crawl.plan``). Every scope
attempted ends as one observation: ``ok`` with its records staged page by page, or
``forbidden``/``failed`` with the reason; per-object scopes left for a later night are counted as
``skipped``. A refused credential stops the run at once; nothing of it is merged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from exporter import __version__
from exporter.config import Settings
from exporter.crawl.plan import (
    Candidate,
    NightBudget,
    NightPlan,
    ScopeHistory,
    in_priority_order,
    night_line,
    per_object_line,
    plan_night,
)
from exporter.crawl.records import (
    ObjectRecord,
    Outcome,
    ScopeKind,
    ScopeRef,
    ScopeTarget,
    WorkspaceRef,
)
from exporter.crawl.scopes import WORKSPACE_WIDE, per_object_kinds
from exporter.discovery import discover, observe_vanished
from exporter.errors import ExporterError
from exporter.observe import Pages, ScopeReport, observe_scope
from exporter.progress import Counts, Plan, show_progress
from exporter.ration import Rationer
from exporter.readers import Reader, Readers, counters_of, make_readers
from exporter.store.database import (
    NOT_MERGED,
    RunFailedError,
    RunLock,
    check_database_path,
    describe_database_error,
    open_database,
)
from exporter.store.queries import (
    KnownObject,
    known_objects,
    known_workspaces,
    last_complete_requests,
    per_object_history,
    workspace_requests_estimate,
)
from exporter.store.writer import RunCounters, SnapshotSummary, SnapshotWriter

log = logging.getLogger(__name__)



@dataclass
class RunResult:
    summary: SnapshotSummary
    counters: RunCounters
    seconds: float
    scopes: list[ScopeReport] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    plan: NightPlan | None = None

    @property
    def has_gaps(self) -> bool:
        return self.summary.has_gaps or bool(self.unreachable)


@dataclass
class Knowledge:
    """What the database knew when the run began, for discovery and the plan."""

    previous: tuple[int, int] | None = None
    workspaces: list[WorkspaceRef] = field(default_factory=list)
    objects: list[KnownObject] = field(default_factory=list)
    history: dict[tuple[str, str], tuple[int | None, bool]] = field(default_factory=dict)
    #: Requests of each workspace's workspace-wide listings, as last observed (uuid -> count).
    workspace_requests: dict[str, int] = field(default_factory=dict)


@dataclass
class Listed:
    """Repositories and projects as tonight's ok listings showed them, by workspace."""

    objects: dict[str, list[KnownObject]] = field(default_factory=dict)
    ok: set[tuple[str, ScopeKind]] = field(default_factory=set)
    forbidden: set[tuple[str, ScopeKind]] = field(default_factory=set)


def _listed_pages(
    read: Callable[[], Pages], ws: WorkspaceRef, listed: list[KnownObject]
) -> Callable[[], Pages]:
    """``read``, noting the repositories and projects it lists for the per-object scopes."""

    async def pages() -> Pages:
        async for batch in read():
            listed.extend(
                KnownObject(ws.uuid, r.object_type, r.uuid, r.slug, r.parent_uuid)
                for r in batch
                if isinstance(r, ObjectRecord) and r.object_type in ("repository", "project")
            )
            yield batch

    return pages


class Run:
    """One run's observing: the workspace-wide listings, then the per-object scopes."""

    def __init__(
        self, readers: Readers, writer: SnapshotWriter, settings: Settings, knowledge: Knowledge
    ) -> None:
        self.readers, self.writer, self.settings = readers, writer, settings
        self.knowledge = knowledge
        self.night = NightBudget(settings.rate, settings.max_requests, settings.deadline)
        self.listed = Listed()
        self.finished: list[ScopeReport] = []
        self.plan: NightPlan | None = None
        self.skipped = 0

    def reader_for(self, ws: WorkspaceRef) -> Reader:
        """A workspace with a credential of its own is read with that credential only."""
        reader = self.readers.get(ws.slug) or self.readers.get(None)
        assert reader is not None
        return reader

    async def observe_all(self) -> tuple[list[ScopeReport], list[str]]:
        workspaces, unreachable = await discover(self.readers, self.settings)
        vanished: list[ScopeReport] = []
        if not self.settings.workspaces and None in self.readers and self.knowledge.workspaces:
            seen = {ws.uuid for ws, _ in workspaces}
            vanished = await observe_vanished(self.writer, self.knowledge.workspaces, seen)
        log.info(
            "reading %d workspace(s): %s",
            len(workspaces),
            ", ".join(ws.slug for ws, _ in workspaces) or "none",
        )
        jobs = [job for ws, record in workspaces for job in self._workspace_jobs(ws, record)]
        self._announce(len(jobs), [ws for ws, _ in workspaces])
        reports = await self._run_all(jobs, self._progress_plan(len(jobs)))
        reports += await self.observe_per_object([ws for ws, _ in workspaces])
        return reports + vanished, unreachable

    def _workspace_jobs(
        self, ws: WorkspaceRef, record: ObjectRecord | None
    ) -> list[Coroutine[Any, Any, ScopeReport]]:
        target = ScopeTarget.of_workspace(ws, record)
        listed = self.listed.objects.setdefault(ws.uuid, [])
        jobs = []
        reader = self.reader_for(ws)
        for spec in WORKSPACE_WIDE:
            read = reader.pages(spec, target)
            if spec.kind in (ScopeKind.REPOSITORIES, ScopeKind.PROJECTS):
                read = _listed_pages(read, ws, listed)
            job = observe_scope(self.writer, spec.ref(target), read)
            jobs.append(self._noted(ws, spec.kind, job))
        return jobs

    async def _noted(
        self, ws: WorkspaceRef, kind: ScopeKind, job: Coroutine[Any, Any, ScopeReport]
    ) -> ScopeReport:
        report = await job
        if report.outcome == Outcome.OK:
            self.listed.ok.add((ws.uuid, kind))
        elif report.outcome == Outcome.FORBIDDEN:
            self.listed.forbidden.add((ws.uuid, kind))
        return report

    def _announce(self, listings: int, workspaces: list[WorkspaceRef]) -> None:
        """The plan line of each credential (each has its own budget), before anything is read."""
        by_reader: dict[str, list[WorkspaceRef]] = {}
        for ws in workspaces:
            by_reader.setdefault(self.reader_for(ws).name, []).append(ws)
        for name, group in by_reader.items():
            uuids = {ws.uuid for ws in group}
            objects = [o for o in self.knowledge.objects if o.workspace_uuid in uuids]
            kinds = [(o, spec) for o in objects for spec in per_object_kinds(o.object_type)]
            never = sum(1 for o, spec in kinds if self.knowledge.history.get(
                (spec.kind.value, o.uuid), (None, False))[0] is None)  # fmt: skip
            share = listings * len(group) // max(len(workspaces), 1)
            expected, basis = expected_requests(share, self.knowledge, uuids)
            plan = plan_night(workspace_requests=expected, per_object=len(kinds),
                              never_observed=never, budget=self.night)  # fmt: skip
            who = "" if len(by_reader) == 1 else f" ({name})"
            line = night_line(plan, self.night, basis, first=not self.knowledge.objects)
            log.info("%s%s", line, who)

    def _progress_plan(self, listings: int) -> Plan:
        expected, basis = expected_requests(listings, self.knowledge)
        first = basis.startswith("one page per listing")
        return Plan(listings, expected, basis, rate=self.settings.rate, grows=first)

    async def _run_all(
        self, jobs: list[Coroutine[Any, Any, ScopeReport]], plan: Plan
    ) -> list[ScopeReport]:
        async def observed(job: Coroutine[Any, Any, ScopeReport]) -> ScopeReport:
            report = await job
            self.finished.append(report)
            return report

        progress = asyncio.create_task(
            show_progress(plan, self._counts, every=self.settings.progress_every)
        )
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(observed(job)) for job in jobs]
        except ExceptionGroup as failure:
            raise _first_exporter_error(failure) from None
        finally:
            progress.cancel()
            await asyncio.gather(progress, return_exceptions=True)
        return [task.result() for task in tasks]

    def _counts(self) -> Counts:
        counters = counters_of(self.readers)
        stats = [reader.client.stats for reader in self.readers.values()]
        now = time.monotonic()
        return Counts(
            counters.requests, len(self.finished), counters.wait_seconds,
            paused=sum(s.throttle_seconds for s in stats),
            pause_left=max([s.pause_ends - now for s in stats] + [0.0]),
            foreseen=sum(s.pages_foreseen for s in stats),
        )  # fmt: skip

    def candidates(self, workspaces: list[WorkspaceRef]) -> list[Candidate]:
        """Per-object scopes of every repository and project of the workspaces read: as tonight's
        listings show them, or as last known where a listing could not be read."""
        known: dict[str, list[KnownObject]] = {}
        for obj in self.knowledge.objects:
            known.setdefault(obj.workspace_uuid, []).append(obj)
        found = []
        for ws in workspaces:
            if (ws.uuid, ScopeKind.REPOSITORY_PERMISSIONS) in self.listed.forbidden:
                log.info("%s: not a workspace admin; explicit grants not read", ws.slug)
                continue
            tonight = self.listed.objects.get(ws.uuid, [])
            for object_type, kind in (("repository", ScopeKind.REPOSITORIES),
                                      ("project", ScopeKind.PROJECTS)):  # fmt: skip
                source = tonight if (ws.uuid, kind) in self.listed.ok else known.get(ws.uuid, [])
                for obj in source:
                    if obj.object_type != object_type:
                        continue
                    target = ScopeTarget(ws, object_type, obj.uuid, obj.slug)
                    for spec in per_object_kinds(object_type):
                        last, changed = self.knowledge.history.get(
                            (spec.kind.value, obj.uuid), (None, False)
                        )
                        found.append(Candidate(spec, target, ScopeHistory(last, changed)))
        return in_priority_order(found)

    async def observe_per_object(self, workspaces: list[WorkspaceRef]) -> list[ScopeReport]:
        """Each credential's per-object scopes, in the planner's order, within its night."""
        by_reader: dict[str, tuple[Reader, list[Candidate]]] = {}
        slugs = {ws.uuid: ws for ws in workspaces}
        for candidate in self.candidates(workspaces):
            reader = self.reader_for(slugs[candidate.target.workspace.uuid])
            by_reader.setdefault(reader.name, (reader, []))[1].append(candidate)
        if not by_reader:
            self.plan = plan_night(workspace_requests=counters_of(self.readers).requests,
                                   per_object=0, never_observed=0, budget=self.night)
            return []
        before = len(self.finished)
        reports: list[ScopeReport] = []

        async def observe(scope: ScopeRef, read: Callable[[], Pages], scope_id: int) -> None:
            report = await observe_scope(self.writer, scope, read, scope_id=scope_id)
            reports.append(report)
            self.finished.append(report)

        total = sum(len(c) for _, c in by_reader.values())
        progress = Plan(before + total, counters_of(self.readers).requests + total, "the plan",
                        rate=self.settings.rate)  # fmt: skip
        task = asyncio.create_task(
            show_progress(progress, self._counts, every=self.settings.progress_every)
        )
        try:
            async with asyncio.TaskGroup() as group:
                for reader, ordered in by_reader.values():
                    plan = plan_night(
                        workspace_requests=reader.client.stats.requests,
                        per_object=len(ordered),
                        never_observed=sum(c.never_observed for c in ordered),
                        budget=self.night,
                    )
                    self.plan = self.plan or plan
                    who = "" if len(by_reader) == 1 else f" ({reader.name})"
                    log.info("%s%s", per_object_line(plan, self.night), who)
                    rationer = Rationer(reader, self.writer, self.night,
                                        concurrency=self.settings.concurrency, observe=observe)
                    group.create_task(rationer.run(ordered))
        except ExceptionGroup as failure:
            raise _first_exporter_error(failure) from None
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.skipped = total - len(reports)
        if self.skipped:
            log.info("%d per-object scopes left for a later night", self.skipped)
        return reports


def expected_requests(
    listings: int, knowledge: Knowledge, workspaces: set[str] | None = None
) -> tuple[int, str]:
    """How many requests the workspace-wide listings (of ``workspaces``, or all) should take: as
    many as at their latest observations, or, on a first run, one page per listing (large
    listings add pages)."""
    known = knowledge.workspace_requests
    last = sum(n for uuid, n in known.items() if workspaces is None or uuid in workspaces)
    if last > 0:
        return last + 1, "as last observed"
    previous = knowledge.previous
    if previous is not None and previous[1] > 0 and workspaces is None:
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


def _why(error: BaseException) -> str:
    """The message stored on a run that did not complete."""
    if isinstance(error, asyncio.CancelledError | KeyboardInterrupt):
        return "interrupted (Ctrl-C or a signal) before it completed; nothing of it was merged"
    return str(error) or type(error).__name__


async def load_knowledge(writer_engine: Any) -> Knowledge:
    async with writer_engine.connect() as conn:
        objects = await known_objects(conn)
        return Knowledge(
            previous=await last_complete_requests(conn),
            workspaces=[WorkspaceRef(u, s) for u, s in await known_workspaces(conn)],
            objects=objects,
            history=await per_object_history(conn, objects),
            workspace_requests=await workspace_requests_estimate(conn),
        )


async def end_failed(
    writer: SnapshotWriter, error: BaseException, counters: RunCounters, db_path: Path
) -> BaseException:
    """Record a run that did not complete (``failed``, or ``aborted`` when interrupted) with its
    reason; the error to raise for it. An SQLite failure (locked by another program, disk full,
    ...) becomes ``RunFailedError`` with one line saying what to do. If the database refuses even
    that record, the row stays ``running`` and the next run marks it aborted."""
    reason = describe_database_error(error, db_path, consequence=NOT_MERGED)
    raised: BaseException = error
    if reason is not None:
        status, message = "failed", reason
        raised = RunFailedError(reason)
    elif isinstance(error, ExporterError):
        status, message = "failed", _why(error)
    elif isinstance(error, Exception):  # a defect; the CLI says so
        status, message = "failed", f"internal error ({type(error).__name__}: {error})"
    else:  # Ctrl-C, a signal, a cancellation
        status, message = "aborted", _why(error)
    try:
        await asyncio.shield(writer.fail(message, counters, status=status))
    except Exception as failing:  # still locked, still full, or taken over by another run
        log.warning(
            "snapshot %d could not be marked %s (%s); the next run marks it aborted",
            writer.snapshot_id, status, describe_database_error(failing, db_path) or failing,
        )  # fmt: skip
    return raised


async def _observe_and_merge(
    engine: AsyncEngine, settings: Settings, sleep: Callable[[float], Awaitable[None]],
    clock: Callable[[], float],
) -> RunResult:  # fmt: skip
    """Begin the snapshot, observe every scope, merge; a run that fails on the way is recorded
    as such (``end_failed``) before its error is raised."""
    writer = SnapshotWriter(engine, tool_version=__version__)
    knowledge = await load_knowledge(engine)
    snapshot_id = await writer.begin()
    async with aiohttp.ClientSession() as session:
        readers = make_readers(session, settings, sleep=sleep, clock=clock)
        who = [f"{r.client.auth_description} for {r.name}" for r in readers.values()]
        log.info("snapshot %d started against %s as %s", snapshot_id, settings.api_url,
                 "; ".join(who))  # fmt: skip
        run = Run(readers, writer, settings, knowledge)
        try:
            scopes, unreachable = await run.observe_all()
        except BaseException as error:
            raised = await end_failed(writer, error, counters_of(readers), settings.db_path)
            if raised is error:
                raise
            raise raised from None
        counters = counters_of(readers)
    try:
        summary = await writer.complete(counters, skipped=run.skipped)
    except BaseException as error:
        # The merge is one transaction: whatever stopped it, nothing of it was kept.
        raised = await end_failed(writer, error, counters, settings.db_path)
        if raised is error:
            raise
        raise raised from None
    return RunResult(summary, counters, 0.0, scopes, unreachable, run.plan)


async def run_snapshot(
    settings: Settings,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RunResult:
    """Take one snapshot into ``settings.db_path``; one run at a time per database file."""
    check_database_path(settings.db_path)
    lock = RunLock(settings.db_path)
    lock.acquire()
    started = time.monotonic()
    try:
        engine = await open_database(settings.db_path)
        try:
            result = await _observe_and_merge(engine, settings, sleep, clock)
        except Exception as error:  # the database failed before the run began
            reason = describe_database_error(error, settings.db_path, consequence=NOT_MERGED)
            if reason is None:
                raise
            raise RunFailedError(reason) from None
        finally:
            await engine.dispose()
    finally:
        lock.release()
    result.seconds = time.monotonic() - started
    return result
