"""One bbaccess snapshot against a running simulator, timed, in this process or in a child.

``crawl`` runs ``exporter.export.run_snapshot`` with the given client budget and a 429 back-off
scaled like the budget's window; the merge (``SnapshotWriter.complete``) is timed by a subclass
swapped in for the run. ``python -m tests.bench.bench_crawl URL DB`` does the same in a child
process and prints the result as JSON with the child's peak RSS, so that the simulator's own
memory (it runs in the parent) is not counted.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from exporter import export
from exporter.bitbucket import BasicAuth, RetryPolicy
from exporter.config import Settings
from exporter.simulator import ADMIN_EMAIL, ADMIN_TOKEN
from exporter.store.database import open_database
from exporter.store.writer import RunCounters, SnapshotSummary, SnapshotWriter

#: A budget so high that it never makes a request wait.
UNTHROTTLED = (100_000, 1.0)
#: Bitbucket's window; the 429 pause of RetryPolicy is scaled by window / HOUR.
HOUR = 3600.0


@dataclass(frozen=True)
class CrawlResult:
    """What one snapshot run cost, as the client counted it."""

    requests: int
    throttled: int
    retries: int
    seconds: float  # run_snapshot, from lock to merged
    merge_seconds: float  # SnapshotWriter.complete alone
    scopes_ok: int
    scopes_total: int
    peak_rss_mb: float = 0.0
    written_bytes: int | None = None  # to disk, by the child (Linux only)
    # Of those, what never reached the disk: pages of files removed (the stage, sort files)
    # before the kernel wrote them out (Linux only).
    cancelled_bytes: int | None = None


class _TimedWriter(SnapshotWriter):
    """A SnapshotWriter that remembers how long its merge took."""

    merge_seconds = 0.0

    async def complete(self, counters: RunCounters, *, skipped: int = 0) -> SnapshotSummary:
        started = time.perf_counter()
        try:
            return await super().complete(counters, skipped=skipped)
        finally:
            _TimedWriter.merge_seconds = time.perf_counter() - started


def scaled_retry(window: float) -> RetryPolicy:
    """The default 429 back-off, scaled as a ``window``-second budget scales Bitbucket's hour."""
    base = RetryPolicy()
    factor = window / HOUR
    return RetryPolicy(throttle_base=base.throttle_base * factor,
                       throttle_cap=base.throttle_cap * factor)


async def prepare_database(db: Path) -> None:
    """Create the schema beforehand: a nightly run finds its database already migrated."""
    engine = await open_database(db)
    await engine.dispose()


async def crawl(
    base_url: str,
    db: Path,
    *,
    rate: tuple[int, float] = UNTHROTTLED,
    concurrency: int = 8,
) -> CrawlResult:
    """Take one snapshot of the simulator at ``base_url`` into ``db``."""
    await prepare_database(db)
    settings = Settings(
        db_path=db,
        api_url=base_url,
        auth=BasicAuth(ADMIN_EMAIL, ADMIN_TOKEN),
        concurrency=concurrency,
        rate=rate,
        retry=scaled_retry(rate[1]) if rate != UNTHROTTLED else RetryPolicy(),
        progress_every=3600.0,
    )
    names = vars(export)  # run_snapshot builds its writer by this name
    original = names["SnapshotWriter"]
    names["SnapshotWriter"] = _TimedWriter
    try:
        result = await export.run_snapshot(settings)
    finally:
        names["SnapshotWriter"] = original
    outcomes = result.summary.outcomes
    return CrawlResult(
        requests=result.counters.requests,
        throttled=result.counters.throttled,
        retries=result.counters.retries,
        seconds=result.seconds,
        merge_seconds=_TimedWriter.merge_seconds,
        scopes_ok=outcomes.get("ok", 0),
        scopes_total=sum(outcomes.values()),
    )


def peak_rss_mb() -> float:
    """This process's peak resident set size. On Linux, ``VmHWM``: ``ru_maxrss`` keeps the peak
    of the process it was forked from (a bench holding the ``huge`` org read as 2 GB)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def written_bytes(field: str = "write_bytes") -> int | None:
    """Bytes this process caused to be written to disk (Linux ``/proc/self/io``), else None; with
    ``cancelled_write_bytes``, those of them that never reached it."""
    try:
        with open("/proc/self/io", encoding="ascii") as io:
            fields = dict(line.split(":", 1) for line in io)
        return int(fields[field])
    except (OSError, KeyError, ValueError):
        return None


def main(argv: list[str]) -> int:
    base_url, db = argv[0], Path(argv[1])
    result = asyncio.run(crawl(base_url, db))
    print(json.dumps({**asdict(result), "peak_rss_mb": peak_rss_mb(),
                      "written_bytes": written_bytes(),
                      "cancelled_bytes": written_bytes("cancelled_write_bytes")}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
