"""Explicit grants, groups and why: per-object scopes, scope sources as data, closures as a column.

- ``scopes.source``: where the access in a scope's grants comes from (workspace, effective, direct,
  group, project, project group, membership), written by the exporter from its one description
  of each scope kind; the views read it instead of mapping kinds in SQL.
- ``observations.closure``: 'deleted' when a child scope was closed because its object left its
  parent's listing (was found by matching the detail text); such rows are not counted as ok
  observations of a snapshot. ``observations.requests``: the pages an observation read.
- ``stage_users.scope_id``: names staged by a failed scope are dropped with it.
- Views: sources from ``scopes.source``; a permission outside the known order (``none``) is
  ``changed``, never raised or lowered; group membership changes are ``added to group`` and
  ``removed from group``; group subjects are named by label (``acme/devs``) in every view.
  New: ``current_explicit_grants``, ``current_group_members``, ``current_groups`` and
  ``current_access_sources`` (who can reach each repository, and through what).

The views' SQL is written out in full so that this revision never changes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from alembic.script import ScriptDirectory

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SOURCES = """CASE kind
    WHEN 'workspace_roles' THEN 'workspace'
    WHEN 'repository_permissions' THEN 'effective'
    WHEN 'groups' THEN 'membership'
    WHEN 'repository_user_grants' THEN 'direct'
    WHEN 'repository_group_grants' THEN 'group'
    WHEN 'project_user_grants' THEN 'project'
    WHEN 'project_group_grants' THEN 'project group' END"""


def _drop_views() -> None:
    rows = op.get_bind().execute(
        sa.text("SELECT name FROM sqlite_master WHERE type = 'view' ORDER BY rowid DESC")
    )
    for (name,) in list(rows):
        op.execute(f"DROP VIEW {name}")


def _stage_users(*, with_scope: bool) -> None:
    # The stage is empty between runs: rebuilt, not migrated.
    op.execute("DROP TABLE stage_users")
    scope = "scope_id INTEGER NOT NULL, " if with_scope else ""
    key = "snapshot_id, scope_id, uuid" if with_scope else "snapshot_id, uuid"
    op.execute(
        f"CREATE TABLE stage_users (snapshot_id INTEGER NOT NULL, {scope}uuid TEXT NOT NULL, "
        "display_name TEXT NOT NULL, nickname TEXT, account_id TEXT, "
        f"CONSTRAINT pk_stage_users PRIMARY KEY ({key}))"
    )


def upgrade() -> None:
    _drop_views()
    op.execute("ALTER TABLE scopes ADD COLUMN source TEXT")
    op.execute(f"UPDATE scopes SET source = {SOURCES}")
    op.execute("ALTER TABLE observations ADD COLUMN closure TEXT")
    op.execute("ALTER TABLE observations ADD COLUMN requests INTEGER NOT NULL DEFAULT 0")
    op.execute("UPDATE observations SET closure = 'deleted' WHERE detail LIKE 'deleted with its %'")
    op.execute("ALTER TABLE stage_observations ADD COLUMN requests INTEGER NOT NULL DEFAULT 0")
    _stage_users(with_scope=True)
    op.create_index("ix_objects_parent", "objects", ["parent_uuid"])
    for name, sql in VIEWS:
        op.execute(f"CREATE VIEW {name} AS\n{sql}")


def downgrade() -> None:
    _drop_views()
    op.drop_index("ix_objects_parent", "objects")
    _stage_users(with_scope=False)
    for table, column in (("stage_observations", "requests"), ("observations", "requests"),
                          ("observations", "closure"), ("scopes", "source")):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    # The views of 0002: those of 0001, with object_labels reading the labels table.
    first = ScriptDirectory.from_config(op.get_context().config).get_revision("0001")
    for name, sql in first.module.VIEWS:
        if name == "object_labels":
            sql = "SELECT uuid, object_type, label, name, workspace_uuid FROM labels"
        op.execute(f"CREATE VIEW {name} AS\n{sql}")


VIEWS: list[tuple[str, str]] = [
    (
        'object_labels',
        """SELECT uuid, object_type, label, name, workspace_uuid FROM labels""",
    ),
    (
        'scope_freshness',
        """SELECT s.id AS scope_id, s.kind, s.label, s.source,
       (SELECT o.outcome FROM observations o WHERE o.scope_id = s.id
         ORDER BY o.snapshot_id DESC LIMIT 1) AS last_outcome,
       (SELECT o.detail FROM observations o WHERE o.scope_id = s.id
         ORDER BY o.snapshot_id DESC LIMIT 1) AS last_detail,
       (SELECT max(o.snapshot_id) FROM observations o WHERE o.scope_id = s.id) AS last_attempted_in,
       (SELECT max(o.snapshot_id) FROM observations o
         WHERE o.scope_id = s.id AND o.outcome = 'ok') AS observed_in,
       (SELECT sn.finished_at FROM snapshots sn
         WHERE sn.id = (SELECT max(o.snapshot_id) FROM observations o
                         WHERE o.scope_id = s.id AND o.outcome = 'ok')) AS observed_at,
       s.workspace_uuid, s.object_uuid
  FROM scopes s""",
    ),
    (
        'access_changes',
        """WITH
