"""Observing one scope: read it to its last page, stage each page, record how it ended."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from exporter.crawl.records import Outcome, Record, ScopeRef
from exporter.errors import ScopeError, UnsafeUrlError
from exporter.store.writer import SnapshotWriter

log = logging.getLogger(__name__)

Pages = AsyncIterator[Sequence[Record]]


@dataclass(frozen=True, slots=True)
class ScopeReport:
    label: str
    outcome: Outcome
    rows: int
    detail: str | None = None


async def observe_scope(
    writer: SnapshotWriter,
    scope: ScopeRef,
    read: Callable[[], Pages],
    *,
    scope_id: int | None = None,
) -> ScopeReport:
    """Read one scope to its last page, staging each page; record how it ended."""
    if scope_id is None:
        scope_id = await writer.scope_id(scope)
    rows, pages, outcome, detail = 0, 0, Outcome.OK, None
    try:
        async for batch in read():
            pages += 1
            await writer.stage(scope_id, batch)
            rows += len(batch)
    except (ScopeError, UnsafeUrlError) as error:
        outcome = error.outcome if isinstance(error, ScopeError) else Outcome.FAILED
        detail = str(error)
        log.warning("%s: %s (%s)", scope.label, outcome, detail)
    await writer.finish_scope(scope_id, outcome, detail, requests=pages)
    log.info("%s: %s, %d records", scope.label, outcome, rows)
    return ScopeReport(scope.label, outcome, rows, detail)
