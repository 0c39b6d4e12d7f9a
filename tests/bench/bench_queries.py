"""The README's cookbook and the counted snapshot, timed in the plain ``sqlite3`` shell on any
database: ``python -m tests.bench.bench_queries PATH``. The demo's names in the queries are
replaced by names of the same kind found in the database, so that each query finds rows.
``make bench-huge`` runs the same on the ``huge`` org it builds; this one times a database kept
from it (or a real one) in a minute or two.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.bench.bench_huge import QUERY_BUDGET, seconds_cell, with_names_of
from tests.bench.bench_table import shell_seconds
from tests.test_readme_sql import README, cookbook, sql_blocks

COUNT_SNAPSHOT = (
    "SELECT count(*) FROM access_at "
    "WHERE snapshot_id = (SELECT max(id) FROM snapshots WHERE status = 'complete');"
)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_file():
        print("usage: python -m tests.bench.bench_queries PATH (a bbaccess database)",
              file=sys.stderr)  # fmt: skip
        return 2
    db = Path(argv[0])
    print("| query | seconds | within the budget |\n| --- | --- | --- |")
    blocks = sql_blocks(cookbook(README.read_text(encoding="utf-8")))
    timed = [(intro, with_names_of(db, sql)) for intro, sql in blocks]
    timed.append(("count of the latest snapshot's access_at rows", COUNT_SNAPSHOT))
    for n, (intro, sql) in enumerate(timed, 1):
        seconds = shell_seconds(db, sql)
        ok = "" if seconds is None else ("yes" if seconds <= QUERY_BUDGET else "**no**")
        print(f"| {n}. {intro[:70].rstrip(':')} | {seconds_cell(seconds)} | {ok} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
