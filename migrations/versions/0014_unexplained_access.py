"""``unexplained_access``: the effective access that no recorded source explains, kept as data.

``current_access_sources`` answered "which effective access does no source explain?" by asking
five questions of every effective grant: at ``huge`` (4.7 million grants) over a minute. The merge
now keeps the answer in ``unexplained_access`` (the key of each such open effective grant), and
the view reads it. This revision creates the table, fills it for the current knowledge by sets
(6.5 s at ``huge``), and gives the view its new branch. Its columns and rows are unchanged.

The SQL is written out in full so that this revision never changes.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op
from alembic.script import ScriptDirectory

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

#: Key columns first, in the key's order (SQLite 3.40's quick_check misreads other orders).
CREATE_TABLE = (
    "CREATE TABLE unexplained_access (subject_id INTEGER NOT NULL, object_id INTEGER NOT NULL, "
    "scope_id INTEGER NOT NULL, "
    "CONSTRAINT pk_unexplained_access PRIMARY KEY (subject_id, object_id, scope_id)) "
    "WITHOUT ROWID"
)

#: Every open effective grant that no recorded source explains, gathered by sets.
FILL = (
    "DELETE FROM unexplained_access",
    """CREATE TEMP TABLE unexplained_repos AS
       SELECT rn.id, o.uuid, o.parent_uuid AS project_uuid, sc.object_uuid AS workspace_uuid,
              pn.id AS project_id, wn.id AS workspace_id
         FROM scopes sc JOIN objects o ON o.scope_id = sc.id
         JOIN names rn ON rn.uuid = o.uuid
         LEFT JOIN names pn ON pn.uuid = o.parent_uuid
         LEFT JOIN names wn ON wn.uuid = sc.object_uuid
        WHERE sc.kind = 'repositories' AND o.object_type = 'repository'
          AND o.valid_to IS NULL""",
    "CREATE INDEX temp.unexplained_repos_uuid ON unexplained_repos (uuid, id)",
    "CREATE INDEX temp.unexplained_repos_project ON unexplained_repos (project_uuid, project_id)",
    "CREATE INDEX temp.unexplained_repos_id ON unexplained_repos (id)",
    """CREATE TEMP TABLE unexplained_owners (
           user_id INTEGER NOT NULL, workspace_uuid TEXT NOT NULL, workspace_id INTEGER NOT NULL,
           PRIMARY KEY (user_id, workspace_uuid, workspace_id)) WITHOUT ROWID""",
    """INSERT OR IGNORE INTO temp.unexplained_owners
       SELECT e.subject_id, es.object_uuid, e.object_id
         FROM scopes es CROSS JOIN grant_versions e ON e.scope_id = es.id AND e.valid_to IS NULL
        WHERE es.kind = 'workspace_roles' AND e.permission = 'owner'""",
    "CREATE TEMP TABLE unexplained_pairs_explained (k INTEGER PRIMARY KEY)",
    """INSERT OR IGNORE INTO temp.unexplained_pairs_explained
       SELECT k FROM (
           SELECT e.subject_id * 4294967296 + r.id AS k
             FROM scopes es
            CROSS JOIN grant_versions e ON e.scope_id = es.id AND e.valid_to IS NULL
            CROSS JOIN temp.unexplained_repos r ON r.uuid = es.object_uuid AND r.id = e.object_id
            WHERE es.kind = 'repository_user_grants'
           UNION ALL
           SELECT m.subject_id * 4294967296 + r.id
             FROM scopes es
            CROSS JOIN grant_versions e ON e.scope_id = es.id AND e.valid_to IS NULL
            CROSS JOIN temp.unexplained_repos r ON r.uuid = es.object_uuid AND r.id = e.object_id
            CROSS JOIN scopes ms ON ms.kind = 'groups' AND ms.object_uuid = r.workspace_uuid
            CROSS JOIN grant_versions m ON m.scope_id = ms.id AND m.object_id = e.subject_id
                                       AND m.valid_to IS NULL
            WHERE es.kind = 'repository_group_grants'
           UNION ALL
           SELECT e.subject_id * 4294967296 + r.id
             FROM scopes es
            CROSS JOIN grant_versions e ON e.scope_id = es.id AND e.valid_to IS NULL
            CROSS JOIN temp.unexplained_repos r ON r.project_uuid = es.object_uuid
                                               AND r.project_id = e.object_id
            WHERE es.kind = 'project_user_grants'
           UNION ALL
           SELECT m.subject_id * 4294967296 + r.id
             FROM scopes es
            CROSS JOIN grant_versions e ON e.scope_id = es.id AND e.valid_to IS NULL
            CROSS JOIN temp.unexplained_repos r ON r.project_uuid = es.object_uuid
                                               AND r.project_id = e.object_id
            CROSS JOIN scopes ms ON ms.kind = 'groups' AND ms.object_uuid = r.workspace_uuid
            CROSS JOIN grant_versions m ON m.scope_id = ms.id AND m.object_id = e.subject_id
                                       AND m.valid_to IS NULL
            WHERE es.kind = 'project_group_grants')
        ORDER BY k""",
    """INSERT INTO unexplained_access (scope_id, subject_id, object_id)
       SELECT ef.scope_id, ef.subject_id, ef.object_id
         FROM scopes efs
        CROSS JOIN grant_versions ef ON ef.scope_id = efs.id AND ef.valid_to IS NULL
        WHERE efs.kind = 'repository_permissions'
          AND NOT EXISTS (SELECT 1 FROM temp.unexplained_pairs_explained x
                           WHERE x.k = ef.subject_id * 4294967296 + ef.object_id)
          AND NOT (ef.subject_id IN (SELECT user_id FROM temp.unexplained_owners)
                   AND EXISTS (SELECT 1 FROM temp.unexplained_repos r
                                 JOIN temp.unexplained_owners o
                                   ON o.user_id = ef.subject_id
                                  AND o.workspace_uuid = r.workspace_uuid
                                  AND o.workspace_id = r.workspace_id
                                WHERE r.id = ef.object_id))""",
    "DROP TABLE temp.unexplained_pairs_explained",
    "DROP TABLE temp.unexplained_owners",
    "DROP TABLE temp.unexplained_repos",
)

CURRENT_ACCESS_SOURCES = """WITH
repos AS NOT MATERIALIZED (
    SELECT o.uuid, o.parent_uuid AS project_uuid, sc.object_uuid AS workspace_uuid,
           rn.id, pn.id AS project_id, wn.id AS workspace_id
      FROM scopes sc JOIN objects o ON o.scope_id = sc.id
      JOIN names rn ON rn.uuid = o.uuid
      LEFT JOIN names pn ON pn.uuid = o.parent_uuid
      LEFT JOIN names wn ON wn.uuid = sc.object_uuid
     WHERE sc.kind = 'repositories' AND o.object_type = 'repository' AND o.valid_to IS NULL),
