"""``bbaccess diff`` streams its rows: the same rows, in the same order, as the diff held whole."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from exporter.diff_report import DiffFilter, write_diff
from exporter.simulator import generate_org
from exporter.store.database import open_database
from exporter.store.queries import diff
from tests.bench.bench_records import churned_nights


@pytest.fixture(scope="module")
def three_nights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("stream") / "a.db"

    asyncio.run(churned_nights(db, generate_org("small", 8), 3))
    return db


async def held_whole(db: Path, a: int, b: int) -> tuple[list[dict[str, Any]], list[Any], int]:
    engine = await open_database(db, create=False)
    try:
        async with engine.connect() as conn:
            found = await diff(conn, a, b, with_baseline=True)
    finally:
        await engine.dispose()
    return found.changes, found.baseline, found.baseline_count


@pytest.mark.parametrize(("a", "b"), [(0, 3), (1, 2), (1, 3), (2, 3)])
def test_streamed_rows_are_the_rows_held_whole(three_nights: Path, a: int, b: int) -> None:
    changes, baseline, count = asyncio.run(held_whole(three_nights, a, b))
    out = io.StringIO()
    listed = asyncio.run(write_diff(three_nights, str(a), str(b), fmt="json", baseline=True,
                                    out=out))  # fmt: skip
    document = json.loads(out.getvalue())
    assert document["changes"] == changes and listed == len(changes)
    assert document["baseline"] == baseline and document["baseline_count"] == count
    if a:
        assert changes  # the comparison is not empty
    plain = io.StringIO()
    asyncio.run(write_diff(three_nights, str(a), str(b), fmt="json", out=plain))
    assert json.loads(plain.getvalue())["baseline_count"] == count
    rows = io.StringIO()
    asyncio.run(write_diff(three_nights, str(a), str(b), fmt="csv", out=rows))
    assert len(list(csv.DictReader(io.StringIO(rows.getvalue())))) == len(changes)


def test_a_long_table_keeps_the_widths_of_its_first_rows(three_nights: Path) -> None:
    out = io.StringIO()
    listed = asyncio.run(write_diff(three_nights, "0", "3", fmt="table", baseline=True,
                                    out=out))  # fmt: skip
    lines = out.getvalue().splitlines()
    assert lines[0] == "Changes from nothing to snapshot 3:"
    body = lines[3 : lines.index("0 changes")]
    assert listed == 0 and len(body) > 200  # past the rows the widths were taken from
    widths = {len(line) for line in body}
    assert max(widths) <= len(lines[2])  # no row wider than the header's dashes


def test_filters_apply_to_the_streamed_rows_and_the_baseline_count(three_nights: Path) -> None:
    changes, _, _ = asyncio.run(held_whole(three_nights, 1, 3))
    wanted = DiffFilter(changes=("granted", "revoked"))
    out = io.StringIO()
    asyncio.run(write_diff(three_nights, "1", "3", fmt="json", wanted=wanted, out=out))
    document = json.loads(out.getvalue())
    assert document["changes"] == [r for r in changes if r["change"] in ("granted", "revoked")]
    assert document["baseline_count"] == 0  # baseline rows are no granted or revoked
