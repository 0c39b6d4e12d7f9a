"""The change log as data (``change_log``, ``baseline_scopes``), written when a snapshot merges.

``access_changes`` computed the changes of every pair of consecutive complete snapshots each time
it was read: after a year of nights, a question about last week paid for the whole year. The merge
of each snapshot now writes its changes since the complete snapshot before it, by the rules of
``bbaccess diff``, into ``change_log``: each entry names the versions it compares (``old_id``,
``new_id`` of ``objects`` or ``grants``), whose values and names the view reads. Baseline rows are
not copied: ``baseline_scopes`` names each scope read ok for the first time in a snapshot, and the
view lists the versions that scope opened then. The upgrade writes the log for every complete
snapshot already stored, oldest first, with the same rules.

The SQL is written out in full so that this revision never changes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op
from alembic.script import ScriptDirectory

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)


def upgrade() -> None:
    op.execute(
        "CREATE TABLE change_log (id INTEGER NOT NULL, snapshot_id INTEGER NOT NULL, "
        "from_snapshot_id INTEGER NOT NULL, scope_id INTEGER NOT NULL, fact TEXT NOT NULL, "
        "old_id INTEGER, new_id INTEGER, change TEXT NOT NULL, attribute TEXT, reason TEXT, "
        "CONSTRAINT pk_change_log PRIMARY KEY (id))"
    )
    op.create_index("ix_change_log_snapshot", "change_log", ["snapshot_id"])
    op.execute(
        # Key columns first: SQLite 3.40's quick_check misreads a WITHOUT ROWID table whose key
        # columns are not its first ones, and calls the file damaged.
        "CREATE TABLE baseline_scopes (snapshot_id INTEGER NOT NULL, scope_id INTEGER NOT NULL, "
        "from_snapshot_id INTEGER NOT NULL, "
        "CONSTRAINT pk_baseline_scopes PRIMARY KEY (snapshot_id, scope_id)) WITHOUT ROWID"
    )
    bind = op.get_bind()
    complete = [
        int(sid) for (sid,) in bind.execute(
            sa.text("SELECT id FROM snapshots WHERE status = 'complete' ORDER BY id")
        )
    ]
    if complete:
        log.info("writing the change log of %d stored snapshots", len(complete))
    for a, b in zip([0, *complete], complete, strict=False):
        for statement in LOG_CHANGES:
            bind.execute(sa.text(statement), {"a": a, "b": b})
    op.execute("DROP VIEW access_changes")
    op.execute(f"CREATE VIEW access_changes AS\n{ACCESS_CHANGES_SQL}")


def downgrade() -> None:
    op.execute("DROP VIEW access_changes")
    previous = ScriptDirectory.from_config(op.get_context().config).get_revision("0003")
    op.execute(f"CREATE VIEW access_changes AS\n{dict(previous.module.VIEWS)['access_changes']}")
    op.execute("DROP TABLE baseline_scopes")
    op.execute("DROP TABLE change_log")


#: The rules of the diff for one pair (:a, :b), as common table expressions.
_CHANGES = """WITH
pair(a, b) AS (SELECT :a AS a, :b AS b),
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
                  CASE WHEN EXISTS (SELECT 1 FROM observations x
                                     WHERE x.scope_id = op.scope_id AND x.outcome = 'ok'
                                       AND x.snapshot_id <= op.a)
                       THEN 'created' ELSE 'baseline' END
                WHEN op.new_id IS NULL THEN 'deleted'
                ELSE 'changed' END AS change
      FROM object_pairs op),
