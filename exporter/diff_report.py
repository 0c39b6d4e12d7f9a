"""``bbaccess diff``: resolve two snapshots, run the diff, print it for people or programs as its
rows come (memory does not grow with the number of changes)."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.ext.asyncio import AsyncConnection

from exporter.errors import ConfigError
from exporter.render import column_widths, table, table_line
from exporter.store.database import open_database
from exporter.store.queries import (
    CHANGE_COLUMNS,
    CHANGE_ORDER,
    NOT_ATTEMPTED,
    UnverifiedCount,
    UnverifiedScope,
    baseline_count,
    complete_snapshot_ids,
    default_pair,
    resolve_snapshot,
    stream_diff_rows,
    unverified_scopes,
)

TABLE_COLUMNS = ("workspace", "change", "object_type", "object_name", "subject_name", "attribute",
                 "old_value", "new_value", "source", "reason")


async def resolve_pair(
    conn: AsyncConnection, from_ref: str | None, to_ref: str | None
) -> tuple[int, int]:
    """The two snapshots to compare; defaults: the last two complete snapshots (or, with only
    one, from nothing)."""
    a, b = await default_pair(conn)
    if to_ref is not None:
        b = await resolve_snapshot(conn, to_ref)
    if from_ref is not None:
        a = await resolve_snapshot(conn, from_ref)
    elif to_ref is not None:
        ids = [i for i in await complete_snapshot_ids(conn) if i < b]
        a = ids[-1] if ids else 0
    if a == b:
        raise ConfigError(_same_snapshot(a, from_ref, to_ref))
    if a > b:
        raise ConfigError(f"--from ({a}) is after --to ({b}); swap them")
    return a, b


async def write_diff(
    db_path: Path,
    from_ref: str | None,
    to_ref: str | None,
    *,
    fmt: str,
    baseline: bool = False,
    wanted: DiffFilter | None = None,
    out: TextIO | None = None,
) -> int:
    """Print the diff between two snapshot references as its rows come, so that memory does not
    grow with the number of changes; how many changes were listed (after ``wanted``)."""
    wanted = wanted or DiffFilter()
    engine = await open_database(db_path, create=False)
    try:
        async with engine.connect() as conn:
            a, b = await resolve_pair(conn, from_ref, to_ref)
            unverified, per_object = await unverified_scopes(conn, a, b)
            writer = WRITERS[fmt](out or sys.stdout, a, b)
            changes = 0
            if a > 0:  # from nothing, everything is baseline
                async for row in stream_diff_rows(conn, a, b, baseline=False):
                    if wanted.keeps(row):
                        writer.row(row)
                        changes += 1
            # Baseline rows are no change: --change leaves them be, the other filters apply.
            facts = replace(wanted, changes=())
            if baseline or facts != DiffFilter():
                count = 0
                writer.baseline_starts(listed=baseline)
                async for row in stream_diff_rows(conn, a, b, baseline=True):
                    if facts.keeps(row):
                        count += 1
                        if baseline:
                            writer.row(row)
            else:
                count = await baseline_count(conn, a, b)
            writer.end(changes, count, unverified, per_object, listed=baseline)
            return changes
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class DiffFilter:
    """Which change rows to keep; every given criterion must hold (empty: no criterion)."""

    changes: tuple[str, ...] = ()
    workspaces: tuple[str, ...] = ()
    users: tuple[str, ...] = ()  # display name or uuid
    repositories: tuple[str, ...] = ()  # WORKSPACE/REPO
    sources: tuple[str, ...] = ()

    def keeps(self, row: dict[str, Any]) -> bool:
        user = (row.get("subject_name") or "", row.get("subject_uuid") or "")
        return (
            (not self.changes or row["change"] in self.changes)
            and (not self.workspaces or row["workspace"] in self.workspaces)
            and (not self.sources or row["source"] in self.sources)
            and (not self.repositories or (row["object_type"] == "repository"
                                           and row["object_name"] in self.repositories))
            and (not self.users or (row.get("subject_type") == "user" and any(
                u.lower() in (user[0].lower(), user[1].lower()) for u in self.users)))
        )  # fmt: skip


def check_filter(wanted: DiffFilter) -> None:
    unknown = [c for c in wanted.changes if c not in CHANGE_ORDER]
    if unknown:
        raise ConfigError(f"--change {unknown[0]!r} is not a kind of change; choose from "
                          f"{', '.join(CHANGE_ORDER)}")
    for name in wanted.repositories:
        if "/" not in name:
            raise ConfigError(f"--repository takes WORKSPACE/REPO (acme/api), not {name!r}")


def _same_snapshot(snapshot: int, from_ref: str | None, to_ref: str | None) -> str:
    if to_ref is None:
        return (f"no complete snapshot follows --from {from_ref} (it resolves to snapshot "
                f"{snapshot}, the last one): nothing to compare; 'bbaccess snapshots' lists them")
    return (f"--from {from_ref} and --to {to_ref} both resolve to snapshot {snapshot}: "
            "nothing to compare")


class _Writer:
    """Writes one diff, row by row."""

    def __init__(self, out: TextIO, a: int, b: int) -> None:
        self.out, self.a, self.b = out, a, b

    def row(self, row: dict[str, Any]) -> None:
        raise NotImplementedError

    def baseline_starts(self, *, listed: bool) -> None:
        """The rows that follow are baseline rows."""

    def end(self, changes: int, baseline: int, unverified: list[UnverifiedScope],
            per_object: list[UnverifiedCount], *, listed: bool) -> None:  # fmt: skip
        """After the last row."""


class _Json(_Writer):
    """``{from_snapshot_id, to_snapshot_id, changes, baseline?, baseline_count, unverified,
    unverified_per_object}``, one row a line."""

    def __init__(self, out: TextIO, a: int, b: int) -> None:
        super().__init__(out, a, b)
        self.first = True
        out.write(f'{{\n  "from_snapshot_id": {a},\n  "to_snapshot_id": {b},\n  "changes": [')

    def row(self, row: dict[str, Any]) -> None:
        text = json.dumps(row, ensure_ascii=False)
        self.out.write(("\n    " if self.first else ",\n    ") + text)
        self.first = False

    def _close_list(self) -> None:
        self.out.write("]" if self.first else "\n  ]")

    def baseline_starts(self, *, listed: bool) -> None:
        if listed:
            self._close_list()
            self.out.write(',\n  "baseline": [')
            self.first = True

    def end(self, changes: int, baseline: int, unverified: list[UnverifiedScope],
            per_object: list[UnverifiedCount], *, listed: bool) -> None:  # fmt: skip
        self._close_list()
        tail = {"baseline_count": baseline, "unverified": [vars(u) for u in unverified],
                "unverified_per_object": [vars(u) for u in per_object]}  # fmt: skip
        for key, value in tail.items():
            self.out.write(f',\n  "{key}": {json.dumps(value, ensure_ascii=False)}')
        self.out.write("\n}\n")


class _Csv(_Writer):
    """Every column of ``access_changes``, a header line first."""

    def __init__(self, out: TextIO, a: int, b: int) -> None:
        super().__init__(out, a, b)
        self.writer = csv.DictWriter(out, fieldnames=list(CHANGE_COLUMNS), extrasaction="ignore",
                                     lineterminator="\n")  # fmt: skip
        self.writer.writeheader()

    def row(self, row: dict[str, Any]) -> None:
        self.writer.writerow(row)


#: Rows a table reads before it fixes its column widths (longer cells are cut, as ever).
TABLE_SAMPLE = 200


class _Table(_Writer):
    """For people: an aligned table whose widths come from its first rows, then the counts."""

    def __init__(self, out: TextIO, a: int, b: int) -> None:
        super().__init__(out, a, b)
        self.held: list[dict[str, Any]] = []
        self.widths: list[int] | None = None
        start = f"snapshot {a}" if a else "nothing"
        out.write(f"Changes from {start} to snapshot {b}:\n")

    def row(self, row: dict[str, Any]) -> None:
        if self.widths is not None:
            self.out.write(table_line(row, TABLE_COLUMNS, self.widths) + "\n")
            return
        self.held.append(row)
        if len(self.held) == TABLE_SAMPLE:
            self._flush()

    def _flush(self) -> None:
        if self.widths is None and self.held:
            self.widths = column_widths(self.held, TABLE_COLUMNS)
            self.out.write(table(self.held, TABLE_COLUMNS, widths=self.widths) + "\n")
            self.held = []

    def end(self, changes: int, baseline: int, unverified: list[UnverifiedScope],
            per_object: list[UnverifiedCount], *, listed: bool) -> None:  # fmt: skip
        self._flush()
        out = self.out
        out.write(f"{changes} change{'' if changes == 1 else 's'}\n")
        if baseline and not listed:
            out.write(f"{baseline} facts seen for the first time (baseline, not changes); "
                      "--baseline lists them\n")
        if unverified:
            out.write(f"{len(unverified)} scopes not observed in between, so nothing is claimed "
                      "about them:\n")
            # Workspaces whose turn did not come (hundreds of listings a night at huge): one
            # line for them all; a listing that was tried and failed, one line each.
            waiting = sorted({s.workspace for s in unverified if s.outcome == NOT_ATTEMPTED})
            if waiting:
                out.write(f"  the listings of {len(waiting)} workspace"
                          f"{'' if len(waiting) == 1 else 's'}, not read in between (their turn "
                          f"is to come): {', '.join(waiting)}\n")  # fmt: skip
            for scope in unverified:
                if scope.outcome != NOT_ATTEMPTED:
                    detail = f": {scope.detail}" if scope.detail else ""
                    out.write(f"  {scope.label} ({scope.outcome}{detail})\n")
        if per_object:
            total = sum(u.count for u in per_object)
            out.write(f"{total} explicit-grant scopes of repositories and projects not observed "
                      "in between (rationed across nights, or refused), so nothing is claimed "
                      "about them:\n")
            for count in per_object:
                out.write(f"  {count.kind}: {count.count} {count.outcome}\n")


WRITERS: dict[str, type[_Writer]] = {"json": _Json, "csv": _Csv, "table": _Table}
