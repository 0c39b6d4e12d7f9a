"""``current_access`` and ``access_at`` show the workspace's uuid.

A question that pairs a user with a workspace across sources (an admin who is no owner of the
repository's workspace, a grant whose holder is no member of its workspace) compared the
``workspace`` name, which each row looked up in ``names``: at ``huge`` that was 2.1 million
lookups, half the time of the cookbook's question of the repositories with no admin but the
owners. ``workspace_uuid`` comes with the scope the view already joins, costs nothing, and does
not change when a workspace is renamed.

The SQL is written out in full so that this revision never changes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op
from alembic.script import ScriptDirectory

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_GRANT_COLUMNS = """w.name AS workspace,
       g.object_type,
       l.name AS object_name,
       g.subject_type,
       sj.name AS subject_name,
       g.permission,
       s.source AS source"""
_GRANT_NAMES = """  LEFT JOIN scopes s ON s.id = g.scope_id
  LEFT JOIN names w ON w.uuid = s.workspace_uuid
  LEFT JOIN names l ON l.uuid = g.object_uuid
  LEFT JOIN names sj ON sj.uuid = g.subject_uuid"""

VIEWS: list[tuple[str, str]] = [
    (
        "access_at",
        f"""SELECT sn.id AS snapshot_id,
       sn.finished_at AS snapshot_at,
       {_GRANT_COLUMNS},
       (SELECT max(x.snapshot_id) FROM observations x
         WHERE x.scope_id = g.scope_id AND x.outcome = 'ok'
           AND x.snapshot_id <= sn.id) AS observed_in,
       g.subject_uuid,
       g.object_uuid,
       g.scope_id,
       s.workspace_uuid
  FROM snapshots sn
  JOIN grants g ON +g.valid_from <= sn.id AND (+g.valid_to IS NULL OR +g.valid_to > sn.id)
{_GRANT_NAMES}
 WHERE sn.status = 'complete'""",
    ),
    (
        "current_access",
        f"""SELECT {_GRANT_COLUMNS},
       (SELECT max(x.snapshot_id) FROM observations x
         WHERE x.scope_id = g.scope_id AND x.outcome = 'ok') AS observed_in,
       (SELECT sn.finished_at FROM snapshots sn
         WHERE sn.id = (SELECT max(x.snapshot_id) FROM observations x
                         WHERE x.scope_id = g.scope_id AND x.outcome = 'ok')) AS observed_at,
       g.valid_from AS since_snapshot,
       g.subject_uuid,
       g.object_uuid,
       g.scope_id,
       s.workspace_uuid
  FROM grants g
{_GRANT_NAMES}
 WHERE g.valid_to IS NULL""",
    ),
]


def upgrade() -> None:
    for name, sql in VIEWS:
        op.execute(f"DROP VIEW {name}")
        op.execute(f"CREATE VIEW {name} AS\n{sql}")


def downgrade() -> None:
    previous = dict(
        ScriptDirectory.from_config(op.get_context().config).get_revision("0006").module.VIEWS
    )
    for name, _sql in VIEWS:
        op.execute(f"DROP VIEW {name}")
        op.execute(f"CREATE VIEW {name} AS\n{previous[name]}")
