"""One snapshot, end to end: discover workspaces, observe every scope, merge.

``run_snapshot(settings)`` is the one async entry point. It wires the fetchers (HTTP side) to the
snapshot writer (store side); neither knows the other. First the workspaces, each credential's in
the planner's order (never read, then least recently read), each read whole (all its
workspace-wide listings) while the night's request budget and deadline allow; then the
per-object scopes (explicit grants of each repository and project) of the workspaces read
tonight, in the planner's order, in what is left of the night (``crawl.plan``). Every scope
attempted ends as one observation: ``ok`` with its records staged page by page, or
``forbidden``/``failed`` with the reason; the listings of a workspace left for a later night and
the per-object scopes not reached are counted as ``skipped``. A refused credential stops the run
at once; nothing of it is merged.
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
    LISTINGS,
    Candidate,
    NightBudget,
    NightPlan,
    Rotation,
    ScopeHistory,
    WorkspaceTurn,
    in_priority_order,
    night_line,
    per_object_line,
    plan_night,
    rationed_plan,
    rotation,
    total_line,
    with_estimates,
    workspaces_in_order,
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
from exporter.errors import ExporterError, InterruptedAfterMergeError
from exporter.observe import Pages, ScopeReport, observe_scope
from exporter.progress import Counts, Plan, show_progress
from exporter.ration import Rationer, WorkspaceRationer, WorkspaceTally
from exporter.readers import Reader, Readers, counters_of, make_readers
from exporter.store.database import (
    NOT_MERGED,
    RunFailedError,
    RunLock,
    check_database_path,
    describe_database_error,
    open_database,
    remove_stage,
)
from exporter.store.queries import (
    KnownObject,
    ScopeHistories,
    known_objects,
    known_workspaces,
    last_complete_requests,
    per_object_history,
    workspace_requests_estimate,
)
from exporter.store.rotation import workspace_turns
from exporter.store.writer import RunCounters, SnapshotSummary, SnapshotWriter

log = logging.getLogger(__name__)



@dataclass
class RunResult:
    summary: SnapshotSummary
    counters: RunCounters
    seconds: float
    #: The reports of the workspace-wide listings, and of the per-object scopes not read ok.
    scopes: list[ScopeReport] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    plan: NightPlan | None = None
    #: Workspaces whose listings the night left for a later one (slugs): no gap, their turn.
    later: list[str] = field(default_factory=list)

    @property
    def has_gaps(self) -> bool:
        return self.summary.has_gaps or bool(self.unreachable)


@dataclass
class Knowledge:
    """What the database knew when the run began, for discovery and the plan."""

    previous: tuple[int, int] | None = None
    workspaces: list[WorkspaceRef] = field(default_factory=list)
    objects: list[KnownObject] = field(default_factory=list)
    history: ScopeHistories = field(default_factory=ScopeHistories)
    #: Requests of each workspace's workspace-wide listings, as last observed (uuid -> count).
    workspace_requests: dict[str, int] = field(default_factory=dict)
    #: When each workspace's listings were last read, and what that took (uuid -> (the oldest of
    #: their latest ok observations, requests)); a workspace never read is absent.
    turns: dict[str, tuple[int, int]] = field(default_factory=dict)

    def turn(self, ws: WorkspaceRef) -> WorkspaceTurn:
        last, requests = self.turns.get(ws.uuid, (None, 0))
        return WorkspaceTurn(ws.uuid, ws.slug, last, requests)


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


def _tallied(read: Callable[[], Pages], tally: WorkspaceTally) -> Callable[[], Pages]:
    """``read``, counting its pages on the workspace's tally."""

    async def pages() -> Pages:
        async for batch in read():
            tally.pages += 1
            yield batch

    return pages


@dataclass
class Share:
    """One credential's workspaces tonight: in the planner's order, what it had spent before
    them, and which it read."""

    reader: Reader
    ordered: list[WorkspaceTurn]
    spent: int = 0
    rotation: Rotation | None = None
    read: list[WorkspaceTurn] = field(default_factory=list)
    pages: dict[str, int] = field(default_factory=dict)  # tonight's, by workspace uuid


