"""What the planner needs to take workspaces in turn: when each workspace's listings were last
read, and what that cost. One read-only query; kept apart from ``queries`` so that it can be
folded into it."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from exporter.store.sql import latest_ok_run

#: Per workspace, over its workspace-wide listings that have an ok observation: the oldest of
#: their latest ok observations, and the requests those observations took.
WORKSPACE_TURNS_SQL = f"""SELECT s.workspace_uuid, min(o.last_snapshot_id),
       coalesce(sum(o.requests), 0)
  FROM scopes s
  JOIN observation_runs o ON {latest_ok_run("s.id")}
 WHERE s.parent_scope_id IS NULL
 GROUP BY s.workspace_uuid"""


async def workspace_turns(conn: AsyncConnection) -> dict[str, tuple[int, int]]:
    """{workspace uuid: (last read, requests)}: the oldest of its workspace-wide listings' latest
    ok observations, and the requests (pages) those took. A workspace none of whose listings was
    ever read ok is absent."""
    rows = await conn.execute(text(WORKSPACE_TURNS_SQL))
    return {str(uuid): (int(last), int(requests)) for uuid, last, requests in rows}


async def workspace_rotation(conn: AsyncConnection) -> tuple[int, int, int | None]:
    """(workspaces known, of those read whole by the last complete snapshot, the oldest last
    read among them) for ``bbaccess coverage``: how far the turns of the workspaces have come."""
    last = (
        await conn.execute(text("SELECT max(id) FROM snapshots WHERE status = 'complete'"))
    ).scalar_one()
    known = [
        str(uuid)
        for (uuid,) in await conn.execute(
            text(
                "SELECT o.uuid FROM objects o JOIN scopes s ON s.id = o.scope_id "
                "WHERE s.kind = 'workspace' AND o.valid_to IS NULL"
            )
        )
    ]
    turns = await workspace_turns(conn)
    read = [turns[uuid][0] for uuid in known if uuid in turns]
    tonight = sum(1 for snapshot in read if snapshot == last)
    return len(known), tonight, min(read) if read else None