pair(a, b) AS (SELECT coalesce((SELECT max(p.id) FROM snapshots p
                      WHERE p.status = 'complete' AND p.id < s.id), 0) AS a,
           s.id AS b
    FROM snapshots s WHERE s.status = 'complete'),
ok_obs AS (SELECT scope_id, snapshot_id FROM observations WHERE outcome = 'ok'),
old_o AS (
    SELECT p.a, p.b, o.* FROM pair p JOIN objects o
      ON o.valid_to > p.a AND o.valid_to <= p.b AND o.valid_from <= p.a),
new_o AS (
    SELECT p.a, p.b, o.* FROM pair p JOIN objects o
      ON o.valid_from > p.a AND o.valid_from <= p.b
     AND (o.valid_to IS NULL OR o.valid_to > p.b)),
object_pairs AS (
    SELECT n.a, n.b, n.scope_id, n.uuid, o.id AS old_id, n.id AS new_id
      FROM new_o n LEFT JOIN old_o o
        ON o.b = n.b AND o.scope_id = n.scope_id AND o.uuid = n.uuid
    UNION ALL
    SELECT o.a, o.b, o.scope_id, o.uuid, o.id, NULL FROM old_o o
     WHERE NOT EXISTS (SELECT 1 FROM new_o n
                        WHERE n.b = o.b AND n.scope_id = o.scope_id AND n.uuid = o.uuid)),
object_events AS (
    SELECT op.a, op.b, op.scope_id, op.uuid, op.old_id, op.new_id,
           CASE WHEN op.old_id IS NULL THEN
                  CASE WHEN EXISTS (SELECT 1 FROM ok_obs x
                                     WHERE x.scope_id = op.scope_id AND x.snapshot_id <= op.a)
                       THEN 'created' ELSE 'baseline' END
                WHEN op.new_id IS NULL THEN 'deleted'
                ELSE 'changed' END AS change
      FROM object_pairs op),
attributes(attribute) AS (VALUES ('slug'), ('name'), ('is_private'), ('project')),
object_changes AS (
    SELECT * FROM (
      SELECT e.a, e.b, e.scope_id, e.uuid, e.change,
             CASE WHEN e.change = 'changed' THEN t.attribute END AS attribute,
             CASE WHEN e.change = 'changed' THEN CASE t.attribute
                  WHEN 'slug' THEN ov.slug WHEN 'name' THEN ov.name
                  WHEN 'is_private' THEN CASE ov.is_private WHEN 1 THEN 'true'
                                                            WHEN 0 THEN 'false' END
                  ELSE (SELECT l.slug FROM objects l WHERE l.uuid = ov.parent_uuid
                         ORDER BY l.id DESC LIMIT 1) END END AS old_value,
             CASE WHEN e.change = 'changed' THEN CASE t.attribute
                  WHEN 'slug' THEN nv.slug WHEN 'name' THEN nv.name
                  WHEN 'is_private' THEN CASE nv.is_private WHEN 1 THEN 'true'
                                                            WHEN 0 THEN 'false' END
                  ELSE (SELECT l.slug FROM objects l WHERE l.uuid = nv.parent_uuid
                         ORDER BY l.id DESC LIMIT 1) END END AS new_value,
             CASE WHEN e.change = 'changed' AND t.attribute = 'project'
                  THEN ov.parent_uuid IS NOT nv.parent_uuid
                  WHEN e.change = 'changed' AND t.attribute = 'is_private'
                  THEN ov.is_private IS NOT nv.is_private
                  WHEN e.change = 'changed' AND t.attribute = 'slug' THEN ov.slug IS NOT nv.slug
                  WHEN e.change = 'changed' AND t.attribute = 'name' THEN ov.name IS NOT nv.name
                  ELSE t.attribute = 'slug' END AS keep,
             coalesce(nv.object_type, ov.object_type) AS object_type
        FROM object_events e
        CROSS JOIN attributes t
        LEFT JOIN objects ov ON ov.id = e.old_id
        LEFT JOIN objects nv ON nv.id = e.new_id)
     WHERE keep),
