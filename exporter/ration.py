"""Workspaces, then per-object scopes, observed in the planner's order until a credential's
night is spent.

Each credential is a ``Reader``: its client and its own rolling-window budget (Bitbucket limits
per user). ``WorkspaceRationer`` starts the workspaces of one reader in order, each read whole
(all its workspace-wide listings at once), while ``crawl.plan.workspace_stop`` allows the next:
the requests made, plus those the workspaces in progress are still expected to make, leave room
for it. A workspace never read has no expected size, so while one is in progress no other starts
(when the night has a cap or a deadline). ``Rationer`` then observes the per-object candidates of
one reader in order, at most twice the concurrency at once, and stops at that reader's request cap
(``--max-requests``) or when its budget could not start another request before the deadline.
What they do not reach is left for a later night.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from exporter.crawl.plan import Candidate, NightBudget, WorkspaceTurn, workspace_stop
from exporter.crawl.records import ScopeRef
from exporter.observe import Pages
from exporter.readers import Reader
from exporter.store.writer import SnapshotWriter

log = logging.getLogger(__name__)

#: Per-object scopes registered per transaction.
REGISTER_BATCH = 500
Observe = Callable[[ScopeRef, Callable[[], Pages], int], Awaitable[object]]
#: Why a workspace waits: one never read is in progress, and its size is not known until read.
UNKNOWN = "size of the workspace in progress"
#: Workspaces one reader reads at once. Their listings keep the client's concurrent requests
#: busy; more at once only holds more in memory (pages read ahead, and each workspace-wide
#: listing's open grants while it is read: at ``huge``, 50 workspaces at once held 88 MB of them).
WORKSPACES_AT_ONCE = 8


class WorkspaceTally:
    """One workspace in progress: what it was expected to take (None: never read) and the pages
    its listings have read so far."""

    def __init__(self, expected: int | None) -> None:
        self.expected = expected
        self.pages = 0

    @property
    def owed(self) -> int:
        """Requests it is still expected to make (0 once past its expectation)."""
        return max((self.expected or 0) - self.pages, 0)


ReadWorkspace = Callable[[WorkspaceTurn, WorkspaceTally], Awaitable[object]]


class WorkspaceRationer:
    """Starts one reader's workspaces in the planner's order while its night allows; each is
    read whole by ``read`` once started."""

    def __init__(self, reader: Reader, night: NightBudget, read: ReadWorkspace) -> None:
        self.reader, self.night, self.read = reader, night, read
        self.in_progress: dict[str, WorkspaceTally] = {}

    def stop_reason(self, turn: WorkspaceTurn, *, first: bool) -> str | None:
        """Why ``turn`` may not start now, if it may not."""
        limited = self.night.max_requests is not None or self.night.deadline is not None
        if not limited:
            return None
        if any(t.expected is None for t in self.in_progress.values()):
            return UNKNOWN
        owed = sum(t.owed for t in self.in_progress.values())
        next_start = 0.0
        if self.night.deadline is not None:
            next_start = self.reader.budget.next_start(owed) - self.reader.started
        committed = self.reader.client.stats.requests + owed
        return workspace_stop(self.night, first=first, committed=committed,
                              expected=turn.expected, next_start=next_start)  # fmt: skip

    async def run(self, ordered: list[WorkspaceTurn]) -> list[WorkspaceTurn]:
        """Start ``ordered`` in order until the night is spent; those started (all read whole by
        the time this returns). A workspace that may not start waits for those in progress to
        finish and is checked again; with none in progress, it and the rest are left."""
        changed = asyncio.Event()
        started: list[WorkspaceTurn] = []

        async def read(turn: WorkspaceTurn, tally: WorkspaceTally) -> None:
            try:
                await self.read(turn, tally)
            finally:
                del self.in_progress[turn.uuid]
                changed.set()

        async with asyncio.TaskGroup() as group:
            for turn in ordered:
                while True:
                    changed.clear()
                    busy = len(self.in_progress) >= WORKSPACES_AT_ONCE
                    reason = None if busy else self.stop_reason(turn, first=not started)
                    if not busy and (reason is None or not self.in_progress):
                        break
                    await changed.wait()
                if reason is not None:
                    left = ordered[len(started):]
                    log.info("%s: workspaces stop at the %s; %d left for a later night: %s",
                             self.reader.name, reason, len(left),
                             ", ".join(t.slug for t in left))  # fmt: skip
                    break
                tally = WorkspaceTally(None if turn.never_read else turn.expected)
                self.in_progress[turn.uuid] = tally
                started.append(turn)
                group.create_task(read(turn, tally))
        return started


class Rationer:
    """Observes one reader's per-object candidates within its night."""

    def __init__(
        self, reader: Reader, writer: SnapshotWriter, night: NightBudget, *, concurrency: int,
        observe: Observe,
    ) -> None:  # fmt: skip
        self.reader, self.writer, self.night = reader, writer, night
        self.slots = 2 * concurrency
        self.observe = observe

    def stop_reason(self, in_flight: int) -> str | None:
        """Why no further scope may start now, if one may not. A scope in flight counts one
        request until it has made it."""
        cap = self.night.max_requests
        if cap is not None and self.reader.client.stats.requests + in_flight >= cap:
            return "max-requests"
        deadline = self.night.deadline
        budget = self.reader.budget
        if deadline is not None and budget.next_start(in_flight) - self.reader.started >= deadline:
            return "deadline"
        return None

    async def run(self, ordered: list[Candidate]) -> int:
        """Observe ``ordered`` in order until the night is spent; how many were started. A cap
        reached only by scopes still in flight is checked again once they finish."""
        changed = asyncio.Condition()
        in_flight = 0

        async def observe(candidate: Candidate, scope_id: int) -> None:
            nonlocal in_flight
            try:
                scope = candidate.spec.ref(candidate.target)
                await self.observe(scope, self.reader.pages(candidate.spec, candidate.target),
                                   scope_id)  # fmt: skip
            finally:
                async with changed:
                    in_flight -= 1
                    changed.notify_all()

        started = 0
        async with asyncio.TaskGroup() as group:
            ids: list[int] = []
            for index, candidate in enumerate(ordered):
                async with changed:
                    reason = self.stop_reason(in_flight)
                    while (reason is None and in_flight >= self.slots) or (
                        reason is not None and in_flight > 0
                    ):
                        await changed.wait()
                        reason = self.stop_reason(in_flight)
                if reason is not None:
                    log.info("%s: per-object scopes stop at the %s", self.reader.name, reason)
                    break
                if index % REGISTER_BATCH == 0:
                    batch = ordered[index : index + REGISTER_BATCH]
                    ids = await self.writer.scope_ids([c.spec.ref(c.target) for c in batch])
                in_flight += 1
                started += 1
                group.create_task(observe(candidate, ids[index % REGISTER_BATCH]))
        return started
