"""``bbaccess demo``: the whole product against the built-in simulator, with no credentials.

Day 0 is the generated org; day N is day 0 after N days of seeded churn. The demo reads the
database to learn which day it last recorded, replays the org to that day, applies one more day of
churn between two snapshots (one, after the first run) and prints what changed.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from sqlalchemy import text

from exporter.access_report import load_who, print_report
from exporter.bitbucket import BasicAuth
from exporter.cli_output import report_run
from exporter.config import Settings
from exporter.diff_report import write_diff
from exporter.export import run_snapshot
from exporter.simulator import (
    ADMIN_EMAIL,
    ADMIN_TOKEN,
    Org,
    apply_churn,
    generate_org,
    run_simulator,
)
from exporter.store.database import open_database
from exporter.store.queries import complete_snapshot_ids

PRESET = "small"


def day_rng(seed: int, day: int) -> random.Random:
    return random.Random(f"bbaccess-demo-{seed}-{day}")


async def recorded_days(db_path: Path) -> int:
    """How many simulated days the database already holds (-1: none)."""
    if not db_path.exists():
        return -1
    engine = await open_database(db_path, stage=False)
    try:
        async with engine.connect() as conn:
            return len(await complete_snapshot_ids(conn)) - 1
    finally:
        await engine.dispose()


def org_on_day(seed: int, day: int, churn_rate: float) -> Org:
    org = generate_org(PRESET, seed)
    for d in range(1, day + 1):
        apply_churn(org, rng=day_rng(seed, d), rate=churn_rate)
    return org


async def run_demo(*, db_path: Path, seed: int, churn_rate: float) -> int:
    if not 0 < churn_rate <= 1:
        from exporter.errors import ConfigError

        raise ConfigError(f"--churn must be in (0, 1], not {churn_rate}")
    day = max(await recorded_days(db_path), 0)
    org = org_on_day(seed, day, churn_rate)
    worst = 0
    async with run_simulator(org) as sim:
        print(f"Simulated Bitbucket Cloud at {sim.base_url} ({PRESET} org, seed {seed})")
        settings = Settings(db_path=db_path, api_url=sim.base_url,
                            auth=BasicAuth(ADMIN_EMAIL, ADMIN_TOKEN))
        if day == 0 and not await _has_snapshots(db_path):
            print(f"\nDay 0: first snapshot into {db_path}")
            worst = max(worst, report_run(await run_snapshot(settings)))
        churn = apply_churn(org, rng=day_rng(seed, day + 1), rate=churn_rate)
        print(f"\nDay {day + 1}: the simulator applies a day of administration:")
        for event in churn.events:
            print(f"  - {event}")
        print(f"\nDay {day + 1}: snapshot")
        worst = max(worst, report_run(await run_snapshot(settings)))
    print()
    sys.stdout.flush()
    await write_diff(db_path, None, None, fmt="table")
    repository = await most_explained_repository(db_path)
    if repository is not None:
        print(f"\nWho can reach {repository}, and through what (bbaccess who-can-access):")
        print_report(await load_who(db_path, repository, None), fmt="table", what="repository")
    print(f"\nAsk your own questions: sqlite3 {db_path} 'select * from access_changes'")
    print(f"Or: bbaccess diff --db {db_path} --from 1 --format json")
    return worst


async def most_explained_repository(db_path: Path) -> str | None:
    """The repository whose access has the most kinds of source: the richest example."""
    engine = await open_database(db_path, stage=False)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT repository FROM current_access_sources "
                         "WHERE effective IS NOT NULL GROUP BY repository "
                         "ORDER BY count(DISTINCT source) DESC, repository LIMIT 1")
                )
            ).first()
    finally:
        await engine.dispose()
    return None if row is None else str(row[0])


async def _has_snapshots(db_path: Path) -> bool:
    return await recorded_days(db_path) >= 0