class Run:
    """One run's observing: the workspace-wide listings, then the per-object scopes."""

    def __init__(
        self, readers: Readers, writer: SnapshotWriter, settings: Settings, knowledge: Knowledge
    ) -> None:
        self.readers, self.writer, self.settings = readers, writer, settings
        self.knowledge = knowledge
        self.night = NightBudget(settings.rate, settings.max_requests, settings.deadline)
        self.listed = Listed()
        self.finished = 0  # scopes observed so far, for the progress line
        self.plan: NightPlan | None = None
        self.skipped = 0
        self.later: list[str] = []

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
        shares = self._shares([ws for ws, _ in workspaces])
        self._announce(shares, [ws for ws, _ in workspaces])
        records = dict(workspaces)
        found = await self._read_workspaces(shares, records)
        read = {t.uuid for share in shares.values() for t in share.read}
        # Reports in the order of discovery and of the listings, whatever order read them.
        reports = [found[(ws.uuid, spec.kind)] for ws, _ in workspaces if ws.uuid in read
                   for spec in WORKSPACE_WIDE]  # fmt: skip
        reports += await self.observe_per_object(
            [ws for ws, _ in workspaces if ws.uuid in read], shares
        )
        later = [ws for ws, _ in workspaces if ws.uuid not in read]
        self.later = [ws.slug for ws in later]
        self.skipped += self._left_for_later(later)
        return reports + vanished, unreachable

    def _shares(self, workspaces: list[WorkspaceRef]) -> dict[str, Share]:
        """Each credential's workspaces, in the planner's order."""
        shares: dict[str, Share] = {}
        for ws in workspaces:
            reader = self.reader_for(ws)
            shares.setdefault(reader.name, Share(reader, [])).ordered.append(
                self.knowledge.turn(ws)
            )
        for share in shares.values():
            share.ordered = with_estimates(workspaces_in_order(share.ordered))
            share.spent = share.reader.client.stats.requests
            share.rotation = rotation(share.ordered, self.night, spent=share.spent)
        return shares

    def _left_for_later(self, workspaces: list[WorkspaceRef]) -> int:
        """The scopes of workspaces whose listings wait for a later night: their listings and the
        per-object scopes of their known repositories and projects; nothing of them is observed,
        so their knowledge stays as last observed."""
        if not workspaces:
            return 0
        uuids = {ws.uuid for ws in workspaces}
        per_object = sum(len(per_object_kinds(o.object_type)) for o in self.knowledge.objects
                         if o.workspace_uuid in uuids)  # fmt: skip
        return LISTINGS * len(workspaces) + per_object

    def _workspace_jobs(
        self, ws: WorkspaceRef, record: ObjectRecord | None, tally: WorkspaceTally
    ) -> list[Coroutine[Any, Any, ScopeReport]]:
        target = ScopeTarget.of_workspace(ws, record)
        listed = self.listed.objects.setdefault(ws.uuid, [])
        jobs = []
        reader = self.reader_for(ws)
        for spec in WORKSPACE_WIDE:
            read = _tallied(reader.pages(spec, target), tally)
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

    def _known_scopes(self, uuids: set[str]) -> tuple[list[tuple[KnownObject, str]], int]:
        """The known per-object scopes of these workspaces, and how many were never observed."""
        objects = [o for o in self.knowledge.objects if o.workspace_uuid in uuids]
        kinds = [(o, spec.kind.value) for o in objects for spec in per_object_kinds(o.object_type)]
        history = self.knowledge.history
        never = sum(1 for o, kind in kinds if history.get(kind, o.uuid)[0] is None)
        return kinds, never

    def _announce(self, shares: dict[str, Share], workspaces: list[WorkspaceRef]) -> None:
        """The plan line of each credential (each has its own budget), before anything is read;
        with several credentials, when some leave workspaces for later, the line of them all."""
        listings = LISTINGS * len(workspaces)
        first = not self.knowledge.objects
        for name, share in shares.items():
            uuids = {t.uuid for t in share.ordered}
            kinds, never = self._known_scopes(uuids)
            assert share.rotation is not None
            if share.rotation.rationed:
                # Tonight's explicit grants are those of the workspaces read tonight.
                tonight = share.ordered[: share.rotation.tonight]
                kinds, never = self._known_scopes({t.uuid for t in tonight})
                plan = rationed_plan(share.rotation, share.ordered, per_object=len(kinds),
                                     never_observed=never, scopes=self._scopes_by_workspace(uuids),
                                     budget=self.night, spent=share.spent)  # fmt: skip
                basis = _basis(tonight)
            else:
                share_of = listings * len(share.ordered) // max(len(workspaces), 1)
                expected, basis = expected_requests(share_of, self.knowledge, uuids)
                plan = plan_night(workspace_requests=expected, per_object=len(kinds),
                                  never_observed=never, budget=self.night)  # fmt: skip
            who = "" if len(shares) == 1 else f" ({name})"
            log.info("%s%s", night_line(plan, self.night, basis, first=first), who)
        rotations = [s.rotation for s in shares.values() if s.rotation is not None]
        if len(rotations) > 1 and any(r.rationed for r in rotations):
            log.info("%s", total_line(rotations, sum(r.requests for r in rotations)))

    def _scopes_by_workspace(self, uuids: set[str]) -> dict[str, int]:
        """Known per-object scopes of each of these workspaces."""
        found: dict[str, int] = dict.fromkeys(uuids, 0)
        for obj in self.knowledge.objects:
            if obj.workspace_uuid in found:
                found[obj.workspace_uuid] += len(per_object_kinds(obj.object_type))
        return found

    def _progress_plan(self, shares: dict[str, Share], listings: int) -> Plan:
        rotations = [s.rotation for s in shares.values() if s.rotation is not None]
        if any(r.rationed for r in rotations):
            expected = sum(r.requests for r in rotations)
            tonight = [t for s in shares.values() if s.rotation is not None
                       for t in s.ordered[: s.rotation.tonight]]  # fmt: skip
            first = any(t.never_read for t in tonight)
            return Plan(LISTINGS * len(tonight), expected, _basis(tonight),
                        rate=self.settings.rate, grows=first)  # fmt: skip
        expected, basis = expected_requests(listings, self.knowledge)
        first = basis.startswith("one page per listing")
        return Plan(listings, expected, basis, rate=self.settings.rate, grows=first)

    async def _read_workspaces(
        self, shares: dict[str, Share], records: dict[WorkspaceRef, ObjectRecord | None]
    ) -> dict[tuple[str, ScopeKind], ScopeReport]:
        """Each credential's workspaces, in its order, each read whole, while its night allows
        (``WorkspaceRationer``); the reports of their listings."""
        refs = {ws.uuid: ws for ws in records}
        found: dict[tuple[str, ScopeKind], ScopeReport] = {}

        async def read_workspace(share: Share, turn: WorkspaceTurn, tally: WorkspaceTally) -> None:
            ws = refs[turn.uuid]
            jobs = self._workspace_jobs(ws, records[ws], tally)
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._finished_one(job)) for job in jobs]
            for spec, task in zip(WORKSPACE_WIDE, tasks, strict=True):
                found[(ws.uuid, spec.kind)] = task.result()
            share.pages[ws.uuid] = tally.pages

        plan = self._progress_plan(shares, LISTINGS * len(records))
        progress = asyncio.create_task(
            show_progress(plan, self._counts, every=self.settings.progress_every)
        )
        try:
            async with asyncio.TaskGroup() as group:
                for share in shares.values():

                    async def ration(share: Share = share) -> None:
                        def read(turn: WorkspaceTurn, tally: WorkspaceTally) -> Awaitable[None]:
                            return read_workspace(share, turn, tally)

                        rationer = WorkspaceRationer(share.reader, self.night, read)
                        share.read = await rationer.run(share.ordered)

                    group.create_task(ration())
        except ExceptionGroup as failure:
            raise _first_exporter_error(failure) from None
        finally:
            progress.cancel()
            await asyncio.gather(progress, return_exceptions=True)
        return found

    async def _finished_one(self, job: Coroutine[Any, Any, ScopeReport]) -> ScopeReport:
        report = await job
        self.finished += 1
        return report

    def _counts(self) -> Counts:
        counters = counters_of(self.readers)
        stats = [reader.client.stats for reader in self.readers.values()]
        now = time.monotonic()
        return Counts(
            counters.requests, self.finished, counters.wait_seconds,
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
                        last, changed = self.knowledge.history.get(spec.kind.value, obj.uuid)
                        found.append(Candidate(spec, target, ScopeHistory(last, changed)))
        return in_priority_order(found)

    def _per_object_plan(
        self, reader: Reader, ordered: list[Candidate], share: Share | None
    ) -> NightPlan:
        """The plan of one credential's per-object scopes, once its workspaces are read; when
        some of its workspaces were left for later, with tonight's share of them and the pace of
        the rotation, tonight's workspaces counted as they were read."""
        never = sum(c.never_observed for c in ordered)
        requests = reader.client.stats.requests
        if share is None or len(share.read) == len(share.ordered):
            return plan_night(workspace_requests=requests, per_object=len(ordered),
                              never_observed=never, budget=self.night)  # fmt: skip
        snapshot = self.writer.snapshot_id
        turns = with_estimates([WorkspaceTurn(t.uuid, t.slug, snapshot, share.pages.get(t.uuid, 0))
                                if t in share.read else t for t in share.ordered])  # fmt: skip
        tonight = len(share.read)
        scopes = self._scopes_by_workspace({t.uuid for t in share.ordered})
        scopes.update(dict.fromkeys((t.uuid for t in share.read), 0))
        for candidate in ordered:
            scopes[candidate.target.workspace.uuid] += 1
        done = rotation(turns, self.night, spent=share.spent, tonight=tonight)
        return rationed_plan(done, turns, per_object=len(ordered), never_observed=never,
                             scopes=scopes, budget=self.night, spent=share.spent,
                             workspace_requests=requests, tonight=tonight)  # fmt: skip

    async def observe_per_object(
        self, workspaces: list[WorkspaceRef], shares: dict[str, Share] | None = None
    ) -> list[ScopeReport]:
        """Each credential's per-object scopes of the workspaces read tonight, in the planner's
        order, within its night."""
        by_reader: dict[str, tuple[Reader, list[Candidate]]] = {}
        slugs = {ws.uuid: ws for ws in workspaces}
        for candidate in self.candidates(workspaces):
            reader = self.reader_for(slugs[candidate.target.workspace.uuid])
            by_reader.setdefault(reader.name, (reader, []))[1].append(candidate)
        # Each candidate holds its scope's history now: the map of it (210,000 scopes at
        # ``huge``, 34 MB) need not be held while they are read.
        self.knowledge.history = ScopeHistories()
        shares = shares or {}
        # A credential that left workspaces for later says so even with no per-object scope.
        names = [*by_reader, *(name for name, share in shares.items()
                               if name not in by_reader and len(share.read) < len(share.ordered))]
        for name in names:
            reader, ordered = by_reader.get(name) or (shares[name].reader, [])
            plan = self._per_object_plan(reader, ordered, shares.get(name))
            self.plan = self.plan or plan
            who = "" if len(names) == 1 else f" ({reader.name})"
            log.info("%s%s", per_object_line(plan, self.night), who)
        if not by_reader:
            if self.plan is None:
                self.plan = plan_night(workspace_requests=counters_of(self.readers).requests,
                                       per_object=0, never_observed=0, budget=self.night)
            return []
        before = self.finished
        # Only the reports a user is shown are kept: a large organisation has 200,000 scopes.
        reports: list[ScopeReport] = []

        async def observe(scope: ScopeRef, read: Callable[[], Pages], scope_id: int) -> None:
            report = await observe_scope(self.writer, scope, read, scope_id=scope_id)
            if report.outcome != Outcome.OK:
                reports.append(report)
            self.finished += 1

        total = sum(len(c) for _, c in by_reader.values())
        progress = Plan(before + total, counters_of(self.readers).requests + total, "the plan",
                        rate=self.settings.rate)  # fmt: skip
        task = asyncio.create_task(
            show_progress(progress, self._counts, every=self.settings.progress_every)
        )
        try:
            async with asyncio.TaskGroup() as group:
                for reader, ordered in by_reader.values():
                    rationer = Rationer(reader, self.writer, self.night,
                                        concurrency=self.settings.concurrency, observe=observe)
                    group.create_task(rationer.run(ordered))
        except ExceptionGroup as failure:
            raise _first_exporter_error(failure) from None
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.skipped = total - (self.finished - before)
        if self.skipped:
            log.info("%d per-object scopes left for a later night", self.skipped)
        return reports


def _basis(tonight: list[WorkspaceTurn]) -> str:
    """Why tonight's workspaces are expected to take what the plan says."""
    never = [t for t in tonight if t.never_read]
    if not never:
        return "as last observed"
    if any(t.estimate for t in never):
        return "as last observed; those never read as the average of those read"
    if len(never) == len(tonight):
        return "one page per listing; more for large listings"
    return "as last observed; one page per listing of those never read"


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
            turns=await workspace_turns(conn),
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
    # What the plan knew and what tonight's listings named are not needed by the merge: freed
    # for it (at huge, 100 MB of repositories, projects and scope histories).
    del knowledge
    run.knowledge, run.listed = Knowledge(), Listed()
    try:
        summary = await writer.complete(counters, skipped=run.skipped)
    except BaseException as error:
        if isinstance(error, asyncio.CancelledError | KeyboardInterrupt) and await asyncio.shield(
            writer.merged_after_all()
        ):
            raise InterruptedAfterMergeError(snapshot_id) from None
        # The merge is one transaction: whatever stopped it, nothing of it was kept.
        raised = await end_failed(writer, error, counters, settings.db_path)
        if raised is error:
            raise
        raise raised from None
    return RunResult(summary, counters, 0.0, scopes, unreachable, run.plan, run.later)


async def run_snapshot(
    settings: Settings,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RunResult:
    """Take one snapshot into ``settings.db_path``; one run at a time per database file."""
    # Not waited for if locked: another run's first merge may hold it, and then this run is
    # told at once, by the run lock, that a snapshot is running.
    check_database_path(settings.db_path, wait=False)
    lock = RunLock(settings.db_path)
    lock.acquire()
    started = time.monotonic()
    try:
        remove_stage(settings.db_path)  # whatever a dead run left there is never read
        engine = await open_database(settings.db_path)
        result: RunResult | None = None
        merged: int | None = None  # the snapshot this run merged, once it has
        try:
            result = await _observe_and_merge(engine, settings, sleep, clock)
            merged = result.summary.snapshot_id
        except InterruptedAfterMergeError as interrupted:
            merged = interrupted.snapshot_id
            raise
        except Exception as error:  # the database failed before the run began
            reason = describe_database_error(error, settings.db_path, consequence=NOT_MERGED)
            if reason is None:
                raise
            raise RunFailedError(reason) from None
        finally:
            try:
                await engine.dispose()
                remove_stage(settings.db_path)
            except (asyncio.CancelledError, KeyboardInterrupt):
                if merged is None:
                    raise
                # The stage left behind is removed unread by the next run.
                raise InterruptedAfterMergeError(merged) from None
    finally:
        lock.release()
    result.seconds = time.monotonic() - started
    return result