sources AS NOT MATERIALIZED (
    SELECT wl.name AS workspace, rl.name AS repository, ul.name AS user_name,
           'direct' AS source, e.permission AS granted, NULL AS via_group, NULL AS via_project,
           r.uuid AS repository_uuid, r.workspace_uuid, ul.uuid AS user_uuid,
           NULL AS group_uuid, NULL AS project_uuid, e.scope_id, NULL AS membership_scope_id,
           r.id AS repository_id, e.subject_id AS user_id
      FROM repos r
      JOIN scopes es ON es.kind = 'repository_user_grants' AND es.object_uuid = r.uuid
      JOIN grant_versions e ON e.scope_id = es.id AND e.object_id = r.id
       AND e.valid_to IS NULL
      LEFT JOIN names rl ON rl.id = r.id
      LEFT JOIN names wl ON wl.id = r.workspace_id
      LEFT JOIN names ul ON ul.id = e.subject_id
    UNION ALL
    SELECT wl.name, rl.name, ul.name, 'group', e.permission, gl.name, NULL, r.uuid,
           r.workspace_uuid, ul.uuid, gl.uuid, NULL, e.scope_id, m.scope_id, r.id, m.subject_id
      FROM repos r
      JOIN scopes es ON es.kind = 'repository_group_grants' AND es.object_uuid = r.uuid
      JOIN grant_versions e ON e.scope_id = es.id AND e.object_id = r.id
       AND e.valid_to IS NULL
      JOIN scopes ms
        ON ms.kind = 'groups' AND ms.object_uuid = r.workspace_uuid
      JOIN grant_versions m ON m.scope_id = ms.id AND m.object_id = e.subject_id
       AND m.valid_to IS NULL
      LEFT JOIN names rl ON rl.id = r.id
      LEFT JOIN names wl ON wl.id = r.workspace_id
      LEFT JOIN names ul ON ul.id = m.subject_id
      LEFT JOIN names gl ON gl.id = e.subject_id
    UNION ALL
    SELECT wl.name, rl.name, ul.name, 'project', e.permission, NULL, pl.name, r.uuid,
           r.workspace_uuid, ul.uuid, NULL, r.project_uuid, e.scope_id, NULL, r.id, e.subject_id
      FROM repos r
      JOIN scopes es ON es.kind = 'project_user_grants' AND es.object_uuid = r.project_uuid
      JOIN grant_versions e ON e.scope_id = es.id AND e.object_id = r.project_id
       AND e.valid_to IS NULL
      LEFT JOIN names rl ON rl.id = r.id
      LEFT JOIN names wl ON wl.id = r.workspace_id
      LEFT JOIN names ul ON ul.id = e.subject_id
      LEFT JOIN names pl ON pl.id = r.project_id
    UNION ALL
    SELECT wl.name, rl.name, ul.name, 'project group', e.permission, gl.name, pl.name,
           r.uuid, r.workspace_uuid, ul.uuid, gl.uuid, r.project_uuid, e.scope_id,
           m.scope_id, r.id, m.subject_id
      FROM repos r
      JOIN scopes es ON es.kind = 'project_group_grants' AND es.object_uuid = r.project_uuid
      JOIN grant_versions e ON e.scope_id = es.id AND e.object_id = r.project_id
       AND e.valid_to IS NULL
      JOIN scopes ms
        ON ms.kind = 'groups' AND ms.object_uuid = r.workspace_uuid
      JOIN grant_versions m ON m.scope_id = ms.id AND m.object_id = e.subject_id
       AND m.valid_to IS NULL
      LEFT JOIN names rl ON rl.id = r.id
      LEFT JOIN names wl ON wl.id = r.workspace_id
      LEFT JOIN names ul ON ul.id = m.subject_id
      LEFT JOIN names gl ON gl.id = e.subject_id
      LEFT JOIN names pl ON pl.id = r.project_id
    UNION ALL
    SELECT wl.name, rl.name, ul.name, 'workspace owner', 'admin', NULL, NULL, r.uuid,
           r.workspace_uuid, ul.uuid, NULL, NULL, e.scope_id, NULL, r.id, e.subject_id
      FROM repos r
      JOIN scopes es ON es.kind = 'workspace_roles' AND es.object_uuid = r.workspace_uuid
      JOIN grant_versions e ON e.scope_id = es.id AND e.object_id = r.workspace_id
       AND e.valid_to IS NULL
      LEFT JOIN names rl ON rl.id = r.id
      LEFT JOIN names wl ON wl.id = r.workspace_id
      LEFT JOIN names ul ON ul.id = e.subject_id
     WHERE e.permission = 'owner'),