attributes(attribute) AS (VALUES ('slug'), ('name'), ('is_private'), ('project')),
object_changes AS (
    SELECT * FROM (
      SELECT e.a, e.b, e.scope_id, e.uuid, e.change, e.old_id, e.new_id,
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
           o.permission AS old_value, n.permission AS new_value, o.id AS old_id, n.id AS new_id
      FROM new_g n LEFT JOIN old_g o
        ON o.b = n.b AND o.scope_id = n.scope_id
       AND o.subject_uuid = n.subject_uuid AND o.object_uuid = n.object_uuid
     WHERE o.permission IS NOT n.permission
    UNION ALL
    SELECT o.a, o.b, o.scope_id, o.subject_type, o.subject_uuid, o.object_type, o.object_uuid,
           o.permission, NULL, o.id, NULL FROM old_g o
     WHERE NOT EXISTS (SELECT 1 FROM new_g n
                        WHERE n.b = o.b AND n.scope_id = o.scope_id
                          AND n.subject_uuid = o.subject_uuid
                          AND n.object_uuid = o.object_uuid)),
grant_changes AS (
    SELECT gp.*,
           CASE WHEN gp.old_value IS NULL THEN
                  CASE WHEN EXISTS (SELECT 1 FROM observations x
                                     WHERE x.scope_id = gp.scope_id AND x.outcome = 'ok'
                                       AND x.snapshot_id <= gp.a)
                       THEN 'granted'
                       WHEN s.parent_scope_id IS NOT NULL
                        AND EXISTS (SELECT 1 FROM observations x
                                     WHERE x.scope_id = s.parent_scope_id AND x.outcome = 'ok'
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
workspaces AS (SELECT uuid, label FROM object_labels WHERE object_type = 'workspace')"""

#: What the merge of snapshot ``:b`` writes, ``:a`` being the complete snapshot before it.
LOG_CHANGES = (
    """INSERT INTO change_log (snapshot_id, from_snapshot_id, scope_id, fact, old_id, new_id,
                        change, attribute, reason)
""" + _CHANGES + """
SELECT c.b, c.a, c.scope_id, 'object', c.old_id, c.new_id, c.change, c.attribute,
       NULL
  FROM object_changes c WHERE c.change <> 'baseline'
UNION ALL
SELECT c.b, c.a, c.scope_id, 'grant', c.old_id, c.new_id,
       CASE WHEN c.source = 'membership' AND c.change = 'granted' THEN 'added to group'
            WHEN c.source = 'membership' AND c.change = 'revoked' THEN 'removed from group'
            ELSE c.change END,
       NULL,
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
                                              ELSE 'created' END) END
  FROM grant_changes c WHERE c.change <> 'baseline'""",
    """INSERT INTO baseline_scopes (snapshot_id, scope_id, from_snapshot_id)
""" + _CHANGES + """
SELECT b, scope_id, a FROM object_changes WHERE change = 'baseline'
UNION
SELECT b, scope_id, a FROM grant_changes WHERE change = 'baseline'""",
)

ACCESS_CHANGES_SQL = """SELECT c.snapshot_id, sn.finished_at AS snapshot_at, c.from_snapshot_id,
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
  FROM snapshots sn
  CROSS JOIN change_log c ON c.snapshot_id = sn.id AND c.fact = 'object'
  JOIN scopes s ON s.id = c.scope_id
  LEFT JOIN objects ov ON ov.id = c.old_id
  LEFT JOIN objects nv ON nv.id = c.new_id
  LEFT JOIN object_labels w ON w.uuid = s.workspace_uuid AND w.object_type = 'workspace'
  LEFT JOIN object_labels l ON l.uuid = coalesce(nv.uuid, ov.uuid)
UNION ALL
SELECT c.snapshot_id, sn.finished_at, c.from_snapshot_id,
       coalesce(w.label, s.workspace_uuid), g.object_type, coalesce(l.label, g.object_uuid),
       g.subject_type, coalesce(u.display_name, sl.label, g.subject_uuid), c.change, NULL,
       og.permission, ng.permission, s.source, c.reason, g.subject_uuid, g.object_uuid,
       c.scope_id
  FROM snapshots sn
  CROSS JOIN change_log c ON c.snapshot_id = sn.id AND c.fact = 'grant'
  JOIN scopes s ON s.id = c.scope_id
  LEFT JOIN grants og ON og.id = c.old_id
  LEFT JOIN grants ng ON ng.id = c.new_id
  JOIN grants g ON g.id = coalesce(c.new_id, c.old_id)
  LEFT JOIN object_labels w ON w.uuid = s.workspace_uuid AND w.object_type = 'workspace'
  LEFT JOIN object_labels l ON l.uuid = g.object_uuid
  LEFT JOIN users u ON u.uuid = g.subject_uuid
  LEFT JOIN object_labels sl ON g.subject_type = 'group' AND sl.uuid = g.subject_uuid
UNION ALL
SELECT b.snapshot_id, sn.finished_at, b.from_snapshot_id,
       coalesce(w.label, s.workspace_uuid), o.object_type, coalesce(l.label, o.uuid),
       NULL, NULL, 'baseline', NULL, NULL, NULL, NULL, NULL, NULL, o.uuid, o.scope_id
  FROM snapshots sn
  CROSS JOIN objects o ON o.valid_from = sn.id
  CROSS JOIN baseline_scopes b ON b.snapshot_id = sn.id AND b.scope_id = o.scope_id
  JOIN scopes s ON s.id = b.scope_id
  LEFT JOIN object_labels w ON w.uuid = s.workspace_uuid AND w.object_type = 'workspace'
  LEFT JOIN object_labels l ON l.uuid = o.uuid
 WHERE o.valid_to IS NULL OR o.valid_to > sn.id
UNION ALL
SELECT b.snapshot_id, sn.finished_at, b.from_snapshot_id,
       coalesce(w.label, s.workspace_uuid), g.object_type, coalesce(l.label, g.object_uuid),
       g.subject_type, coalesce(u.display_name, sl.label, g.subject_uuid), 'baseline', NULL,
       NULL, g.permission, s.source, NULL, g.subject_uuid, g.object_uuid, g.scope_id
  FROM snapshots sn
  CROSS JOIN grants g ON g.valid_from = sn.id
  CROSS JOIN baseline_scopes b ON b.snapshot_id = sn.id AND b.scope_id = g.scope_id
  JOIN scopes s ON s.id = b.scope_id
  LEFT JOIN object_labels w ON w.uuid = s.workspace_uuid AND w.object_type = 'workspace'
  LEFT JOIN object_labels l ON l.uuid = g.object_uuid
  LEFT JOIN users u ON u.uuid = g.subject_uuid
  LEFT JOIN object_labels sl ON g.subject_type = 'group' AND sl.uuid = g.subject_uuid
 WHERE g.valid_to IS NULL OR g.valid_to > sn.id"""