old_g AS (
    SELECT p.a, p.b, g.* FROM pair p JOIN grants g
      ON g.valid_to > p.a AND g.valid_to <= p.b AND g.valid_from <= p.a),
new_g AS (
    SELECT p.a, p.b, g.* FROM pair p JOIN grants g
      ON g.valid_from > p.a AND g.valid_from <= p.b
     AND (g.valid_to IS NULL OR g.valid_to > p.b)),
grant_pairs AS (
    SELECT n.a, n.b, n.scope_id, n.subject_type, n.subject_uuid, n.object_type, n.object_uuid,
           o.permission AS old_value, n.permission AS new_value
      FROM new_g n LEFT JOIN old_g o
        ON o.b = n.b AND o.scope_id = n.scope_id
       AND o.subject_uuid = n.subject_uuid AND o.object_uuid = n.object_uuid
     WHERE o.permission IS NOT n.permission
    UNION ALL
    SELECT o.a, o.b, o.scope_id, o.subject_type, o.subject_uuid, o.object_type, o.object_uuid,
           o.permission, NULL FROM old_g o
     WHERE NOT EXISTS (SELECT 1 FROM new_g n
                        WHERE n.b = o.b AND n.scope_id = o.scope_id
                          AND n.subject_uuid = o.subject_uuid
                          AND n.object_uuid = o.object_uuid)),
grant_changes AS (
    SELECT gp.*,
           CASE WHEN gp.old_value IS NULL THEN
                  CASE WHEN EXISTS (SELECT 1 FROM ok_obs x
                                     WHERE x.scope_id = gp.scope_id AND x.snapshot_id <= gp.a)
                       THEN 'granted'
                       WHEN s.parent_scope_id IS NOT NULL
                        AND EXISTS (SELECT 1 FROM ok_obs x WHERE x.scope_id = s.parent_scope_id
                                       AND x.snapshot_id <= gp.a)
                        AND NOT EXISTS (SELECT 1 FROM objects y
                                         WHERE y.scope_id = s.parent_scope_id
                                           AND y.uuid = s.object_uuid AND y.valid_from <= gp.a
                                           AND (y.valid_to IS NULL OR y.valid_to > gp.a))
                        AND EXISTS (SELECT 1 FROM objects y
                                     WHERE y.scope_id = s.parent_scope_id
                                       AND y.uuid = s.object_uuid AND y.valid_from <= gp.b
                                       AND (y.valid_to IS NULL OR y.valid_to > gp.b))
                       THEN 'granted'
                       ELSE 'baseline' END
                WHEN gp.new_value IS NULL THEN 'revoked'
                WHEN CASE gp.new_value
    WHEN 'read' THEN 1 WHEN 'member' THEN 1
    WHEN 'write' THEN 2 WHEN 'collaborator' THEN 2
    WHEN 'create-repo' THEN 3 WHEN 'create-project' THEN 3
    WHEN 'admin' THEN 4 WHEN 'owner' THEN 4 END > CASE gp.old_value
    WHEN 'read' THEN 1 WHEN 'member' THEN 1
    WHEN 'write' THEN 2 WHEN 'collaborator' THEN 2
    WHEN 'create-repo' THEN 3 WHEN 'create-project' THEN 3
    WHEN 'admin' THEN 4 WHEN 'owner' THEN 4 END THEN 'raised'
                WHEN CASE gp.new_value
    WHEN 'read' THEN 1 WHEN 'member' THEN 1
    WHEN 'write' THEN 2 WHEN 'collaborator' THEN 2
    WHEN 'create-repo' THEN 3 WHEN 'create-project' THEN 3
    WHEN 'admin' THEN 4 WHEN 'owner' THEN 4 END < CASE gp.old_value
    WHEN 'read' THEN 1 WHEN 'member' THEN 1
    WHEN 'write' THEN 2 WHEN 'collaborator' THEN 2
    WHEN 'create-repo' THEN 3 WHEN 'create-project' THEN 3
    WHEN 'admin' THEN 4 WHEN 'owner' THEN 4 END THEN 'lowered'
                ELSE 'changed' END AS change,
           s.source
      FROM grant_pairs gp JOIN scopes s ON s.id = gp.scope_id),
