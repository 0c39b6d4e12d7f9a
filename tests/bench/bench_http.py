"""The HTTP figures: requests against the plan's minimum, wall time at 100 ms latency, pacing
under a rolling rate limit, and the sequential baseline."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from exporter.simulator import Org
from tests.bench.bench_baseline import BaselineResult, baseline_snapshot
from tests.bench.bench_crawl import CrawlResult, crawl
from tests.bench.bench_plan import minimum_requests
from tests.sim_thread import ThreadedSimulator

ROOT = Path(__file__).resolve().parents[2]
LATENCY = 0.1
CONCURRENCY = 8
#: The workspace itself, ``/1.0/groups`` and the first page of its four paged listings.
FIRST_REQUESTS_PER_WORKSPACE = 6


@dataclass(frozen=True)
class HttpRun:
    """One bbaccess snapshot in a child process against the simulator in this one."""

    crawl: CrawlResult
    server_requests: int
    minimum: int
    latency: float
    workspaces: int

    @property
    def request_ratio(self) -> float:
        return self.server_requests / self.minimum

    @property
    def ideal_seconds(self) -> float:
        return self.server_requests * self.latency / CONCURRENCY

    @property
    def wall_ratio(self) -> float:
        return self.crawl.seconds / self.ideal_seconds if self.latency else float("nan")

    @property
    def best_schedule_seconds(self) -> float:
        """The shortest possible run: the workspace list is one round trip; only then can each
        workspace's six first requests go out; the rest (the per-object scopes included), at
        full concurrency, after those."""
        first = FIRST_REQUESTS_PER_WORKSPACE * self.workspaces
        rest = self.server_requests - 1
        if first >= CONCURRENCY:
            rounds = 1 + math.ceil(rest / CONCURRENCY)
        else:
            rounds = 2 + math.ceil((rest - first) / CONCURRENCY)
        return rounds * self.latency

    @property
    def best_ratio(self) -> float:
        return self.crawl.seconds / self.best_schedule_seconds


def crawl_in_child(org: Org, *, latency: float = LATENCY) -> HttpRun:
    """Snapshot ``org`` with bbaccess in a child process (its peak RSS is the exporter's own)."""
    with tempfile.TemporaryDirectory() as tmp, ThreadedSimulator(org, latency=latency) as sim:
        done = subprocess.run(
            [sys.executable, "-m", "tests.bench.bench_crawl", sim.base_url, str(Path(tmp, "a.db"))],
            capture_output=True, text=True, check=False, cwd=ROOT,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the bbaccess child failed:\n{done.stderr[-3000:]}")
        result = CrawlResult(**json.loads(done.stdout.strip().splitlines()[-1]))
        return HttpRun(result, sim.request_count, minimum_requests(org), latency,
                       len(org.workspaces))


@dataclass(frozen=True)
class PacingRun:
    server_limit: tuple[int, float]
    client_rate: tuple[int, float]
    crawl: CrawlResult

    @property
    def wasted(self) -> float:
        return self.crawl.throttled / self.crawl.requests


def paced(
    org: Org, *, server_limit: tuple[int, float], client_rate: tuple[int, float]
) -> PacingRun:
    """Snapshot ``org`` in this process with a client budget against a rate-limited simulator."""
    with tempfile.TemporaryDirectory() as tmp, ThreadedSimulator(
        org, rate_limit=server_limit
    ) as sim:
        result = asyncio.run(crawl(sim.base_url, Path(tmp, "a.db"), rate=client_rate))
    return PacingRun(server_limit, client_rate, result)


def baseline(org: Org, *, latency: float = LATENCY) -> BaselineResult:
    """The sequential ``requests`` client against the same org and latency."""
    with ThreadedSimulator(org, latency=latency) as sim:
        return baseline_snapshot(sim.base_url)
