"""The store figures: merge time, database growth over a year of nights, query times."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from exporter.simulator import Org, apply_churn, churn_until, fact_count
from exporter.store.database import open_database
from exporter.store.queries import diff
from tests.bench.bench_explicit import WhoCanAccess, who_can_access
from tests.bench.bench_records import NightWriter
from tests.bench.bench_table import shell_seconds

CHURN = 0.005
ACCESS_AT = "SELECT * FROM access_at WHERE snapshot_id = ?"
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class TwoNights:
    """Two snapshots of an org, a day of churn apart, and the queries over them.

    Query times are medians of ``REPEAT`` runs, each in a fresh process: the bench's own process
    holds the generated org, whose millions of objects would make every garbage collection
    during a large fetch slower than it is for a user.
    """

    first_merge: float
    second_merge: float
    diff_seconds: float  # the nightly diff: snapshot 1 to snapshot 2
    diff_rows: int
    first_diff_seconds: float  # from nothing to snapshot 1: every fact counted as baseline
    first_diff_rows: int
    access_at_seconds: float  # read to its last row into Python with sqlite3
    access_at_rows: int
    access_at_shell_seconds: float | None  # the sqlite3 shell, output discarded (None: no shell)
    #: ``who-can-access`` on the largest repository of the second night (None: not asked).
    who: WhoCanAccess | None = None

    @property
    def worst_diff(self) -> float:
        return max(self.diff_seconds, self.first_diff_seconds)


REPEAT = 3

#: Run in a fresh process: time one query, print its seconds and rows.
_CHILD = f"""
import asyncio, contextlib, sqlite3, sys, time
from pathlib import Path
db, what, a, b = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if what == "access_at":
    with contextlib.closing(sqlite3.connect(db)) as conn:
        started = time.perf_counter()
        rows = len(conn.execute({ACCESS_AT!r}, (b,)).fetchall())
else:
    from tests.bench.bench_store import diff_in_process
    started = time.perf_counter()
    rows = asyncio.run(diff_in_process(db, a, b))
print(time.perf_counter() - started, rows)
"""


async def diff_in_process(db: Path, a: int, b: int) -> int:
    """``bbaccess diff --from a --to b`` as the CLI computes it; the rows it found or counted."""
    engine = await open_database(db, create=False)
    try:
        async with engine.connect() as conn:
            found = await diff(conn, a, b)
    finally:
        await engine.dispose()
    return len(found.changes) + found.baseline_count + len(found.unverified)


def timed_in_child(db: Path, what: str, a: int, b: int) -> tuple[float, int]:
    """The median seconds of ``REPEAT`` fresh processes running one query, and its rows."""
    runs = []
    for _ in range(REPEAT):
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(db), what, str(a), str(b)],
            capture_output=True, text=True, check=True, cwd=ROOT,
        )
        seconds, rows = done.stdout.split()
        runs.append((float(seconds), int(rows)))
    return statistics.median(r[0] for r in runs), runs[0][1]


def access_at_in_shell(db: Path, snapshot_id: int) -> float | None:
    """Median seconds of the sqlite3 shell running ``access_at`` to its last row (output
    discarded, start-up included); None where the shell is not installed."""
    return in_shell(db, ACCESS_AT.replace("?", str(snapshot_id)))


def in_shell(db: Path, sql: str) -> float | None:
    """Median seconds of the sqlite3 shell (default settings) running ``sql`` to its last row
    (``shell_seconds``, ``REPEAT`` times); None where the shell is not installed."""
    runs = [shell_seconds(db, sql) for _ in range(REPEAT)]
    return None if None in runs else statistics.median(r for r in runs if r is not None)


#: The nights of "what changed last week", asked of ``access_changes`` as the README says: with a
#: value in the filter.
WEEK_NIGHTS = 7


@dataclass(frozen=True)
class Week:
    """``access_changes`` for the last ``WEEK_NIGHTS`` nights of a database, in the shell."""

    rows: int
    by_id: float | None  # ``WHERE snapshot_id > N``
    by_date: float | None  # ``WHERE snapshot_at > 'the finished_at of night N'``

    @property
    def worst(self) -> float | None:
        return None if self.by_id is None or self.by_date is None else max(
            self.by_id, self.by_date)  # fmt: skip


def last_week(db: Path) -> Week:
    """Time the question about the last week of ``db``'s nights, both ways."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (last,) = conn.execute(
            "SELECT max(id) FROM snapshots WHERE status = 'complete'").fetchone()
        since = last - WEEK_NIGHTS
        (at,) = conn.execute("SELECT finished_at FROM snapshots WHERE id = ?", (since,)).fetchone()
        (rows,) = conn.execute(
            "SELECT count(*) FROM access_changes WHERE snapshot_id > ?", (since,)).fetchone()
    return Week(rows, in_shell(db, f"SELECT * FROM access_changes WHERE snapshot_id > {since};"),
                in_shell(db, f"SELECT * FROM access_changes WHERE snapshot_at > '{at}';"))


async def _two_nights(org: Org, db: Path, seed: int) -> tuple[int, int, float, float]:
    nights = NightWriter(db)
    try:
        a, first = await nights.night(org)
        apply_churn(org, rng=random.Random(seed), rate=CHURN)
        b, second = await nights.night(org)
    finally:
        await nights.close()
    return a, b, first, second