workspaces AS (SELECT uuid, label FROM object_labels WHERE object_type = 'workspace')
SELECT c.b AS snapshot_id,
       (SELECT sn.finished_at FROM snapshots sn WHERE sn.id = c.b) AS snapshot_at,
       c.a AS from_snapshot_id,
       coalesce(w.label, s.workspace_uuid) AS workspace,
       c.object_type,
       coalesce(l.label, c.uuid) AS object_name,
       NULL AS subject_type,
       NULL AS subject_name,
       c.change,
       c.attribute,
       c.old_value,
       c.new_value,
       NULL AS source,
       NULL AS reason,
       NULL AS subject_uuid,
       c.uuid AS object_uuid,
       c.scope_id
  FROM object_changes c
  JOIN scopes s ON s.id = c.scope_id
  LEFT JOIN workspaces w ON w.uuid = s.workspace_uuid
  LEFT JOIN object_labels l ON l.uuid = c.uuid
UNION ALL
SELECT c.b, (SELECT sn.finished_at FROM snapshots sn WHERE sn.id = c.b), c.a,
       coalesce(w.label, s.workspace_uuid),
       c.object_type,
       coalesce(l.label, c.object_uuid),
       c.subject_type,
       coalesce(u.display_name, sl.label, c.subject_uuid),
       CASE WHEN c.source = 'membership' AND c.change = 'granted' THEN 'added to group'
            WHEN c.source = 'membership' AND c.change = 'revoked' THEN 'removed from group'
            ELSE c.change END,
       NULL,
       c.old_value,
       c.new_value,
       c.source,
       CASE WHEN c.source = 'membership' AND c.change IN ('revoked', 'granted') THEN
            'the group grants access to ' || (SELECT count(DISTINCT reached) FROM (
                SELECT x.object_uuid AS reached FROM grants x
                 WHERE x.subject_uuid = c.object_uuid AND x.object_type = 'repository'
                   AND x.valid_from <= c.b AND (x.valid_to IS NULL OR x.valid_to > c.b)
                UNION ALL
                SELECT r.uuid FROM grants x JOIN objects r ON r.parent_uuid = x.object_uuid
                 WHERE x.subject_uuid = c.object_uuid AND x.object_type = 'project'
                   AND x.valid_from <= c.b AND (x.valid_to IS NULL OR x.valid_to > c.b)
                   AND r.object_type = 'repository' AND r.valid_from <= c.b
                   AND (r.valid_to IS NULL OR r.valid_to > c.b)))
            || ' repositories'
            WHEN c.change IN ('revoked', 'granted') THEN
            (SELECT oe.change || ' ' || c.object_type FROM object_events oe
              WHERE oe.b = c.b AND oe.uuid = c.object_uuid
                AND oe.change = CASE c.change WHEN 'revoked' THEN 'deleted'
                                              ELSE 'created' END) END,
       c.subject_uuid,
       c.object_uuid,
       c.scope_id
  FROM grant_changes c
  JOIN scopes s ON s.id = c.scope_id
  LEFT JOIN workspaces w ON w.uuid = s.workspace_uuid
  LEFT JOIN object_labels l ON l.uuid = c.object_uuid
  LEFT JOIN users u ON u.uuid = c.subject_uuid
  LEFT JOIN object_labels sl ON c.subject_type = 'group' AND sl.uuid = c.subject_uuid""",
    ),
    (
        'access_at',
        """SELECT sn.id AS snapshot_id,
       sn.finished_at AS snapshot_at,
       coalesce(w.label, s.workspace_uuid) AS workspace,
       g.object_type,
       coalesce(l.label, g.object_uuid) AS object_name,
       g.subject_type,
       coalesce(u.display_name, sl.label, g.subject_uuid) AS subject_name,
       g.permission,
       s.source AS source,
       (SELECT max(x.snapshot_id) FROM observations x
         WHERE x.scope_id = g.scope_id AND x.outcome = 'ok'
           AND x.snapshot_id <= sn.id) AS observed_in,
       g.subject_uuid,
       g.object_uuid,
       g.scope_id
  FROM snapshots sn
  JOIN grants g ON g.valid_from <= sn.id AND (g.valid_to IS NULL OR g.valid_to > sn.id)
  JOIN scopes s ON s.id = g.scope_id
  LEFT JOIN object_labels l ON l.uuid = g.object_uuid
  LEFT JOIN object_labels w ON w.uuid = s.workspace_uuid
  LEFT JOIN users u ON u.uuid = g.subject_uuid
  LEFT JOIN object_labels sl ON g.subject_type = 'group' AND sl.uuid = g.subject_uuid
 WHERE sn.status = 'complete'""",
    ),
    (
        'current_access',
        """SELECT coalesce(w.label, s.workspace_uuid) AS workspace,
       g.object_type,
       coalesce(l.label, g.object_uuid) AS object_name,
       g.subject_type,
       coalesce(u.display_name, sl.label, g.subject_uuid) AS subject_name,
       g.permission,
       s.source AS source,
       f.observed_in,
       f.observed_at,
       g.valid_from AS since_snapshot,
       g.subject_uuid,
       g.object_uuid,
       g.scope_id
  FROM grants g
  JOIN scopes s ON s.id = g.scope_id
  JOIN scope_freshness f ON f.scope_id = g.scope_id
  LEFT JOIN object_labels l ON l.uuid = g.object_uuid
  LEFT JOIN object_labels w ON w.uuid = s.workspace_uuid
  LEFT JOIN users u ON u.uuid = g.subject_uuid
  LEFT JOIN object_labels sl ON g.subject_type = 'group' AND sl.uuid = g.subject_uuid
 WHERE g.valid_to IS NULL""",
    ),
    (
        'current_workspace_roles',
        """SELECT * FROM current_access WHERE source = 'workspace'""",
    ),
    (
        'current_repository_permissions',
        """SELECT * FROM current_access WHERE source = 'effective'""",
    ),
    (
        'current_explicit_grants',
        """SELECT * FROM current_access
 WHERE source IN ('direct', 'group', 'project', 'project group')""",
    ),
    (
        'current_group_members',
        """SELECT * FROM current_access WHERE source = 'membership'""",
    ),
    (
        'current_objects',
        """SELECT coalesce(w.label, s.workspace_uuid) AS workspace,
       o.object_type,
       l.label AS full_name,
       o.slug,
       o.name,
       o.is_private,
       p.label AS project,
       f.observed_in,
       f.observed_at,
       o.valid_from AS since_snapshot,
       o.uuid,
       o.parent_uuid,
       o.scope_id
  FROM objects o
  JOIN scopes s ON s.id = o.scope_id
  JOIN scope_freshness f ON f.scope_id = o.scope_id
  LEFT JOIN object_labels l ON l.uuid = o.uuid
  LEFT JOIN object_labels w ON w.uuid = s.workspace_uuid
  LEFT JOIN object_labels p ON p.uuid = o.parent_uuid
 WHERE o.valid_to IS NULL""",
    ),
    (
        'current_workspaces',
        """SELECT * FROM current_objects WHERE object_type = 'workspace'""",
    ),
    (
        'current_projects',
        """SELECT * FROM current_objects WHERE object_type = 'project'""",
    ),
    (
        'current_repositories',
        """SELECT * FROM current_objects WHERE object_type = 'repository'""",
    ),
    (
        'current_groups',
        """SELECT * FROM current_objects WHERE object_type = 'group'""",
    ),
    (
        'current_access_sources',
        """WITH
