"""What the commands print about a finished run, and the exit codes they return."""

from __future__ import annotations

from exporter.crawl.records import Outcome
from exporter.export import RunResult

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_GAPS = 4
EXIT_FAILED = 5
EXIT_CHANGED = 6  # diff --exit-code found changes
EXIT_INTERRUPTED = 130


def report_run(result: RunResult) -> int:
    """Print a finished run's summary; its exit code."""
    summary, counters = result.summary, result.counters
    outcomes = ", ".join(f"{summary.outcomes.get(o, 0)} {o}" for o in Outcome)
    if summary.closed:
        outcomes += f" ({summary.closed} closed with their deleted repository or project)"
    print(f"snapshot {summary.snapshot_id} complete in {result.seconds:.1f} s: scopes {outcomes}; "
          f"{counters.requests} requests, {counters.retries} retries, {counters.throttled} "
          f"throttled, {counters.wait_seconds:.1f} s waited")
    for scope in result.scopes:
        if scope.outcome != Outcome.OK:
            print(f"  {scope.outcome}: {scope.label}: {scope.detail}")
    for line in result.unreachable:
        print(f"  not read: {line}")
    return EXIT_GAPS if result.has_gaps else EXIT_OK
