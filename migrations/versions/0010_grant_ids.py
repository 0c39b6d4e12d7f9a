"""Grants refer to their subject and object by an integer id, not by their uuid.

Each grant version held its subject's and its object's uuid as text (38 characters each), in the
table and again in four of its indexes: at ``huge`` 4.7 million open grants took 1.7 GB, and
the merge spent its time sorting and indexing the uuids. Now:

- ``names`` gives every uuid an integer id (``names.id``, the table's rowid) beside its name;
- ``grant_versions`` holds the versions, each with ``subject_id`` and ``object_id`` (ids in
  ``names``), and the indexes of ``grants`` by id;
- ``grants`` is a view of ``grant_versions`` with the uuids, as the table had them, for scripts
  that read it;
- ``access_at``, ``current_access``, ``current_access_sources`` and ``access_changes`` read
  ``grant_versions`` and name each row through ``names`` by id.

Version ids are kept, so the change log's entries name the same versions. At ``huge`` a first
night's database is about a third of its size, and the merges about a third of their time.

The SQL is written out in full so that this revision never changes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op
from alembic.script import ScriptDirectory

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: ``names`` with an integer id: the table's rowid, never reused (every grant refers to one).
NAMES_WITH_IDS = (
    "CREATE TABLE names_with_ids (id INTEGER NOT NULL, uuid TEXT NOT NULL, name TEXT NOT NULL, "
    "CONSTRAINT pk_names PRIMARY KEY (id), CONSTRAINT uq_names_uuid UNIQUE (uuid))",
    "INSERT INTO names_with_ids (uuid, name) SELECT uuid, name FROM names ORDER BY uuid",
    "INSERT OR IGNORE INTO names_with_ids (uuid, name) "
    "SELECT DISTINCT subject_uuid, subject_uuid FROM grants",
    "INSERT OR IGNORE INTO names_with_ids (uuid, name) "
    "SELECT DISTINCT object_uuid, object_uuid FROM grants",
    "DROP TABLE names",
    "ALTER TABLE names_with_ids RENAME TO names",
    "CREATE INDEX ix_names_name ON names (name)",
)
GRANT_VERSIONS = (
    "CREATE TABLE grant_versions (id INTEGER NOT NULL, scope_id INTEGER NOT NULL, "
    "subject_type TEXT NOT NULL, subject_id INTEGER NOT NULL, object_type TEXT NOT NULL, "
    "object_id INTEGER NOT NULL, permission TEXT NOT NULL, valid_from INTEGER NOT NULL, "
    "valid_to INTEGER, CONSTRAINT pk_grant_versions PRIMARY KEY (id), "
    "CONSTRAINT fk_grant_versions_scope_id_scopes FOREIGN KEY(scope_id) REFERENCES scopes (id), "
    "CONSTRAINT fk_grant_versions_subject_id_names FOREIGN KEY(subject_id) REFERENCES names (id), "
    "CONSTRAINT fk_grant_versions_object_id_names FOREIGN KEY(object_id) REFERENCES names (id))",
    """INSERT INTO grant_versions (id, scope_id, subject_type, subject_id, object_type, object_id,
                            permission, valid_from, valid_to)
       SELECT g.id, g.scope_id, g.subject_type, s.id, g.object_type, o.id, g.permission,
              g.valid_from, g.valid_to
         FROM grants g JOIN names s ON s.uuid = g.subject_uuid
         JOIN names o ON o.uuid = g.object_uuid
        ORDER BY g.id""",
    "DROP TABLE grants",
    "CREATE UNIQUE INDEX ix_grant_versions_open ON grant_versions (scope_id, subject_id, "
    "object_id) WHERE valid_to IS NULL",
    "CREATE INDEX ix_grant_versions_subject ON grant_versions (subject_id)",
    # With the subject: who-can-access at a snapshot asks for one user's versions on one
    # repository, among the thousands of versions of the repository (0.9 s to 0.27 s at huge).
    "CREATE INDEX ix_grant_versions_object ON grant_versions (object_id, subject_id)",
    "CREATE INDEX ix_grant_versions_valid_from ON grant_versions (valid_from)",
    "CREATE INDEX ix_grant_versions_valid_to ON grant_versions (valid_to) "
    "WHERE valid_to IS NOT NULL",
    "ANALYZE names",
)
#: The grants as the table had them, for what reads them (a script, an older query).
GRANTS_VIEW = """SELECT g.id, g.scope_id, g.subject_type, s.uuid AS subject_uuid, g.object_type,
       o.uuid AS object_uuid, g.permission, g.valid_from, g.valid_to
  FROM grant_versions g
  JOIN names s ON s.id = g.subject_id
  JOIN names o ON o.id = g.object_id"""

_GRANT_COLUMNS = """w.name AS workspace,
       g.object_type,
       l.name AS object_name,
       g.subject_type,
       sj.name AS subject_name,
       g.permission,
       s.source AS source"""
_GRANT_NAMES = """  LEFT JOIN scopes s ON s.id = g.scope_id
  LEFT JOIN names w ON w.uuid = s.workspace_uuid
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
    (
        "current_access_sources",
        """WITH
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
      FROM scopes efs
      JOIN grant_versions ef ON ef.scope_id = efs.id AND ef.valid_to IS NULL
      LEFT JOIN names rl ON rl.id = ef.object_id
      LEFT JOIN names ul ON ul.id = ef.subject_id
      LEFT JOIN names wl ON wl.uuid = efs.object_uuid
     WHERE efs.kind = 'repository_permissions'
       AND NOT EXISTS (
           SELECT 1 FROM repos r
            WHERE r.id = ef.object_id
              AND (EXISTS (SELECT 1 FROM scopes es JOIN grant_versions e ON e.scope_id = es.id
     WHERE es.kind = 'repository_user_grants' AND es.object_uuid = r.uuid
       AND e.object_id = r.id AND e.subject_id = ef.subject_id
       AND e.valid_to IS NULL)
           OR EXISTS (SELECT 1 FROM scopes es JOIN grant_versions e ON e.scope_id = es.id
      JOIN scopes ms
        ON ms.kind = 'groups' AND ms.object_uuid = r.workspace_uuid
      JOIN grant_versions m ON m.scope_id = ms.id AND m.object_id = e.subject_id
       AND m.valid_to IS NULL
     WHERE es.kind = 'repository_group_grants' AND es.object_uuid = r.uuid
       AND e.object_id = r.id AND m.subject_id = ef.subject_id
       AND e.valid_to IS NULL)
           OR EXISTS (SELECT 1 FROM scopes es JOIN grant_versions e ON e.scope_id = es.id
     WHERE es.kind = 'project_user_grants' AND es.object_uuid = r.project_uuid
       AND e.object_id = r.project_id AND e.subject_id = ef.subject_id
       AND e.valid_to IS NULL)
           OR EXISTS (SELECT 1 FROM scopes es JOIN grant_versions e ON e.scope_id = es.id
      JOIN scopes ms
        ON ms.kind = 'groups' AND ms.object_uuid = r.workspace_uuid
      JOIN grant_versions m ON m.scope_id = ms.id AND m.object_id = e.subject_id
       AND m.valid_to IS NULL
     WHERE es.kind = 'project_group_grants' AND es.object_uuid = r.project_uuid
       AND e.object_id = r.project_id AND m.subject_id = ef.subject_id
       AND e.valid_to IS NULL)
           OR EXISTS (SELECT 1 FROM scopes es JOIN grant_versions e ON e.scope_id = es.id
     WHERE es.kind = 'workspace_roles' AND es.object_uuid = r.workspace_uuid
       AND e.object_id = r.workspace_id AND e.subject_id = ef.subject_id
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
    (
        "access_changes",
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
  FROM snapshots sn
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
  FROM snapshots sn
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
  FROM snapshots sn
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
  FROM snapshots sn
  CROSS JOIN grant_versions g ON g.valid_from = sn.id
  CROSS JOIN baseline_scopes b ON b.snapshot_id = sn.id AND b.scope_id = g.scope_id
  JOIN scopes s ON s.id = b.scope_id
  JOIN names gs ON gs.id = g.subject_id
  JOIN names gn ON gn.id = g.object_id
  LEFT JOIN object_labels w ON w.uuid = s.workspace_uuid AND w.object_type = 'workspace'
  LEFT JOIN object_labels l ON l.uuid = gn.uuid
  LEFT JOIN users u ON u.uuid = gs.uuid
  LEFT JOIN object_labels sl ON g.subject_type = 'group' AND sl.uuid = gs.uuid
 WHERE g.valid_to IS NULL OR g.valid_to > sn.id""",
    ),
]
#: The views that read ``grants``, each from the revision that last defined it.
PREVIOUS = {"access_at": "0008", "current_access": "0008", "current_access_sources": "0006",
            "access_changes": "0004"}


