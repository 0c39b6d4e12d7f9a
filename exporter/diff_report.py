"""``bbaccess diff``: resolve two snapshots, run the diff, print it for people or programs."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from exporter.errors import ConfigError
from exporter.render import as_csv, table
from exporter.store.database import open_database
from exporter.store.queries import (
    CHANGE_COLUMNS,
    CHANGE_ORDER,
    Diff,
    complete_snapshot_ids,
    default_pair,
    diff,
    resolve_snapshot,
)

TABLE_COLUMNS = ("workspace", "change", "object_type", "object_name", "subject_name", "attribute",
                 "old_value", "new_value", "source", "reason")


async def load_diff(
    db_path: Path, from_ref: str | None, to_ref: str | None, *, with_baseline: bool = False
) -> Diff:
    """The diff between two snapshot references (ids, dates or timestamps); defaults: the last
    two complete snapshots (or, with only one, everything it saw as baseline)."""
    engine = await open_database(db_path, create=False)
    try:
        async with engine.connect() as conn:
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
            return await diff(conn, a, b, with_baseline=with_baseline)
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

    def apply(self, result: Diff) -> Diff:
        if self == DiffFilter():
            return result
        changes = [r for r in result.changes if self.keeps(r)]
        baseline = [r for r in result.baseline if self.keeps(r)]
        count = len(baseline) if result.baseline else result.baseline_count
        return replace(result, changes=changes, baseline=baseline, baseline_count=count)


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


def print_diff(result: Diff, *, fmt: str, baseline: bool, out: TextIO | None = None) -> None:
    out = sys.stdout if out is None else out
    rows = result.changes + (result.baseline if baseline else [])
    if fmt == "json":
        document = {
            "from_snapshot_id": result.from_id,
            "to_snapshot_id": result.to_id,
            "changes": result.changes,
            "baseline_count": result.baseline_count,
            "unverified": [vars(u) for u in result.unverified],
            "unverified_per_object": [vars(u) for u in result.unverified_per_object],
        }
        if baseline:
            document["baseline"] = result.baseline
        print(json.dumps(document, indent=2, ensure_ascii=False), file=out)
        return
    if fmt == "csv":
        print(as_csv(rows, CHANGE_COLUMNS), end="", file=out)
        return
    start = f"snapshot {result.from_id}" if result.from_id else "nothing"
    print(f"Changes from {start} to snapshot {result.to_id}: {len(result.changes)}", file=out)
    if rows:
        print(table(rows, TABLE_COLUMNS), file=out)
    if result.baseline_count and not baseline:
        print(f"{result.baseline_count} facts seen for the first time (baseline, not changes); "
              "--baseline lists them", file=out)
    if result.unverified:
        print(f"{len(result.unverified)} scopes not observed in between, so nothing is claimed "
              "about them:", file=out)
        for scope in result.unverified:
            detail = f": {scope.detail}" if scope.detail else ""
            print(f"  {scope.label} ({scope.outcome}{detail})", file=out)
    if result.unverified_per_object:
        total = sum(u.count for u in result.unverified_per_object)
        print(f"{total} explicit-grant scopes of repositories and projects not observed in "
              "between (rationed across nights, or refused), so nothing is claimed about them:",
              file=out)
        for count in result.unverified_per_object:
            print(f"  {count.kind}: {count.count} {count.outcome}", file=out)
