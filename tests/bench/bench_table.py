"""The report: rows of figure | measured | budget | verdict, printed as markdown."""

from __future__ import annotations

import shutil
import sqlite3
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Row:
    figure: str
    measured: str
    budget: str
    verdict: str


def verdict(ok: bool | None) -> str:
    """``ok``/``MISSED``; None for a figure that is reported, not judged."""
    if ok is None:
        return "reported"
    return "ok" if ok else "**MISSED**"


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table; cells' ``|`` are escaped."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join(
        [line(header), line(["---"] * len(header)), *(line(r) for r in rows)]
    )


def report(rows: Sequence[Row]) -> str:
    return markdown(
        ("figure", "measured", "budget", "verdict"),
        [(r.figure, r.measured, r.budget, r.verdict) for r in rows],
    )


#: A fixed SQLite workload, in memory: a million rows made, indexed and read in order. The
#: budgets are seconds on "this 2-core machine", whose speed moves from day to day by up to half;
#: this row says how fast the machine was, so that two tables can be compared.
MACHINE_WORKLOAD = (
    """CREATE TABLE t AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n
                                                WHERE i < 1000000)
       SELECT i, (i * 2654435761) % 1000003 AS k FROM n""",
    "CREATE INDEX t_k ON t (k)",
    "SELECT count(*), sum(i) FROM (SELECT i FROM t ORDER BY k, i)",
)


def machine_row(number: str = "", repeat: int = 3) -> Row:
    """The first row of a table (numbered ``number``): ``MACHINE_WORKLOAD``'s time, the median
    of ``repeat`` runs."""
    runs = []
    for _ in range(repeat):
        conn = sqlite3.connect(":memory:")
        try:
            started = time.perf_counter()
            for statement in MACHINE_WORKLOAD:
                conn.execute(statement).fetchall()
            runs.append(time.perf_counter() - started)
        finally:
            conn.close()
    figure = (f"{number}the machine: a fixed SQLite workload in memory (a million rows made, "
              f"indexed and read in order), median of {repeat}")
    return Row(figure, f"{statistics.median(runs):.2f} s", "reported", verdict(None))


#: A query still running after this long is stopped and shown as over it.
QUERY_TIMEOUT = 60.0


def shell_seconds(db: Path, sql: str) -> float | None:
    """Seconds the plain ``sqlite3`` shell takes to answer ``sql`` (output discarded; at most
    ``QUERY_TIMEOUT``, then ``inf``), or None without a shell."""
    shell = shutil.which("sqlite3")
    if shell is None:
        return None
    started = time.perf_counter()
    try:
        subprocess.run([shell, str(db)], input=sql, stdout=subprocess.DEVNULL, check=True,
                       text=True, timeout=QUERY_TIMEOUT)  # fmt: skip
    except subprocess.TimeoutExpired:
        return float("inf")
    return time.perf_counter() - started
