"""``bbaccess who-can-access`` and ``bbaccess access``: load, then print for people or programs."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from exporter.errors import ConfigError
from exporter.render import as_csv, table
from exporter.store.access import (
    Access,
    Source,
    access_of,
    resolve_repository,
    resolve_user,
    who_can_access,
)
from exporter.store.database import open_database
from exporter.store.queries import complete_snapshot_ids, resolve_snapshot

ROW_COLUMNS = ("repository", "user", "effective", "source", "via", "granted", "observed_in",
               "flags")  # fmt: skip
CSV_COLUMNS = ("workspace", "repository", "user", "effective", "effective_observed_in", "source",
               "granted", "via_group", "via_project", "source_observed_in",
               "membership_observed_in", "flags", "user_uuid", "repository_uuid")  # fmt: skip


@dataclass(frozen=True)
class Report:
    subject: str  # the repository or the person asked about
    snapshot_id: int
    accesses: list[Access]


async def _snapshot(conn: AsyncConnection, at: str | None) -> int:
    if at is not None:
        return await resolve_snapshot(conn, at)
    ids = await complete_snapshot_ids(conn)
    if not ids:
        raise ConfigError("the database holds no complete snapshot yet: run 'bbaccess snapshot'")
    return ids[-1]


async def _load(
    db: Path,
    at: str | None,
    resolve: Callable[[AsyncConnection, str, int], Awaitable[tuple[str, str]]],
    name: str,
    query: Callable[[AsyncConnection, str, int], Awaitable[list[Access]]],
) -> Report:
    engine = await open_database(db, create=False)
    try:
        async with engine.connect() as conn:
            s = await _snapshot(conn, at)
            uuid, label = await resolve(conn, name, s)
            return Report(label, s, await query(conn, uuid, s))
    finally:
        await engine.dispose()


async def load_who(db: Path, repository: str, at: str | None) -> Report:
    """Who can reach ``WORKSPACE/REPO`` at ``at`` (default: the last complete snapshot)."""
    return await _load(db, at, resolve_repository, repository, who_can_access)


async def load_access(db: Path, user: str, at: str | None) -> Report:
    """What ``user`` can reach at ``at`` (default: the last complete snapshot)."""
    async def by_name(conn: AsyncConnection, who: str, _s: int) -> tuple[str, str]:
        return await resolve_user(conn, who)

    return await _load(db, at, by_name, user, access_of)


def _via(source: Any) -> str:
    return " in ".join(part for part in (source.via_group, source.via_project) if part)


def _observed(source: Any) -> str:
    seen = "never" if source.observed_in is None else f"snapshot {source.observed_in}"
    if source.via_group is not None:
        members = source.membership_observed_in
        seen += f", members {'never' if members is None else f'snapshot {members}'}"
    return seen


def flat_rows(report: Report) -> list[dict[str, Any]]:
    """One row per (repository, user, source); access that no source explains is one row."""
    rows = []
    for access in report.accesses:
        base = {"workspace": access.workspace, "repository": access.repository,
                "user": access.user, "effective": access.effective,
                "effective_observed_in": access.effective_observed_in,
                "flags": "; ".join(access.flags), "user_uuid": access.user_uuid,
                "repository_uuid": access.repository_uuid}  # fmt: skip
        sources: list[Source | None] = [*access.sources] or [None]
        for source in sources:
            row = dict(base)
            if source is not None:
                row |= {"source": source.source, "granted": source.granted,
                        "via": _via(source), "via_group": source.via_group,
                        "via_project": source.via_project, "observed_in": _observed(source),
                        "source_observed_in": source.observed_in,
                        "membership_observed_in": source.membership_observed_in}  # fmt: skip
            rows.append(row)
    return rows


def print_report(report: Report, *, fmt: str, what: str) -> None:
    if fmt == "json":
        document = {what: report.subject, "snapshot_id": report.snapshot_id,
                    "access": [a.as_dict() for a in report.accesses]}  # fmt: skip
        print(json.dumps(document, indent=2, ensure_ascii=False))
        return
    rows = flat_rows(report)
    if fmt == "csv":
        print(as_csv(rows, CSV_COLUMNS), end="")
        return
    reach = [a for a in report.accesses if a.effective is not None]
    noun = "users" if what == "repository" else "repositories"
    print(f"{report.subject} at snapshot {report.snapshot_id}: {len(reach)} {noun} with "
          f"effective access")
    columns = tuple(c for c in ROW_COLUMNS if c != ("repository" if what == "repository" else
                                                     "user") and c != "flags")  # fmt: skip
    if rows:
        print(table(rows, columns))
    flagged = [a for a in report.accesses if a.flags]
    if flagged:
        print(f"\n{len(flagged)} to check:")
        for access in flagged:
            name = access.user if what == "repository" else access.repository
            for text in access.flags:
                print(f"  {name}: {text}")
