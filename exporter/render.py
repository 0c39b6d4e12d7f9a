"""Turning rows into text for people (aligned tables) and programs (JSON, CSV). No I/O."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

MAX_CELL = 48


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def column_widths(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[int]:
    """The width of each column: its name or its longest (cut) cell."""
    return [max([len(c), *(len(_cell(row.get(c))) for row in rows)]) for c in columns]


def table_line(row: dict[str, Any], columns: Sequence[str], widths: Sequence[int]) -> str:
    """One row at fixed widths; a cell longer than its column is cut with an ellipsis."""
    cells = []
    for column, width in zip(columns, widths, strict=True):
        text = _cell(row.get(column))
        cells.append((text if len(text) <= width else text[: width - 1] + "…").ljust(width))
    return "  ".join(cells).rstrip()


def table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], *, widths: Sequence[int] | None = None
) -> str:
    """An aligned plain-text table with a header line; long cells are cut with an ellipsis."""
    widths = column_widths(rows, columns) if widths is None else widths
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += [table_line(row, columns, widths) for row in rows]
    return "\n".join(lines)


def as_json(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps(list(rows), indent=2, ensure_ascii=False)


def as_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def render(rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: str) -> str:
    if fmt == "json":
        return as_json(rows)
    if fmt == "csv":
        return as_csv(rows, columns)
    return table(rows, columns)
