"""``access_at`` and ``current_access`` look up a row's workspace name only when it is asked for.

Each row looked up its workspace's name by uuid in ``names`` through a join, which SQLite does
not leave out of an aggregate that never reads the name: at ``huge`` the 5.2 million rows of
``select count(*) from access_at where snapshot_id = ?`` spent 0.9 of their 2.3 s on it. The name
is now a subquery in the column, which SQLite evaluates only for a row whose ``workspace`` a
query reads. Columns and rows are unchanged.

The SQL is written out in full so that this revision never changes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op
from alembic.script import ScriptDirectory

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_GRANT_COLUMNS = """(SELECT w.name FROM names w WHERE w.uuid = s.workspace_uuid) AS workspace,
       g.object_type,
       l.name AS object_name,
       g.subject_type,
       sj.name AS subject_name,
       g.permission,
       s.source AS source"""
_GRANT_NAMES = """  LEFT JOIN scopes s ON s.id = g.scope_id
  LEFT JOIN names l ON l.id = g.object_id
  LEFT JOIN names sj ON sj.id = g.subject_id"""

VIEWS: list[tuple[str, str]] = [
    (
        "access_at",
        f"""SELECT sn.id AS snapshot_id,
       sn.finished_at AS snapshot_at,
       {_GRANT_COLUMNS},
       (SELECT max(x.snapshot_id) FROM observations x
         WHERE x.scope_id = g.scope_id AND x.outcome = 'ok'
           AND x.snapshot_id <= sn.id) AS observed_in,
       sj.uuid AS subject_uuid,
       l.uuid AS object_uuid,
       g.scope_id,
       s.workspace_uuid
  FROM snapshots sn
  JOIN grant_versions g
    ON +g.valid_from <= sn.id AND (+g.valid_to IS NULL OR +g.valid_to > sn.id)
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
       sj.uuid AS subject_uuid,
       l.uuid AS object_uuid,
       g.scope_id,
       s.workspace_uuid
  FROM grant_versions g
{_GRANT_NAMES}
 WHERE g.valid_to IS NULL""",
    ),
]
def _replace(views: list[tuple[str, str]]) -> None:
    for name, _sql in views:
        op.execute(f"DROP VIEW {name}")
    for name, sql in views:
        op.execute(f"CREATE VIEW {name} AS\n{sql}")


def upgrade() -> None:
    _replace(VIEWS)


def downgrade() -> None:
    module = ScriptDirectory.from_config(op.get_context().config).get_revision("0010").module
    previous = dict(module.VIEWS)
    _replace([(name, previous[name]) for name, _sql in VIEWS])