joined AS NOT MATERIALIZED (
    SELECT s.workspace, s.repository, s.user_name, ef.permission AS effective, s.source,
           s.granted, s.via_group, s.via_project, s.user_uuid, s.repository_uuid, s.group_uuid,
           s.project_uuid, s.scope_id, s.membership_scope_id, ef.scope_id AS effective_scope_id,
           s.user_id
      FROM sources s
      LEFT JOIN grant_versions ef
        ON ef.scope_id = (SELECT x.id FROM scopes x WHERE x.kind = 'repository_permissions'
                             AND x.object_uuid = s.workspace_uuid)
       AND ef.subject_id = s.user_id AND ef.object_id = s.repository_id
       AND ef.valid_to IS NULL
    UNION ALL
    SELECT wl.name, rl.name, ul.name, ef.permission, NULL, NULL, NULL, NULL, ul.uuid,
           rl.uuid, NULL, NULL, NULL, NULL, ef.scope_id, ef.subject_id
      FROM unexplained_access ua
      JOIN grant_versions ef ON ef.scope_id = ua.scope_id AND ef.subject_id = ua.subject_id
       AND ef.object_id = ua.object_id AND ef.valid_to IS NULL
      JOIN scopes efs ON efs.id = ef.scope_id
      LEFT JOIN names rl ON rl.id = ef.object_id
      LEFT JOIN names ul ON ul.id = ef.subject_id
      LEFT JOIN names wl ON wl.uuid = efs.object_uuid)
SELECT j.workspace, j.repository, j.user_name, j.effective, j.source, j.granted, j.via_group,
       j.via_project,
       (SELECT max(x.snapshot_id) FROM observations x
         WHERE x.scope_id = j.scope_id AND x.outcome = 'ok') AS source_observed_in,
       (SELECT max(x.snapshot_id) FROM observations x
         WHERE x.scope_id = j.membership_scope_id AND x.outcome = 'ok') AS membership_observed_in,
       (SELECT max(x.snapshot_id) FROM observations x
         WHERE x.scope_id = j.effective_scope_id AND x.outcome = 'ok') AS effective_observed_in,
       j.user_uuid, j.repository_uuid, j.group_uuid, j.project_uuid
  FROM joined j"""


def upgrade() -> None:
    op.execute(CREATE_TABLE)
    for statement in FILL:
        op.execute(statement)
    op.execute("DROP VIEW current_access_sources")
    op.execute(f"CREATE VIEW current_access_sources AS\n{CURRENT_ACCESS_SOURCES}")


def downgrade() -> None:
    module = ScriptDirectory.from_config(op.get_context().config).get_revision("0010").module
    op.execute("DROP VIEW current_access_sources")
    previous = dict(module.VIEWS)["current_access_sources"]
    op.execute(f"CREATE VIEW current_access_sources AS\n{previous}")
    op.execute("DROP TABLE unexplained_access")