def two_nights(org: Org, *, seed: int = 1, who: bool = False) -> TwoNights:
    """Write ``org``, churn it a day, write it again; time the merges, ``diff`` and ``access_at``
    (and, with ``who``, ``who-can-access`` on the largest repository: every per-object scope is
    written every night, so the database has full explicit-grant coverage).

    Mutates ``org``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp, "a.db")
        a, b, first, second = asyncio.run(_two_nights(org, db, seed))
        diff_s, diff_rows = timed_in_child(db, "diff", a, b)
        first_s, first_rows = timed_in_child(db, "diff", 0, a)
        at_s, at_rows = timed_in_child(db, "access_at", a, b)
        return TwoNights(first, second, diff_s, diff_rows, first_s, first_rows, at_s, at_rows,
                         access_at_in_shell(db, b), who_can_access(db) if who else None)


@dataclass(frozen=True)
class Year:
    nights: int
    one_snapshot_bytes: int  # the first night alone
    final_bytes: int  # every night
    final_one_bytes: int  # one snapshot of the org as it is after the last night
    seconds: float
    #: Bytes of the compacted history by table, each with its indexes (``HISTORY_PARTS``).
    parts: dict[str, int] = field(default_factory=dict)
    versions: int = 0  # grant versions kept, open and closed
    open_versions: int = 0  # open ones: the last night's grants
    #: Facts the churn changed over the nights, by the simulator's truth (effective and explicit
    #: grants, memberships, objects): what the history must hold, whatever its form.
    changes: int = 0
    #: The facts of each night after the first, summed: ``changes`` over this is the daily churn.
    fact_nights: int = 0
    #: How the churn was drawn: 'facts' (``churn_until`` a share of the facts a day) or 'kinds'
    #: (``apply_churn``: a share of the members or repositories for every kind of change a day).
    churn: str = "facts"
    #: ``access_changes`` for the last week of the nights.
    week: Week | None = None

    @property
    def daily_churn(self) -> float:
        """The share of the facts the churn changed a night, on average."""
        return self.changes / max(self.fact_nights, 1)

    @property
    def versions_ratio(self) -> float:
        """Grant versions ÷ the last night's grants: what keeping every change costs at least."""
        return self.versions / max(self.open_versions, 1)

    @property
    def ratio(self) -> float:
        """History against one snapshot of the same (final) org: churn grows the org."""
        return self.final_bytes / self.final_one_bytes

    @property
    def ratio_to_first(self) -> float:
        return self.final_bytes / self.one_snapshot_bytes


#: The tables the history is made of, each counted with its indexes; the rest is "other".
HISTORY_PARTS = ("grant_versions", "change_log", "observation_runs", "objects", "names")


def compact_size(db: Path, scratch: Path, parts: dict[str, int] | None = None) -> int:
    """Bytes of ``db`` once compacted (``VACUUM INTO`` a copy; the database is untouched); with
    ``parts``, filled with the bytes of each of ``HISTORY_PARTS`` and of the rest."""
    scratch.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("VACUUM INTO ?", (str(scratch),))
    size = scratch.stat().st_size
    if parts is not None:
        with contextlib.closing(sqlite3.connect(scratch)) as conn:
            rows = conn.execute(
                "SELECT coalesce(m.tbl_name, d.name), sum(d.pgsize) FROM dbstat d "
                "LEFT JOIN sqlite_master m ON m.name = d.name GROUP BY 1"
            ).fetchall()
        for table, size_of in rows:
            part = table if table in HISTORY_PARTS else "other"
            parts[part] = parts.get(part, 0) + int(size_of)
    scratch.unlink()
    return size


async def _year(org: Org, db: Path, nights: int, rate: float, seed: int, churn: str) -> Year:
    started = time.perf_counter()
    rng = random.Random(seed)
    writer = NightWriter(db)
    scratch = db.with_name("compact.db")
    try:
        await writer.night(org)
        await writer.close()
        one = compact_size(db, scratch)
        changes = fact_nights = 0
        owed = 0.0  # changes the nights so far should have made, less those they made
        for _ in range(nights - 1):
            facts = fact_count(org)
            if churn == "facts":
                owed += rate * facts
                day = churn_until(org, rng=rng, changes=owed)
            else:
                day = apply_churn(org, rng=rng, rate=rate)
            made = day.facts_changed
            owed -= made
            changes += made
            fact_nights += facts
            await writer.night(org)
    finally:
        await writer.close()
    week = last_week(db)
    parts: dict[str, int] = {}
    final = compact_size(db, scratch, parts)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        versions, open_versions = conn.execute(
            "SELECT count(*), count(*) - count(valid_to) FROM grants").fetchone()
    alone = NightWriter(db.with_name("alone.db"))
    try:
        await alone.night(org)
    finally:
        await alone.close()
    final_one = compact_size(alone.db, scratch)
    return Year(nights, one, final, final_one, time.perf_counter() - started, parts, versions,
                open_versions, changes, fact_nights, churn, week)


def year(org: Org, *, nights: int = 365, rate: float = CHURN, seed: int = 1,
         churn: str = "facts") -> Year:
    """``nights`` snapshots of ``org`` at ``rate`` daily churn: database size against one night.
    ``churn`` 'facts': each night changes ``rate`` of the org's facts (a night short of it or
    over it is made up the next night); 'kinds': ``apply_churn`` at ``rate``.

    Mutates ``org``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_year(org, Path(tmp, "a.db"), nights, rate, seed, churn))
