"""``latest_access_changes``: the change log of the latest complete snapshot.

What changed last night is the question of every morning, and on ``access_changes`` it could only
be asked with a subquery (``snapshot_id = (SELECT max(id) FROM snapshots ...)``), which SQLite
does not move into the view's branches: it read every night's log to keep the last one, 0.55 s
after 365 nights of ``medium`` and growing with every night. This view starts each branch from
the latest complete snapshot: 0.01 s, whatever the history.

The SQL is written out in full so that this revision never changes.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

LATEST_ACCESS_CHANGES_SQL = (
    """SELECT c.snapshot_id, sn.finished_at AS snapshot_at, c.from_snapshot_id,
       coalesce(w.label, s.workspace_uuid) AS workspace,
       coalesce(nv.object_type, ov.object_type) AS object_type,
       coalesce(l.label, nv.uuid, ov.uuid) AS object_name,
       NULL AS subject_type, NULL AS subject_name, c.change, c.attribute,
       CASE c.attribute WHEN 'slug' THEN ov.slug WHEN 'name' THEN ov.name
            WHEN 'is_private' THEN CASE ov.is_private WHEN 1 THEN 'true' WHEN 0 THEN 'false' END
            WHEN 'project' THEN (SELECT p.slug FROM objects p WHERE p.uuid = ov.parent_uuid
                                  ORDER BY p.id DESC LIMIT 1) END AS old_value,
       CASE c.attribute WHEN 'slug' THEN nv.slug WHEN 'name' THEN nv.name
            WHEN 'is_private' THEN CASE nv.is_private WHEN 1 THEN 'true' WHEN 0 THEN 'false' END
            WHEN 'project' THEN (SELECT p.slug FROM objects p WHERE p.uuid = nv.parent_uuid
                                  ORDER BY p.id DESC LIMIT 1) END AS new_value,
       NULL AS source, c.reason, NULL AS subject_uuid, coalesce(nv.uuid, ov.uuid) AS object_uuid,
       c.scope_id
  FROM (SELECT * FROM snapshots
         WHERE id = (SELECT max(id) FROM snapshots WHERE status = 'complete')) sn
  CROSS JOIN change_log c ON c.snapshot_id = sn.id AND c.fact = 'object'
  JOIN scopes s ON s.id = c.scope_id
  LEFT JOIN objects ov ON ov.id = c.old_id
  LEFT JOIN objects nv ON nv.id = c.new_id
  LEFT JOIN object_labels w ON w.uuid = s.workspace_uuid AND w.object_type = 'workspace'
  LEFT JOIN object_labels l ON l.uuid = coalesce(nv.uuid, ov.uuid)
UNION ALL
SELECT c.snapshot_id, sn.finished_at, c.from_snapshot_id,
       coalesce(w.label, s.workspace_uuid), g.object_type, coalesce(l.label, gn.uuid),
       g.subject_type, coalesce(u.display_name, sl.label, gs.uuid), c.change, NULL,
       og.permission, ng.permission, s.source, c.reason, gs.uuid, gn.uuid,
       c.scope_id
  FROM (SELECT * FROM snapshots
         WHERE id = (SELECT max(id) FROM snapshots WHERE status = 'complete')) sn
  CROSS JOIN change_log c ON c.snapshot_id = sn.id AND c.fact = 'grant'
  JOIN scopes s ON s.id = c.scope_id
  LEFT JOIN grant_versions og ON og.id = c.old_id
  LEFT JOIN grant_versions ng ON ng.id = c.new_id
  JOIN grant_versions g ON g.id = coalesce(c.new_id, c.old_id)
  JOIN names gs ON gs.id = g.subject_id
  JOIN names gn ON gn.id = g.object_id
  LEFT JOIN object_labels w ON w.uuid = s.workspace_uuid AND w.object_type = 'workspace'
  LEFT JOIN object_labels l ON l.uuid = gn.uuid
  LEFT JOIN users u ON u.uuid = gs.uuid
  LEFT JOIN object_labels sl ON g.subject_type = 'group' AND sl.uuid = gs.uuid
UNION ALL
SELECT b.snapshot_id, sn.finished_at, b.from_snapshot_id,
       coalesce(w.label, s.workspace_uuid), o.object_type, coalesce(l.label, o.uuid),
       NULL, NULL, 'baseline', NULL, NULL, NULL, NULL, NULL, NULL, o.uuid, o.scope_id
  FROM (SELECT * FROM snapshots
         WHERE id = (SELECT max(id) FROM snapshots WHERE status = 'complete')) sn
  CROSS JOIN objects o ON o.valid_from = sn.id
  CROSS JOIN baseline_scopes b ON b.snapshot_id = sn.id AND b.scope_id = o.scope_id
  JOIN scopes s ON s.id = b.scope_id
  LEFT JOIN object_labels w ON w.uuid = s.workspace_uuid AND w.object_type = 'workspace'
  LEFT JOIN object_labels l ON l.uuid = o.uuid
 WHERE o.valid_to IS NULL OR o.valid_to > sn.id
UNION ALL
SELECT b.snapshot_id, sn.finished_at, b.from_snapshot_id,
       coalesce(w.label, s.workspace_uuid), g.object_type, coalesce(l.label, gn.uuid),
       g.subject_type, coalesce(u.display_name, sl.label, gs.uuid), 'baseline', NULL,
       NULL, g.permission, s.source, NULL, gs.uuid, gn.uuid, g.scope_id
  FROM (SELECT * FROM snapshots
         WHERE id = (SELECT max(id) FROM snapshots WHERE status = 'complete')) sn
  CROSS JOIN grant_versions g ON g.valid_from = sn.id
  CROSS JOIN baseline_scopes b ON b.snapshot_id = sn.id AND b.scope_id = g.scope_id
  JOIN scopes s ON s.id = b.scope_id
  JOIN names gs ON gs.id = g.subject_id
  JOIN names gn ON gn.id = g.object_id
  LEFT JOIN object_labels w ON w.uuid = s.workspace_uuid AND w.object_type = 'workspace'
  LEFT JOIN object_labels l ON l.uuid = gn.uuid
  LEFT JOIN users u ON u.uuid = gs.uuid
  LEFT JOIN object_labels sl ON g.subject_type = 'group' AND sl.uuid = gs.uuid
 WHERE g.valid_to IS NULL OR g.valid_to > sn.id"""
)


def upgrade() -> None:
    op.execute(f"CREATE VIEW latest_access_changes AS\n{LATEST_ACCESS_CHANGES_SQL}")


def downgrade() -> None:
    op.execute("DROP VIEW latest_access_changes")
