"""The store figures: merge time, database growth over a year of nights, query times."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from exporter.simulator import Org, apply_churn
from exporter.store.database import open_database
from exporter.store.queries import diff
from tests.bench.bench_records import NightWriter

CHURN = 0.005
ACCESS_AT = "SELECT * FROM access_at WHERE snapshot_id = ?"


@dataclass(frozen=True)
class TwoNights:
    """Two snapshots of an org, a day of churn apart, and the queries over them."""

    first_merge: float
    second_merge: float
    diff_seconds: float
    diff_rows: int
    access_at_seconds: float
    access_at_rows: int


async def _diff_seconds(db: Path, a: int, b: int) -> tuple[float, int]:
    engine = await open_database(db, create=False)
    try:
        async with engine.connect() as conn:
            started = time.perf_counter()
            found = await diff(conn, a, b)
            seconds = time.perf_counter() - started
    finally:
        await engine.dispose()
    return seconds, len(found.changes) + len(found.baseline) + len(found.unverified)


def access_at_seconds(db: Path, snapshot_id: int) -> tuple[float, int]:
    """``SELECT * FROM access_at WHERE snapshot_id = ?`` read to its last row, as sqlite3 does."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        started = time.perf_counter()
        rows = conn.execute(ACCESS_AT, (snapshot_id,)).fetchall()
        return time.perf_counter() - started, len(rows)


async def _two_nights(org: Org, db: Path, seed: int) -> TwoNights:
    nights = NightWriter(db)
    try:
        a, first = await nights.night(org)
        apply_churn(org, rng=random.Random(seed), rate=CHURN)
        b, second = await nights.night(org)
    finally:
        await nights.close()
    diff_s, diff_rows = await _diff_seconds(db, a, b)
    at_s, at_rows = access_at_seconds(db, b)
    return TwoNights(first, second, diff_s, diff_rows, at_s, at_rows)


def two_nights(org: Org, *, seed: int = 1) -> TwoNights:
    """Write ``org``, churn it a day, write it again; time the merges, ``diff`` and ``access_at``.

    Mutates ``org``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_two_nights(org, Path(tmp, "a.db"), seed))


@dataclass(frozen=True)
class Year:
    nights: int
    one_snapshot_bytes: int  # the first night alone
    final_bytes: int  # every night
    final_one_bytes: int  # one snapshot of the org as it is after the last night
    seconds: float

    @property
    def ratio(self) -> float:
        """History against one snapshot of the same (final) org: churn grows the org."""
        return self.final_bytes / self.final_one_bytes

    @property
    def ratio_to_first(self) -> float:
        return self.final_bytes / self.one_snapshot_bytes


def compact_size(db: Path, scratch: Path) -> int:
    """Bytes of ``db`` once compacted (``VACUUM INTO`` a copy; the database is untouched)."""
    scratch.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("VACUUM INTO ?", (str(scratch),))
    size = scratch.stat().st_size
    scratch.unlink()
    return size


async def _year(org: Org, db: Path, nights: int, rate: float, seed: int) -> Year:
    started = time.perf_counter()
    rng = random.Random(seed)
    writer = NightWriter(db)
    scratch = db.with_name("compact.db")
    try:
        await writer.night(org)
        await writer.close()
        one = compact_size(db, scratch)
        for _ in range(nights - 1):
            apply_churn(org, rng=rng, rate=rate)
            await writer.night(org)
    finally:
        await writer.close()
    final = compact_size(db, scratch)
    alone = NightWriter(db.with_name("alone.db"))
    try:
        await alone.night(org)
    finally:
        await alone.close()
    final_one = compact_size(alone.db, scratch)
    return Year(nights, one, final, final_one, time.perf_counter() - started)


def year(org: Org, *, nights: int = 365, rate: float = CHURN, seed: int = 1) -> Year:
    """``nights`` snapshots of ``org`` at ``rate`` daily churn: database size against one night.

    Mutates ``org``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_year(org, Path(tmp, "a.db"), nights, rate, seed))
