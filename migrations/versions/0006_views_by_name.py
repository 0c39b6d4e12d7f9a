"""Views that start from what they are asked about: a name, a uuid, a snapshot.

A filter on a view's name column (``subject_name = 'Ada Lovelace'``, ``repository =
'acme/api'``) read every current grant at ``huge`` (4.7 million) and computed each row's name to
compare it, because the views built names with ``coalesce`` from three tables: 10 s and more in
the ``sqlite3`` shell, and more than a minute for ``current_access_sources``, which materialized
its parts whole. Now:

- ``names`` holds the name each uuid shows as (a user's display name, an object's label, else
  the uuid itself), indexed by name, and the views show it as it is: SQLite starts from the name.
- ``labels`` is indexed by label (``current_objects.full_name`` and ``project``).
- ``current_access_sources`` names its rows in every branch and reads each source through its
  scope, so that a filter on a name or a uuid reaches each branch; effective access no source
  explains is found by asking per row whether a source exists.
- The ``valid_to`` indexes hold closed versions only: the views' ``valid_to IS NULL`` uses the
  indexes of open versions, which start with the scope, instead of reading nearly every row
  through the index of ``valid_to``.
- The joins that only add columns are outer joins on unique keys, which SQLite leaves out when
  a query does not use their columns (``count(*)`` of a snapshot reads ``grants`` alone).
- ``ANALYZE`` keeps statistics on the small tables (scopes, objects, labels, names).

The SQL is written out in full so that this revision never changes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op
from alembic.script import ScriptDirectory

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

FILL_NAMES = (
    "DELETE FROM names",
    "INSERT INTO names (uuid, name) SELECT uuid, display_name FROM users",
    "INSERT OR IGNORE INTO names (uuid, name) SELECT uuid, label FROM labels",
    "INSERT OR IGNORE INTO names (uuid, name) SELECT DISTINCT subject_uuid, subject_uuid "
    "FROM grants",
    "INSERT OR IGNORE INTO names (uuid, name) SELECT DISTINCT object_uuid, object_uuid FROM grants",
    "INSERT OR IGNORE INTO names (uuid, name) SELECT DISTINCT workspace_uuid, workspace_uuid "
    "FROM scopes",
)
ANALYZE_SMALL = ("ANALYZE scopes", "ANALYZE objects", "ANALYZE labels", "ANALYZE names")

_OBSERVED_IN = """(SELECT max(x.snapshot_id) FROM observations x
         WHERE x.scope_id = {v}.scope_id AND x.outcome = 'ok')"""
_OBSERVED_AT = """(SELECT sn.finished_at FROM snapshots sn
         WHERE sn.id = (SELECT max(x.snapshot_id) FROM observations x
                         WHERE x.scope_id = {v}.scope_id AND x.outcome = 'ok'))"""

#: The columns of a grant, named, in ``access_at`` and ``current_access``, and their joins.
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
       g.scope_id
  FROM snapshots sn
  JOIN grants g ON +g.valid_from <= sn.id AND (+g.valid_to IS NULL OR +g.valid_to > sn.id)
{_GRANT_NAMES}
 WHERE sn.status = 'complete'""",
    ),
    (
        "current_access",
        f"""SELECT {_GRANT_COLUMNS},
       {_OBSERVED_IN.format(v="g")} AS observed_in,
       {_OBSERVED_AT.format(v="g")} AS observed_at,
       g.valid_from AS since_snapshot,
       g.subject_uuid,
       g.object_uuid,
       g.scope_id
  FROM grants g
{_GRANT_NAMES}
 WHERE g.valid_to IS NULL""",
    ),
    (
        "current_objects",
        f"""SELECT w.name AS workspace,
       o.object_type,
       l.label AS full_name,
       o.slug,
       o.name,
       o.is_private,
       p.label AS project,
       {_OBSERVED_IN.format(v="o")} AS observed_in,
       {_OBSERVED_AT.format(v="o")} AS observed_at,
       o.valid_from AS since_snapshot,
       o.uuid,
       o.parent_uuid,
       o.scope_id
  FROM objects o
  LEFT JOIN scopes s ON s.id = o.scope_id
  LEFT JOIN names w ON w.uuid = s.workspace_uuid
  LEFT JOIN labels l ON l.uuid = o.uuid
  LEFT JOIN labels p ON p.uuid = o.parent_uuid
 WHERE o.valid_to IS NULL""",
    ),
    (
        "current_access_sources",
        """WITH
repos AS NOT MATERIALIZED (
    SELECT o.uuid, o.parent_uuid AS project_uuid, sc.object_uuid AS workspace_uuid
      FROM scopes sc JOIN objects o ON o.scope_id = sc.id
     WHERE sc.kind = 'repositories' AND o.object_type = 'repository' AND o.valid_to IS NULL),
sources AS NOT MATERIALIZED (
    SELECT wl.name AS workspace, rl.name AS repository, ul.name AS user_name,
           'direct' AS source, e.permission AS granted, NULL AS via_group, NULL AS via_project,
           r.uuid AS repository_uuid, r.workspace_uuid, e.subject_uuid AS user_uuid,
           NULL AS group_uuid, NULL AS project_uuid, e.scope_id, NULL AS membership_scope_id
      FROM repos r
      JOIN scopes es ON es.kind = 'repository_user_grants' AND es.object_uuid = r.uuid
      JOIN grants e ON e.scope_id = es.id AND e.object_uuid = r.uuid
       AND e.valid_to IS NULL
      LEFT JOIN names rl ON rl.uuid = r.uuid
      LEFT JOIN names wl ON wl.uuid = r.workspace_uuid
      LEFT JOIN names ul ON ul.uuid = e.subject_uuid
    UNION ALL
    SELECT wl.name, rl.name, ul.name, 'group', e.permission, gl.name, NULL, r.uuid,
           r.workspace_uuid, m.subject_uuid, e.subject_uuid, NULL, e.scope_id, m.scope_id
      FROM repos r
      JOIN scopes es ON es.kind = 'repository_group_grants' AND es.object_uuid = r.uuid
      JOIN grants e ON e.scope_id = es.id AND e.object_uuid = r.uuid
       AND e.valid_to IS NULL
      JOIN scopes ms
        ON ms.kind = 'groups' AND ms.object_uuid = r.workspace_uuid
      JOIN grants m ON m.scope_id = ms.id AND m.object_uuid = e.subject_uuid
       AND m.valid_to IS NULL
      LEFT JOIN names rl ON rl.uuid = r.uuid
      LEFT JOIN names wl ON wl.uuid = r.workspace_uuid
      LEFT JOIN names ul ON ul.uuid = m.subject_uuid
      LEFT JOIN names gl ON gl.uuid = e.subject_uuid
    UNION ALL
    SELECT wl.name, rl.name, ul.name, 'project', e.permission, NULL, pl.name, r.uuid,
           r.workspace_uuid, e.subject_uuid, NULL, e.object_uuid, e.scope_id, NULL
      FROM repos r
      JOIN scopes es ON es.kind = 'project_user_grants' AND es.object_uuid = r.project_uuid
      JOIN grants e ON e.scope_id = es.id AND e.object_uuid = r.project_uuid
       AND e.valid_to IS NULL
      LEFT JOIN names rl ON rl.uuid = r.uuid
      LEFT JOIN names wl ON wl.uuid = r.workspace_uuid
      LEFT JOIN names ul ON ul.uuid = e.subject_uuid
      LEFT JOIN names pl ON pl.uuid = e.object_uuid
    UNION ALL
    SELECT wl.name, rl.name, ul.name, 'project group', e.permission, gl.name, pl.name,
           r.uuid, r.workspace_uuid, m.subject_uuid, e.subject_uuid, e.object_uuid, e.scope_id,
           m.scope_id
      FROM repos r
      JOIN scopes es ON es.kind = 'project_group_grants' AND es.object_uuid = r.project_uuid
      JOIN grants e ON e.scope_id = es.id AND e.object_uuid = r.project_uuid
       AND e.valid_to IS NULL
      JOIN scopes ms
        ON ms.kind = 'groups' AND ms.object_uuid = r.workspace_uuid
      JOIN grants m ON m.scope_id = ms.id AND m.object_uuid = e.subject_uuid
       AND m.valid_to IS NULL
      LEFT JOIN names rl ON rl.uuid = r.uuid
      LEFT JOIN names wl ON wl.uuid = r.workspace_uuid
      LEFT JOIN names ul ON ul.uuid = m.subject_uuid
      LEFT JOIN names gl ON gl.uuid = e.subject_uuid
      LEFT JOIN names pl ON pl.uuid = e.object_uuid
    UNION ALL
    SELECT wl.name, rl.name, ul.name, 'workspace owner', 'admin', NULL, NULL, r.uuid,
           r.workspace_uuid, e.subject_uuid, NULL, NULL, e.scope_id, NULL
      FROM repos r
      JOIN scopes es ON es.kind = 'workspace_roles' AND es.object_uuid = r.workspace_uuid
      JOIN grants e ON e.scope_id = es.id AND e.object_uuid = r.workspace_uuid
       AND e.valid_to IS NULL
      LEFT JOIN names rl ON rl.uuid = r.uuid
      LEFT JOIN names wl ON wl.uuid = r.workspace_uuid
      LEFT JOIN names ul ON ul.uuid = e.subject_uuid
     WHERE e.permission = 'owner'),
joined AS NOT MATERIALIZED (
    SELECT s.workspace, s.repository, s.user_name, ef.permission AS effective, s.source,
           s.granted, s.via_group, s.via_project, s.user_uuid, s.repository_uuid, s.group_uuid,
           s.project_uuid, s.scope_id, s.membership_scope_id, ef.scope_id AS effective_scope_id
      FROM sources s
      LEFT JOIN grants ef
        ON ef.scope_id = (SELECT x.id FROM scopes x WHERE x.kind = 'repository_permissions'
                             AND x.object_uuid = s.workspace_uuid)
       AND ef.subject_uuid = s.user_uuid AND ef.object_uuid = s.repository_uuid
       AND ef.valid_to IS NULL
    UNION ALL
    SELECT wl.name, rl.name, ul.name, ef.permission, NULL, NULL, NULL, NULL, ef.subject_uuid,
           ef.object_uuid, NULL, NULL, NULL, NULL, ef.scope_id
      FROM scopes efs
      JOIN grants ef ON ef.scope_id = efs.id AND ef.valid_to IS NULL
      LEFT JOIN names rl ON rl.uuid = ef.object_uuid
      LEFT JOIN names ul ON ul.uuid = ef.subject_uuid
      LEFT JOIN names wl ON wl.uuid = efs.object_uuid
     WHERE efs.kind = 'repository_permissions'
       AND NOT EXISTS (
           SELECT 1 FROM repos r
            WHERE r.uuid = ef.object_uuid
              AND (EXISTS (SELECT 1 FROM scopes es JOIN grants e ON e.scope_id = es.id
     WHERE es.kind = 'repository_user_grants' AND es.object_uuid = r.uuid
       AND e.object_uuid = r.uuid AND e.subject_uuid = ef.subject_uuid
       AND e.valid_to IS NULL)
           OR EXISTS (SELECT 1 FROM scopes es JOIN grants e ON e.scope_id = es.id
      JOIN scopes ms
        ON ms.kind = 'groups' AND ms.object_uuid = r.workspace_uuid
      JOIN grants m ON m.scope_id = ms.id AND m.object_uuid = e.subject_uuid
       AND m.valid_to IS NULL
     WHERE es.kind = 'repository_group_grants' AND es.object_uuid = r.uuid
       AND e.object_uuid = r.uuid AND m.subject_uuid = ef.subject_uuid
       AND e.valid_to IS NULL)
           OR EXISTS (SELECT 1 FROM scopes es JOIN grants e ON e.scope_id = es.id
     WHERE es.kind = 'project_user_grants' AND es.object_uuid = r.project_uuid
       AND e.object_uuid = r.project_uuid AND e.subject_uuid = ef.subject_uuid
       AND e.valid_to IS NULL)
           OR EXISTS (SELECT 1 FROM scopes es JOIN grants e ON e.scope_id = es.id
      JOIN scopes ms
        ON ms.kind = 'groups' AND ms.object_uuid = r.workspace_uuid
      JOIN grants m ON m.scope_id = ms.id AND m.object_uuid = e.subject_uuid
       AND m.valid_to IS NULL
     WHERE es.kind = 'project_group_grants' AND es.object_uuid = r.project_uuid
       AND e.object_uuid = r.project_uuid AND m.subject_uuid = ef.subject_uuid
       AND e.valid_to IS NULL)
           OR EXISTS (SELECT 1 FROM scopes es JOIN grants e ON e.scope_id = es.id
     WHERE es.kind = 'workspace_roles' AND es.object_uuid = r.workspace_uuid
       AND e.object_uuid = r.workspace_uuid AND e.subject_uuid = ef.subject_uuid
       AND e.valid_to IS NULL AND e.permission = 'owner'))))
SELECT j.workspace, j.repository, j.user_name, j.effective, j.source, j.granted, j.via_group,
       j.via_project,
       (SELECT max(x.snapshot_id) FROM observations x
         WHERE x.scope_id = j.scope_id AND x.outcome = 'ok') AS source_observed_in,
       (SELECT max(x.snapshot_id) FROM observations x
         WHERE x.scope_id = j.membership_scope_id AND x.outcome = 'ok') AS membership_observed_in,
       (SELECT max(x.snapshot_id) FROM observations x
         WHERE x.scope_id = j.effective_scope_id AND x.outcome = 'ok') AS effective_observed_in,
       j.user_uuid, j.repository_uuid, j.group_uuid, j.project_uuid
  FROM joined j""",
    ),
]


