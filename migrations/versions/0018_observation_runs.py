"""``observations`` becomes ``observation_runs``: a scope's reads with the same outcome, detail
and requests in consecutive snapshots are one row, and the view ``observations`` shows them as
the table did, a row per scope and snapshot read.

After 365 nights of ``medium`` at 0.5 % of the facts changed a night, the table held 231,000
rows, 3.5 MB: three times one snapshot, and more than everything else the history kept. Nearly
every scope is read alike every night; a row per read kept that nightly. A run keeps the same:
every snapshot from its first to its last read the scope so, and a snapshot between them that
failed or died (it read nothing) ends the runs before it.

The runs are made from the rows: over the snapshots in order (whatever their status), a scope's
reads alike at consecutive snapshots are one run; a closure (a scope closed with its object) is a
run of its own. The table is kept by (``scope_id``, ``outcome``, ``first_snapshot_id``), so a
scope's latest ok read at or before a snapshot is still one look-up: the ok run that starts last
at or before it, cut at it. The views that read ``observations`` (``scope_freshness``,
``current_objects``, ``access_at``, ``current_access``, ``current_access_sources``) read the runs.
Going back makes the rows again from the runs, and the views as they were.

The SQL is written out in full so that this revision never changes.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_VIEWS = ("scope_freshness", "current_objects", "access_at", "current_access",
          "current_access_sources")  # fmt: skip
_REST = "detail TEXT, closure TEXT, requests INTEGER NOT NULL DEFAULT 0"

_OBSERVATIONS_VIEW = """\
CREATE VIEW observations AS
SELECT r.scope_id, r.outcome, sn.id AS snapshot_id, r.detail, r.closure, r.requests
  FROM observation_runs r
  JOIN snapshots sn ON sn.id BETWEEN r.first_snapshot_id AND r.last_snapshot_id"""

# The views as at 0017.

_SCOPE_FRESHNESS_0017 = """\
CREATE VIEW scope_freshness AS
SELECT s.id AS scope_id, s.kind, s.label, s.source,
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
  FROM scopes s"""

_CURRENT_OBJECTS_0017 = """\
CREATE VIEW current_objects AS
SELECT w.name AS workspace,
       o.object_type,
       l.label AS full_name,
       o.slug,
       o.name,
       o.is_private,
       p.label AS project,
       (SELECT max(x.snapshot_id) FROM observations x
         WHERE x.scope_id = o.scope_id AND x.outcome = 'ok') AS observed_in,
       (SELECT sn.finished_at FROM snapshots sn
         WHERE sn.id = (SELECT max(x.snapshot_id) FROM observations x
                         WHERE x.scope_id = o.scope_id AND x.outcome = 'ok')) AS observed_at,
       o.valid_from AS since_snapshot,
       o.uuid,
       o.parent_uuid,
       o.scope_id
  FROM objects o
  LEFT JOIN scopes s ON s.id = o.scope_id
  LEFT JOIN names w ON w.uuid = s.workspace_uuid
  LEFT JOIN labels l ON l.uuid = o.uuid
  LEFT JOIN labels p ON p.uuid = o.parent_uuid
 WHERE o.valid_to IS NULL"""

_ACCESS_AT_0017 = """\
CREATE VIEW access_at AS
SELECT sn.id AS snapshot_id,
       sn.finished_at AS snapshot_at,
       (SELECT w.name FROM names w WHERE w.uuid = s.workspace_uuid) AS workspace,
       g.object_type,
       l.name AS object_name,
       g.subject_type,
       sj.name AS subject_name,
       g.permission,
       s.source AS source,
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
  LEFT JOIN scopes s ON s.id = g.scope_id
  LEFT JOIN names l ON l.id = g.object_id
  LEFT JOIN names sj ON sj.id = g.subject_id
 WHERE sn.status = 'complete'"""

_CURRENT_ACCESS_0017 = """\
CREATE VIEW current_access AS
SELECT (SELECT w.name FROM names w WHERE w.uuid = s.workspace_uuid) AS workspace,
       g.object_type,
       l.name AS object_name,
       g.subject_type,
       sj.name AS subject_name,
       g.permission,
       s.source AS source,
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
  LEFT JOIN scopes s ON s.id = g.scope_id
  LEFT JOIN names l ON l.id = g.object_id
  LEFT JOIN names sj ON sj.id = g.subject_id
 WHERE g.valid_to IS NULL"""

_CURRENT_ACCESS_SOURCES_0017 = """\
CREATE VIEW current_access_sources AS
WITH
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


# The views from 0018: the same, reading the runs.