repos AS (
    SELECT o.uuid, o.parent_uuid AS project_uuid, sc.workspace_uuid
      FROM objects o JOIN scopes sc ON sc.id = o.scope_id
     WHERE o.object_type = 'repository' AND o.valid_to IS NULL),
members AS (
    SELECT g.subject_uuid AS user_uuid, g.object_uuid AS group_uuid, g.scope_id
      FROM grants g JOIN scopes sc ON sc.id = g.scope_id
     WHERE sc.kind = 'groups' AND g.valid_to IS NULL),
explicit AS (
    SELECT g.subject_uuid, g.object_uuid, g.permission, g.scope_id, sc.kind
      FROM grants g JOIN scopes sc ON sc.id = g.scope_id
     WHERE sc.kind IN ('repository_user_grants', 'repository_group_grants',
                       'project_user_grants', 'project_group_grants', 'workspace_roles')
       AND g.valid_to IS NULL),
effective AS (
    SELECT g.object_uuid AS repository_uuid, g.subject_uuid AS user_uuid, g.permission,
           g.scope_id
      FROM grants g JOIN scopes sc ON sc.id = g.scope_id
     WHERE sc.kind = 'repository_permissions' AND g.valid_to IS NULL),
sources AS (
    SELECT r.uuid AS repository_uuid, e.subject_uuid AS user_uuid, 'direct' AS source,
           NULL AS group_uuid, NULL AS project_uuid, e.permission AS granted,
           e.scope_id, NULL AS membership_scope_id
      FROM explicit e JOIN repos r ON r.uuid = e.object_uuid
     WHERE e.kind = 'repository_user_grants'
    UNION ALL
    SELECT r.uuid, m.user_uuid, 'group', e.subject_uuid, NULL, e.permission, e.scope_id,
           m.scope_id
      FROM explicit e JOIN repos r ON r.uuid = e.object_uuid
      JOIN members m ON m.group_uuid = e.subject_uuid
     WHERE e.kind = 'repository_group_grants'
    UNION ALL
    SELECT r.uuid, e.subject_uuid, 'project', NULL, e.object_uuid, e.permission, e.scope_id,
           NULL
      FROM explicit e JOIN repos r ON r.project_uuid = e.object_uuid
     WHERE e.kind = 'project_user_grants'
    UNION ALL
    SELECT r.uuid, m.user_uuid, 'project group', e.subject_uuid, e.object_uuid, e.permission,
           e.scope_id, m.scope_id
      FROM explicit e JOIN repos r ON r.project_uuid = e.object_uuid
      JOIN members m ON m.group_uuid = e.subject_uuid
     WHERE e.kind = 'project_group_grants'
    UNION ALL
    SELECT r.uuid, e.subject_uuid, 'workspace owner', NULL, NULL, 'admin', e.scope_id, NULL
      FROM explicit e JOIN repos r ON r.workspace_uuid = e.object_uuid
     WHERE e.kind = 'workspace_roles' AND e.permission = 'owner'),
