"""The report: rows of figure | measured | budget | verdict, printed as markdown."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


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