_SCOPE_FRESHNESS_0018 = """\
CREATE VIEW scope_freshness AS
SELECT s.id AS scope_id, s.kind, s.label, s.source,
       (SELECT o.outcome FROM observation_runs o WHERE o.scope_id = s.id
         ORDER BY o.last_snapshot_id DESC LIMIT 1) AS last_outcome,
       (SELECT o.detail FROM observation_runs o WHERE o.scope_id = s.id
         ORDER BY o.last_snapshot_id DESC LIMIT 1) AS last_detail,
       (SELECT max(o.last_snapshot_id) FROM observation_runs o
         WHERE o.scope_id = s.id) AS last_attempted_in,
       (SELECT o.last_snapshot_id FROM observation_runs o
         WHERE o.scope_id = s.id AND o.outcome = 'ok'
         ORDER BY o.first_snapshot_id DESC LIMIT 1) AS observed_in,
       (SELECT sn.finished_at FROM snapshots sn
         WHERE sn.id = (SELECT o.last_snapshot_id FROM observation_runs o
                         WHERE o.scope_id = s.id AND o.outcome = 'ok'
                         ORDER BY o.first_snapshot_id DESC LIMIT 1)) AS observed_at,
       s.workspace_uuid, s.object_uuid
  FROM scopes s"""

_CURRENT_OBJECTS_0018 = """\
CREATE VIEW current_objects AS
SELECT w.name AS workspace,
       o.object_type,
       l.label AS full_name,
       o.slug,
       o.name,
       o.is_private,
       p.label AS project,
       (SELECT x.last_snapshot_id FROM observation_runs x
         WHERE x.scope_id = o.scope_id AND x.outcome = 'ok'
         ORDER BY x.first_snapshot_id DESC LIMIT 1) AS observed_in,
       (SELECT sn.finished_at FROM snapshots sn
         WHERE sn.id = (SELECT x.last_snapshot_id FROM observation_runs x
                         WHERE x.scope_id = o.scope_id AND x.outcome = 'ok'
                         ORDER BY x.first_snapshot_id DESC LIMIT 1)) AS observed_at,
       o.valid_from AS since_snapshot,
       o.uuid,
       o.parent_uuid,
       o.scope_id
  FROM objects o
  LEFT JOIN scopes s ON s.id = o.scope_id
  LEFT JOIN names w ON w.uuid = s.workspace_uuid
  LEFT JOIN labels l ON l.uuid = o.uuid
  LEFT JOIN labels p ON p.uuid = o.parent_uuid
 WHERE o.valid_to IS NULL"""

_ACCESS_AT_0018 = """\
CREATE VIEW access_at AS
SELECT sn.id AS snapshot_id,
       sn.finished_at AS snapshot_at,
       (SELECT w.name FROM names w WHERE w.uuid = s.workspace_uuid) AS workspace,
       g.object_type,
       l.name AS object_name,
       g.subject_type,
       sj.name AS subject_name,
       g.permission,
       s.source AS source,
       (SELECT min(x.last_snapshot_id, sn.id) FROM observation_runs x
         WHERE x.scope_id = g.scope_id AND x.outcome = 'ok'
           AND x.first_snapshot_id <= sn.id
         ORDER BY x.first_snapshot_id DESC LIMIT 1) AS observed_in,
       sj.uuid AS subject_uuid,
       l.uuid AS object_uuid,
       g.scope_id,
       s.workspace_uuid
  FROM snapshots sn
  JOIN grant_versions g
    ON +g.valid_from <= sn.id AND (+g.valid_to IS NULL OR +g.valid_to > sn.id)
  LEFT JOIN scopes s ON s.id = g.scope_id
  LEFT JOIN names l ON l.id = g.object_id
  LEFT JOIN names sj ON sj.id = g.subject_id
 WHERE sn.status = 'complete'"""

_CURRENT_ACCESS_0018 = """\
CREATE VIEW current_access AS
SELECT (SELECT w.name FROM names w WHERE w.uuid = s.workspace_uuid) AS workspace,
       g.object_type,
       l.name AS object_name,
       g.subject_type,
       sj.name AS subject_name,
       g.permission,
       s.source AS source,
       (SELECT x.last_snapshot_id FROM observation_runs x
         WHERE x.scope_id = g.scope_id AND x.outcome = 'ok'
         ORDER BY x.first_snapshot_id DESC LIMIT 1) AS observed_in,
       (SELECT sn.finished_at FROM snapshots sn
         WHERE sn.id = (SELECT x.last_snapshot_id FROM observation_runs x
                         WHERE x.scope_id = g.scope_id AND x.outcome = 'ok'
                         ORDER BY x.first_snapshot_id DESC LIMIT 1)) AS observed_at,
       g.valid_from AS since_snapshot,
       sj.uuid AS subject_uuid,
       l.uuid AS object_uuid,
       g.scope_id,
       s.workspace_uuid
  FROM grant_versions g
  LEFT JOIN scopes s ON s.id = g.scope_id
  LEFT JOIN names l ON l.id = g.object_id
  LEFT JOIN names sj ON sj.id = g.subject_id
 WHERE g.valid_to IS NULL"""

