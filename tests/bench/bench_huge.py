"""``make bench-huge``: the ``huge`` org through three real nights, and the queries people run.

``huge`` is ten times ``large``: 50 workspaces, 100,000 repositories, about 4.7 million effective
grants and 210,000 per-object scopes. Each night is a real snapshot over HTTP against the
simulator (in a thread of this process; latency 0, no rate limit, so that the figures are the
exporter's and the store's own), taken by a child process whose peak memory and bytes written
are its own. Before the second night, a day of ``apply_churn`` at 0.5 % (every kind of change on
0.5 % of the members or repositories: at ``huge`` about 6 % of the facts, a heavy day, reported);
before the third, a day of the budgets' churn, 0.5 % of the facts (``churn_until``), against
which the nightly budgets are read. Then the queries on the third night, each in a fresh process
or the plain ``sqlite3`` shell (default settings: what users run). Prints the table of figures
against the budgets. 20 to 30 minutes on two cores; needs about 10 GB of free disk.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from exporter.simulator import apply_churn, churn_until, fact_count, generate_org
from tests.bench.bench_crawl import CrawlResult
from tests.bench.bench_plan import workspace_wide_minimum
from tests.bench.bench_table import QUERY_TIMEOUT, Row, machine_row, report, shell_seconds, verdict
from tests.sim_thread import ThreadedSimulator
from tests.test_readme_sql import README, cookbook, sql_blocks

ROOT = Path(__file__).resolve().parents[2]
SEED = 1
CHURN = 0.005
#: Changes drawn between two counts of the truth by ``churn_until``: at ``huge`` a count takes
#: about 10 s, and a day of 0.5 % about 450 changes.
CHURN_BATCH = 4096
#: How often the simulator's request count is read. Finer than the start-up before the first
#: request (about 4 s of a nightly run at ``huge``: the check of the file, the names loaded):
#: read every 5 s, that start-up fell inside the first fifth and read as a slow start.
SAMPLE_SECONDS = 0.5
MiB = 1024 * 1024

#: Budgets of the scaling issue.
RSS_BUDGET_MB = 300.0
WRITTEN_BUDGET = 3.0  # bytes the first snapshot wrote to the disk, times the database's size
MERGE_BUDGET = 15.0
QUERY_BUDGET = 2.0
FLAT = 0.8  # the slowest fifth of a run fetches at least this share of the fastest one's rate


@dataclass(frozen=True)
class Night:
    crawl: CrawlResult
    #: Requests per second the simulator answered in each fifth of the workspace-wide listings
    #: (pages of 100 rows; the per-object scopes that follow are small pages, another pace).
    fifths: list[float]
    #: Seconds before the first request.
    start_up: float


def night(sim: ThreadedSimulator, db: Path, listings: int) -> Night:
    """One snapshot by a child process, with the simulator's request count sampled meanwhile."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.bench_crawl", sim.base_url, str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    started = time.monotonic()
    samples = [(0.0, sim.request_count)]
    while child.poll() is None:
        time.sleep(SAMPLE_SECONDS)
        samples.append((time.monotonic() - started, sim.request_count))
    out, err = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"the bbaccess child failed:\n{err[-3000:]}")
    base = samples[0][1]
    wide = [(t, count - base) for t, count in samples if count - base <= listings]
    return Night(CrawlResult(**json.loads(out.strip().splitlines()[-1])), fifths(wide),
                 start_up(wide))


def start_up(samples: list[tuple[float, int]]) -> float:
    """Seconds before the first request (the database checked, the plan's knowledge loaded)."""
    return max((t for t, count in samples if count == 0), default=0.0)


def fifths(samples: list[tuple[float, int]]) -> list[float]:
    """Request rate in each fifth of the time from the first request to the last (the merge
    follows it): the start-up before it is reported apart."""
    last = max(count for _, count in samples)
    end = next(t for t, count in samples if count == last)
    begin = start_up(samples)
    rates = []
    for i in range(5):
        lo, hi = begin + (end - begin) * i / 5, begin + (end - begin) * (i + 1) / 5
        inside = [(t, c) for t, c in samples if lo <= t <= hi]
        if len(inside) < 2:
            return []
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        rates.append((c1 - c0) / (t1 - t0) if t1 > t0 else 0.0)
    return rates


#: The demo's names in the README's cookbook, and how to find a name of the same kind in any
#: database: the queries filtered by a name must find rows, or they prove nothing about speed.
DEMO_NAMES = {
    "acme/MOB0": "SELECT project FROM current_repositories WHERE project IS NOT NULL "
                 "ORDER BY uuid LIMIT 1",
    "acme/gateway-worker": "SELECT object_name FROM current_repository_permissions "
                           "WHERE permission = 'admin' ORDER BY object_uuid LIMIT 1",
    "Sofia Chen": "SELECT subject_name FROM current_repository_permissions "
                  "ORDER BY subject_uuid LIMIT 1",
    "Ingrid Brown": "SELECT subject_name FROM current_repository_permissions "
                    "ORDER BY subject_uuid DESC LIMIT 1",
    "acme/platform-team-1": "SELECT object_name FROM current_group_members "
                            "ORDER BY object_uuid LIMIT 1",
}