def upgrade() -> None:
    for name, _sql in VIEWS:
        op.execute(f"DROP VIEW {name}")
    # The views left read ``names`` by name: SQLite need not rewrite them for the renaming.
    op.execute("PRAGMA legacy_alter_table = ON")
    try:
        for statement in NAMES_WITH_IDS + GRANT_VERSIONS:
            op.execute(statement)
    finally:
        op.execute("PRAGMA legacy_alter_table = OFF")
    op.execute(f"CREATE VIEW grants AS\n{GRANTS_VIEW}")
    for name, sql in VIEWS:
        op.execute(f"CREATE VIEW {name} AS\n{sql}")


def downgrade() -> None:
    scripts = ScriptDirectory.from_config(op.get_context().config)
    for name, _sql in VIEWS:
        op.execute(f"DROP VIEW {name}")
    op.execute("DROP VIEW grants")
    op.execute(
        "CREATE TABLE grants (id INTEGER NOT NULL, scope_id INTEGER NOT NULL, "
        "subject_type TEXT NOT NULL, subject_uuid TEXT NOT NULL, object_type TEXT NOT NULL, "
        "object_uuid TEXT NOT NULL, permission TEXT NOT NULL, valid_from INTEGER NOT NULL, "
        "valid_to INTEGER, CONSTRAINT pk_grants PRIMARY KEY (id), "
        "CONSTRAINT fk_grants_scope_id_scopes FOREIGN KEY(scope_id) REFERENCES scopes (id))"
    )
    op.execute(f"INSERT INTO grants\n{GRANTS_VIEW}\n ORDER BY g.id")
    op.execute("DROP TABLE grant_versions")
    for statement in (
        "CREATE INDEX ix_grants_valid_from ON grants (valid_from)",
        "CREATE UNIQUE INDEX ix_grants_open ON grants (scope_id, subject_uuid, object_uuid) "
        "WHERE valid_to IS NULL",
        "CREATE INDEX ix_grants_subject ON grants (subject_uuid)",
        "CREATE INDEX ix_grants_object ON grants (object_uuid)",
        "CREATE INDEX ix_grants_valid_to ON grants (valid_to) WHERE valid_to IS NOT NULL",
    ):
        op.execute(statement)
    op.execute("PRAGMA legacy_alter_table = ON")
    try:
        for statement in (
            "CREATE TABLE names_by_uuid (uuid TEXT NOT NULL, name TEXT NOT NULL, "
            "CONSTRAINT pk_names PRIMARY KEY (uuid)) WITHOUT ROWID",
            "INSERT INTO names_by_uuid (uuid, name) SELECT uuid, name FROM names",
            "DROP TABLE names",
            "ALTER TABLE names_by_uuid RENAME TO names",
            "CREATE INDEX ix_names_name ON names (name)",
            "ANALYZE names",
        ):
            op.execute(statement)
    finally:
        op.execute("PRAGMA legacy_alter_table = OFF")
    for name, revision_id in PREVIOUS.items():
        module = scripts.get_revision(revision_id).module
        sql = module.ACCESS_CHANGES_SQL if revision_id == "0004" else dict(module.VIEWS)[name]
        op.execute(f"CREATE VIEW {name} AS\n{sql}")