_CURRENT_ACCESS_SOURCES_0018 = """\
CREATE VIEW current_access_sources AS
WITH
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
       (SELECT x.last_snapshot_id FROM observation_runs x
         WHERE x.scope_id = j.scope_id AND x.outcome = 'ok'
         ORDER BY x.first_snapshot_id DESC LIMIT 1) AS source_observed_in,
       (SELECT x.last_snapshot_id FROM observation_runs x
         WHERE x.scope_id = j.membership_scope_id AND x.outcome = 'ok'
         ORDER BY x.first_snapshot_id DESC LIMIT 1) AS membership_observed_in,
       (SELECT x.last_snapshot_id FROM observation_runs x
         WHERE x.scope_id = j.effective_scope_id AND x.outcome = 'ok'
         ORDER BY x.first_snapshot_id DESC LIMIT 1) AS effective_observed_in,
       j.user_uuid, j.repository_uuid, j.group_uuid, j.project_uuid
  FROM joined j"""

UPGRADE = (
    *(f"DROP VIEW {name}" for name in _VIEWS),
    "CREATE TABLE observation_runs (scope_id INTEGER NOT NULL, outcome TEXT NOT NULL, "
    "first_snapshot_id INTEGER NOT NULL, last_snapshot_id INTEGER NOT NULL, "
    f"{_REST}, "
    "CONSTRAINT pk_observation_runs PRIMARY KEY (scope_id, outcome, first_snapshot_id), "
    "CONSTRAINT fk_observation_runs_scope_id_scopes FOREIGN KEY(scope_id) "
    "REFERENCES scopes (id), "
    "CONSTRAINT fk_observation_runs_first_snapshot_id_snapshots FOREIGN KEY(first_snapshot_id) "
    "REFERENCES snapshots (id), "
    "CONSTRAINT fk_observation_runs_last_snapshot_id_snapshots FOREIGN KEY(last_snapshot_id) "
    "REFERENCES snapshots (id)) WITHOUT ROWID",
    # A read's place among the snapshots, less its place among its scope's reads alike: the
    # same for reads alike at consecutive snapshots, so it names their run.
    """INSERT INTO observation_runs (scope_id, outcome, first_snapshot_id, last_snapshot_id,
                                     detail, closure, requests)
       SELECT scope_id, outcome, min(snapshot_id), max(snapshot_id), detail, closure, requests
         FROM (SELECT o.*, p.n - row_number() OVER (
                          PARTITION BY o.scope_id, o.outcome, o.detail, o.closure, o.requests,
                                       CASE WHEN o.closure IS NOT NULL THEN o.snapshot_id END
                          ORDER BY o.snapshot_id) AS island
                 FROM observations o
                 JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM snapshots) p
                   ON p.id = o.snapshot_id)
        GROUP BY scope_id, outcome, detail, closure, requests,
                 CASE WHEN closure IS NOT NULL THEN snapshot_id END, island
        ORDER BY scope_id, outcome, min(snapshot_id)""",
    "DROP TABLE observations",
    _OBSERVATIONS_VIEW,
    _SCOPE_FRESHNESS_0018,
    _CURRENT_OBJECTS_0018,
    _ACCESS_AT_0018,
    _CURRENT_ACCESS_0018,
    _CURRENT_ACCESS_SOURCES_0018,
)
DOWNGRADE = (
    *(f"DROP VIEW {name}" for name in _VIEWS),
    "CREATE TABLE observations_by_scope (scope_id INTEGER NOT NULL, outcome TEXT NOT NULL, "
    f"snapshot_id INTEGER NOT NULL, {_REST}, "
    "CONSTRAINT pk_observations PRIMARY KEY (scope_id, outcome, snapshot_id), "
    "CONSTRAINT fk_observations_snapshot_id_snapshots FOREIGN KEY(snapshot_id) "
    "REFERENCES snapshots (id), "
    "CONSTRAINT fk_observations_scope_id_scopes FOREIGN KEY(scope_id) REFERENCES scopes (id)) "
    "WITHOUT ROWID",
    "INSERT INTO observations_by_scope (scope_id, outcome, snapshot_id, detail, closure, "
    "requests) SELECT scope_id, outcome, snapshot_id, detail, closure, requests "
    "FROM observations ORDER BY scope_id, outcome, snapshot_id",
    "DROP VIEW observations",
    "DROP TABLE observation_runs",
    "ALTER TABLE observations_by_scope RENAME TO observations",
    _SCOPE_FRESHNESS_0017,
    _CURRENT_OBJECTS_0017,
    _ACCESS_AT_0017,
    _CURRENT_ACCESS_0017,
    _CURRENT_ACCESS_SOURCES_0017,
)


def _run(statements: tuple[str, ...]) -> None:
    # Views that read the dropped views (``current_workspace_roles`` reads ``current_access``)
    # are not checked by the renaming: they read them by name once they are made again.
    op.execute("PRAGMA legacy_alter_table = ON")
    try:
        for statement in statements:
            op.execute(statement)
    finally:
        op.execute("PRAGMA legacy_alter_table = OFF")


def upgrade() -> None:
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