def _validity_indexes(where: str) -> None:
    for table in ("grants", "objects"):
        op.execute(f"DROP INDEX ix_{table}_valid_to")
        op.execute(f"CREATE INDEX ix_{table}_valid_to ON {table} (valid_to){where}")


def upgrade() -> None:
    op.execute(
        "CREATE TABLE names (uuid TEXT NOT NULL, name TEXT NOT NULL, "
        "CONSTRAINT pk_names PRIMARY KEY (uuid)) WITHOUT ROWID"
    )
    op.create_index("ix_names_name", "names", ["name"])
    op.create_index("ix_labels_label", "labels", ["label"])
    _validity_indexes(" WHERE valid_to IS NOT NULL")
    for statement in FILL_NAMES + ANALYZE_SMALL:
        op.execute(statement)
    for name, sql in VIEWS:
        op.execute(f"DROP VIEW {name}")
        op.execute(f"CREATE VIEW {name} AS\n{sql}")


def downgrade() -> None:
    previous = dict(
        ScriptDirectory.from_config(op.get_context().config).get_revision("0003").module.VIEWS
    )
    for name, _sql in VIEWS:
        op.execute(f"DROP VIEW {name}")
        op.execute(f"CREATE VIEW {name} AS\n{previous[name]}")
    _validity_indexes("")
    op.drop_index("ix_labels_label", "labels")
    op.drop_index("ix_names_name", "names")
    op.execute("DROP TABLE names")
    op.execute("DELETE FROM sqlite_stat1 WHERE tbl IN ('scopes', 'objects', 'labels', 'names')")
