"""Per-object scopes observed in the planner's order until a credential's night is spent.

Each credential is a ``Reader``: its client and its own rolling-window budget (Bitbucket limits
per user). ``Rationer`` observes the candidates of one reader in order, at most twice the
concurrency at once, and stops at that reader's request cap (``--max-requests``) or when its
budget could not start another request before the deadline. What it does not reach is left for a
later night.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from exporter.crawl.plan import Candidate, NightBudget
from exporter.crawl.records import ScopeRef
from exporter.observe import Pages
from exporter.readers import Reader
from exporter.store.writer import SnapshotWriter

log = logging.getLogger(__name__)

#: Per-object scopes registered per transaction.
REGISTER_BATCH = 500
Observe = Callable[[ScopeRef, Callable[[], Pages], int], Awaitable[object]]


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
