"""The explicit-grant figures: nights to full coverage under a nightly request cap, and
``who-can-access`` on the largest repository.

Coverage runs real nights of ``bbaccess snapshot`` (the CLI, in a child process, so the real
``run_snapshot`` and its planner) against the simulator at latency 0 with ``--max-requests N``,
and after each night asks the SQLite file which per-object scopes have an ok observation. ``N``
is the workspace-wide minimum plus a quarter (rounded up) of the per-object requests, so that
coverage takes several nights: the budget says it must take ``⌈explicit requests ÷ (N -
workspace-wide requests)⌉``. A night of ``large`` takes about 25 s here: four of them fit.

``who-can-access`` is timed as a user runs it: the CLI in a fresh process, start-up included.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from exporter.crawl.scopes import PER_OBJECT
from exporter.simulator import ADMIN_EMAIL, ADMIN_TOKEN, Org
from tests.bench.bench_plan import per_object_minimum, per_object_scopes, workspace_wide_minimum
from tests.sim_thread import ThreadedSimulator

ROOT = Path(__file__).resolve().parents[2]
#: The nightly cap leaves room for this share of the per-object requests.
SHARE = 4
#: A client budget that never makes a request wait (the simulator answers at once).
RATE = "100000/s"
REPEAT = 3
PLANNED = re.compile(r"per-object scopes: .*full explicit-grant coverage in (\d+) night")
COVERED = """
SELECT s.kind, s.object_uuid FROM scopes s
 WHERE s.kind IN ({kinds})
   AND EXISTS (SELECT 1 FROM observation_runs o WHERE o.scope_id = s.id
                  AND o.outcome = 'ok' AND o.closure IS NULL)
"""
LARGEST = """
SELECT object_name, count(*) FROM current_repository_permissions
 GROUP BY object_uuid ORDER BY 2 DESC, 1 LIMIT 1
"""


def cli_env(base_url: str, home: Path) -> dict[str, str]:
    """The environment of a ``bbaccess`` child: the simulator's URL and credentials, and no
    configuration, credential or proxy of the machine's."""
    skip = ("BITBUCKET_", "BBACCESS_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(skip)}
    env.update(
        BITBUCKET_API_URL=base_url,
        BITBUCKET_EMAIL=ADMIN_EMAIL,
        BITBUCKET_API_TOKEN=ADMIN_TOKEN,
        XDG_CONFIG_HOME=str(home),
        NO_PROXY="127.0.0.1",
    )
    return env


@dataclass(frozen=True)
class Coverage:
    """Nights of capped snapshots until every per-object scope was observed ok."""

    cap: int  # --max-requests
    workspace_wide: int  # the plan's minimum for the workspace-wide listings
    explicit_requests: int  # the plan's minimum for every per-object scope
    scopes: int  # per-object scopes of the org
    nights: int | None  # None: not covered within the nights tried
    predicted: int | None  # "full explicit-grant coverage in N night(s)" on night 1
    requests: tuple[int, ...]  # each night's requests, as the simulator counted them
    covered: tuple[int, ...]  # per-object scopes observed ok, after each night
    seconds: tuple[float, ...]  # each night's CLI run

    @property
    def expected(self) -> int:
        return math.ceil(self.explicit_requests / (self.cap - self.workspace_wide))

    @property
    def ratio(self) -> float:
        return float("inf") if self.nights is None else self.nights / self.expected

    @property
    def within_cap(self) -> bool:
        return all(n <= self.cap for n in self.requests)


def _covered(db: Path, wanted: set[tuple[str, str]]) -> int:
    kinds = ", ".join(f"'{spec.kind.value}'" for spec in PER_OBJECT)
    uri = f"file:{db}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        found = {(str(k), str(u)) for k, u in conn.execute(COVERED.format(kinds=kinds))}
    return len(wanted & found)


def _per_object_keys(org: Org) -> set[tuple[str, str]]:
    keys: set[tuple[str, str]] = set()
    for ws in org.workspaces.values():
        for spec in PER_OBJECT:
            objects = ws.repositories if spec.object_type == "repository" else ws.projects
            keys |= {(spec.kind.value, uuid) for uuid in objects}
    return keys


def coverage_nights(org: Org, *, share: int = SHARE) -> Coverage:
    """Snapshot ``org`` night after night with ``--max-requests`` = workspace-wide minimum +
    ⌈per-object requests ÷ share⌉, until every per-object scope has an ok observation (at most
    twice the expected nights, plus two)."""
    wide, explicit = workspace_wide_minimum(org), per_object_minimum(org)
    cap = wide + math.ceil(explicit / share)
    wanted = _per_object_keys(org)
    assert len(wanted) == per_object_scopes(org)
    expected = math.ceil(explicit / (cap - wide))
    requests: list[int] = []
    covered: list[int] = []
    seconds: list[float] = []
    predicted: int | None = None
    nights: int | None = None
    with tempfile.TemporaryDirectory() as tmp, ThreadedSimulator(org, latency=0.0) as sim:
        db = Path(tmp, "a.db")
        command = [sys.executable, "-m", "exporter", "snapshot", "--db", str(db), "--rate", RATE,
                   "--deadline", "none", "--max-requests", str(cap)]  # fmt: skip
        env = cli_env(sim.base_url, Path(tmp))
        for night in range(1, 2 * expected + 3):
            before = sim.request_count
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=False,
                                  cwd=ROOT, env=env)  # fmt: skip
            seconds.append(time.perf_counter() - started)
            if done.returncode != 0:
                raise RuntimeError(
                    f"bbaccess snapshot (night {night}) exited {done.returncode}:\n"
                    f"{done.stderr[-3000:]}"
                )
            requests.append(sim.request_count - before)
            if night == 1:
                found = PLANNED.search(done.stderr)
                predicted = int(found.group(1)) if found else None
            covered.append(_covered(db, wanted))
            if covered[-1] == len(wanted):
                nights = night
                break
    return Coverage(cap, wide, explicit, len(wanted), nights, predicted, tuple(requests),
                    tuple(covered), tuple(seconds))  # fmt: skip


@dataclass(frozen=True)
class WhoCanAccess:
    """``bbaccess who-can-access --format json`` on the repository with the most effective
    grants, in fresh processes."""

    repository: str
    effective_grants: int
    users: int
    sources: int
    flagged: int  # users with at least one flag
    seconds: float  # median of REPEAT runs, process start-up included
    runs: tuple[float, ...]


def largest_repository(db: Path) -> tuple[str, int]:
    """The repository with the most current effective grants, and how many it has."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        name, grants = conn.execute(LARGEST).fetchone()
    return str(name), int(grants)


def who_can_access(db: Path) -> WhoCanAccess:
    """Time ``who-can-access`` on the largest repository of ``db``, ``REPEAT`` fresh processes."""
    name, grants = largest_repository(db)
    command = [sys.executable, "-m", "exporter", "who-can-access", "--db", str(db), name,
               "--format", "json"]  # fmt: skip
    runs: list[float] = []
    body: dict[str, object] = {}
    for _ in range(REPEAT):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
        runs.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"bbaccess who-can-access {name} exited {done.returncode}:\n"
                               f"{done.stderr[-3000:]}")  # fmt: skip
        body = json.loads(done.stdout)
    access = body.get("access")
    assert isinstance(access, list)
    sources = sum(len(a["sources"]) for a in access)
    flagged = sum(1 for a in access if a["flags"])
    return WhoCanAccess(name, grants, len(access), sources, flagged, statistics.median(runs),
                        tuple(runs))  # fmt: skip