def with_names_of(db: Path, sql: str) -> str:
    """``sql`` with the demo's names replaced by names of the same kind found in ``db``."""
    with sqlite3.connect(db) as conn:
        for demo, find in DEMO_NAMES.items():
            if demo in sql:
                row = conn.execute(find).fetchone()
                if row is not None:
                    sql = sql.replace(f"'{demo}'", "'" + str(row[0]).replace("'", "''") + "'")
    return sql


def gigabytes(count: int | None) -> str:
    return "n/a" if count is None else f"{count / 1e9:.2f} GB"


def seconds_cell(seconds: float | None) -> str:
    if seconds is None:
        return "no sqlite3 shell"
    return f"> {QUERY_TIMEOUT:.0f} s" if seconds == float("inf") else f"{seconds:.2f} s"


_MEASURED_CLI = (
    "import sys\n"
    "from exporter.cli import main\n"
    "from tests.bench.bench_crawl import peak_rss_mb\n"
    "code = main(sys.argv[1:])\n"
    "sys.stderr.write(f'peak-rss-kib {int(peak_rss_mb() * 1024)}\\n')\n"
    "sys.exit(code)\n"
)


def cli_seconds_and_mb(*args: str) -> tuple[float, float]:
    """A bbaccess command in a fresh process, output discarded: its seconds and peak RSS."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED_CLI, *args], cwd=ROOT, text=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    found = re.search(r"peak-rss-kib (\d+)", done.stderr)
    if done.returncode not in (0, 6) or found is None:
        raise RuntimeError(f"bbaccess {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return seconds, int(found[1]) / 1024


def rate_cells(rates: list[float]) -> str:
    return " / ".join(f"{r:.0f}" for r in rates) if rates else "(too short to sample)"


def is_flat(rates: list[float]) -> bool | None:
    return None if not rates else min(rates) >= FLAT * max(rates)


def main(argv: list[str]) -> int:
    preset = argv[0] if argv else "huge"  # another preset: a quick trial of the bench itself
    print(f"generating the {preset} org ...", file=sys.stderr, flush=True)
    org = generate_org(preset, SEED)
    rows: list[Row] = [machine_row()]
    rng = random.Random(SEED)
    with tempfile.TemporaryDirectory() as tmp, ThreadedSimulator(org) as sim:
        db = Path(tmp, "huge.db")
        print("night 1 ...", file=sys.stderr, flush=True)
        listings = workspace_wide_minimum(org)
        first = night(sim, db, listings)
        size_first = db.stat().st_size
        facts = fact_count(org)
        heavy_day = apply_churn(org, rng=rng, rate=CHURN)
        print("night 2 (a heavy day's churn) ...", file=sys.stderr, flush=True)
        heavy = night(sim, db, workspace_wide_minimum(org))
        facts_heavy = fact_count(org)
        print("a day of 0.5 % of the facts ...", file=sys.stderr, flush=True)
        day = churn_until(org, rng=rng, changes=CHURN * facts_heavy, most_per_count=CHURN_BATCH)
        print("night 3 (the budgets' churn) ...", file=sys.stderr, flush=True)
        nightly = night(sim, db, workspace_wide_minimum(org))
        size = db.stat().st_size
        print("queries ...", file=sys.stderr, flush=True)
        diff_s, diff_mb = cli_seconds_and_mb("diff", "--db", str(db), "--format", "json")
        access_at = shell_seconds(db, "SELECT count(*) FROM access_at WHERE snapshot_id = 3;")
        changes = shell_seconds(db, "SELECT * FROM access_changes WHERE snapshot_id = 3;")
        changes_heavy = shell_seconds(db, "SELECT * FROM access_changes WHERE snapshot_id = 2;")
        blocks = sql_blocks(cookbook(README.read_text(encoding="utf-8")))
        cookbook_seconds = [shell_seconds(db, with_names_of(db, sql)) for _, sql in blocks]
    c1, c2, c3 = first.crawl, heavy.crawl, nightly.crawl
    written = c1.written_bytes
    # The kernel counts a page as written when it is dirtied, and takes it back when its file is
    # removed before the page went out (Documentation/filesystems/proc.rst): the difference is
    # what the disk received.
    disk = None if written is None else written - (c1.cancelled_bytes or 0)
    heavy_share = f"{heavy_day.facts_changed} facts, {heavy_day.facts_changed / facts:.1%}"
    day_share = f"{day.facts_changed} facts, {day.facts_changed / facts_heavy:.2%}"
    rss = max(c.peak_rss_mb for c in (c1, c2, c3))
    rows += [
        Row("facts of the first snapshot; changed by the heavy day (`apply_churn` at 0.5 %); "
            "changed by the budgets' day (`churn_until` 0.5 % of the facts)",
            f"{facts}; {heavy_share}; {day_share}", "reported", verdict(None)),
        Row("snapshot wall, first / heavy night / nightly (every scope read)",
            f"{c1.seconds:.0f} s / {c2.seconds:.0f} s / {c3.seconds:.0f} s "
            f"({c1.requests} / {c2.requests} / {c3.requests} requests)",
            "reported", verdict(None)),
        Row("peak RSS of the snapshot, first / heavy night / nightly",
            f"{c1.peak_rss_mb:.0f} MB / {c2.peak_rss_mb:.0f} MB / {c3.peak_rss_mb:.0f} MB",
            f"<= {RSS_BUDGET_MB:.0f} MB", verdict(rss <= RSS_BUDGET_MB)),
        Row("bytes written by the first snapshot / database size (as /proc counts them)",
            "n/a" if written is None else
            f"{written / 1e9:.2f} GB / {size_first / 1e9:.2f} GB = {written / size_first:.1f}",
            "reported", verdict(None)),
        Row("of which never reached the disk (the stage and sort files, removed before the "
            "kernel wrote them out: /proc's cancelled_write_bytes), first / heavy / nightly",
            f"{gigabytes(c1.cancelled_bytes)} / {gigabytes(c2.cancelled_bytes)} / "
            f"{gigabytes(c3.cancelled_bytes)}", "reported", verdict(None)),
        Row("bytes the first snapshot wrote to the disk / database size",
            "n/a" if disk is None else
            f"{disk / 1e9:.2f} GB / {size_first / 1e9:.2f} GB = {disk / size_first:.1f}",
            f"<= {WRITTEN_BUDGET:.0f}",
            verdict(None if disk is None else disk / size_first <= WRITTEN_BUDGET)),
        Row("bytes written by the heavy night / the nightly snapshot (each stages what changed)",
            f"{gigabytes(c2.written_bytes)} / {gigabytes(c3.written_bytes)}", "reported",
            verdict(None)),
        Row(f"requests/s by fifth of the first run's workspace-wide listings ({listings}), "
            "from the first request",
            rate_cells(first.fifths),
            f"slowest >= {FLAT:.0%} of fastest", verdict(is_flat(first.fifths))),
        Row("requests/s by fifth of the heavy night's workspace-wide listings",
            rate_cells(heavy.fifths),
            f"slowest >= {FLAT:.0%} of fastest", verdict(is_flat(heavy.fifths))),
        Row("requests/s by fifth of the nightly run's workspace-wide listings",
            rate_cells(nightly.fifths),
            f"slowest >= {FLAT:.0%} of fastest", verdict(is_flat(nightly.fifths))),
        Row("start-up before the first request, first / heavy / nightly (check, plan's "
            "knowledge)",
            f"{first.start_up:.0f} s / {heavy.start_up:.0f} s / {nightly.start_up:.0f} s",
            "reported", verdict(None)),
        Row("merge, first / nightly (the budgets' churn)",
            f"{c1.merge_seconds:.1f} s / {c3.merge_seconds:.1f} s",
            f"<= {MERGE_BUDGET:.0f} s",
            verdict(max(c1.merge_seconds, c3.merge_seconds) <= MERGE_BUDGET)),
        Row(f"merge of the heavy night ({heavy_share})", f"{c2.merge_seconds:.1f} s",
            "reported", verdict(None)),
        Row("`bbaccess diff --format json`, nightly, fresh process",
            f"{diff_s:.1f} s, {diff_mb:.0f} MB", "reported", verdict(None)),
    ]  # fmt: skip
    for figure, seconds in (
        ("`select count(*) from access_at where snapshot_id = 3`, sqlite3 shell", access_at),
        ("`select * from access_changes where snapshot_id = 3` (the nightly), sqlite3 shell",
         changes),
    ):
        rows.append(Row(figure, seconds_cell(seconds),
                        f"<= {QUERY_BUDGET:.0f} s",
                        verdict(None if seconds is None else seconds <= QUERY_BUDGET)))  # fmt: skip
    rows.append(Row("`select * from access_changes where snapshot_id = 2` (the heavy night), "
                    "sqlite3 shell", seconds_cell(changes_heavy), "reported", verdict(None)))
    timed = [(s, i) for i, s in enumerate(cookbook_seconds, 1) if s is not None]
    if timed:
        over = [f"{i}: {seconds_cell(s)}" for s, i in timed if s > QUERY_BUDGET]
        within = max((s for s, _ in timed if s <= QUERY_BUDGET), default=0.0)
        rows.append(Row(f"README cookbook queries ({len(timed)}), each in the sqlite3 shell",
                        f"{len(timed) - len(over)} within (slowest {within:.2f} s); over: "
                        f"{'; '.join(over) or 'none'}",
                        f"<= {QUERY_BUDGET:.0f} s each", verdict(not over)))  # fmt: skip
    rows.append(Row("database size after three nights", f"{size / 1e9:.2f} GB", "reported",
                    verdict(None)))
    print(report(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