joined AS (
    SELECT s.repository_uuid, s.user_uuid, ef.permission AS effective, s.source, s.group_uuid,
           s.project_uuid, s.granted, s.scope_id, s.membership_scope_id,
           ef.scope_id AS effective_scope_id
      FROM sources s LEFT JOIN effective ef
        ON ef.repository_uuid = s.repository_uuid AND ef.user_uuid = s.user_uuid
    UNION ALL
    SELECT ef.repository_uuid, ef.user_uuid, ef.permission, NULL, NULL, NULL, NULL, NULL, NULL,
           ef.scope_id
      FROM effective ef
     WHERE NOT EXISTS (SELECT 1 FROM sources s WHERE s.repository_uuid = ef.repository_uuid
                          AND s.user_uuid = ef.user_uuid))
SELECT coalesce(wl.label, sc.workspace_uuid) AS workspace,
       coalesce(rl.label, j.repository_uuid) AS repository,
       coalesce(u.display_name, j.user_uuid) AS user_name,
       j.effective,
       j.source,
       j.granted,
       gl.label AS via_group,
       pl.label AS via_project,
       (SELECT max(x.snapshot_id) FROM observations x
         WHERE x.scope_id = j.scope_id AND x.outcome = 'ok') AS source_observed_in,
       (SELECT max(x.snapshot_id) FROM observations x
         WHERE x.scope_id = j.membership_scope_id AND x.outcome = 'ok') AS membership_observed_in,
       (SELECT max(x.snapshot_id) FROM observations x
         WHERE x.scope_id = j.effective_scope_id AND x.outcome = 'ok') AS effective_observed_in,
       j.user_uuid,
       j.repository_uuid,
       j.group_uuid,
       j.project_uuid
  FROM joined j
  LEFT JOIN labels rl ON rl.uuid = j.repository_uuid
  LEFT JOIN labels gl ON gl.uuid = j.group_uuid
  LEFT JOIN labels pl ON pl.uuid = j.project_uuid
  LEFT JOIN scopes sc ON sc.id = coalesce(j.effective_scope_id, j.scope_id)
  LEFT JOIN labels wl ON wl.uuid = sc.workspace_uuid
  LEFT JOIN users u ON u.uuid = j.user_uuid""",
    ),
]
