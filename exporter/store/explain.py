"""Why someone can reach a repository: the effective level joined with every recorded source.

Bitbucket lists the effective level (``/permissions/repositories``) apart from its sources
(``permissions-config`` of the repository and of its project, ``/1.0/groups``). ``sources_sql``
joins them, at one snapshot or on current knowledge, into one row per (repository, user,
source):

- ``direct``: a user grant on the repository;
- ``group``: a grant to a group on the repository, for each member of the group;
- ``project``: a user grant on the repository's project;
- ``project group``: a group grant on the project, for each member;
- ``workspace owner``: owners reach every repository of their workspace as admin (Bitbucket's
  rule, not a grant);
- no source (``source`` NULL): effective access that no recorded source explains.

A row with a source and no effective level is a grant to someone without effective access (a
departed user, say). ``who-can-access`` and ``access`` read these rows; the
``current_access_sources`` view is the same SQL on current knowledge.
"""

from __future__ import annotations

#: Explicit and role kinds that can explain effective access.
EXPLAINING_KINDS = """'repository_user_grants', 'repository_group_grants',
                       'project_user_grants', 'project_group_grants', 'workspace_roles'"""


def _valid(alias: str, at_snapshot: bool) -> str:
    if at_snapshot:
        return f"{alias}.valid_from <= :s AND ({alias}.valid_to IS NULL OR {alias}.valid_to > :s)"
    return f"{alias}.valid_to IS NULL"


def sources_sql(*, at_snapshot: bool, repository: bool = False, user: bool = False) -> str:
    """The rows described above: at snapshot ``:s`` or on current knowledge; for one repository
    (``:repository``, a uuid) or one user (``:user``, a uuid) when asked."""

    def v(alias: str) -> str:
        return _valid(alias, at_snapshot)

    repo_filter = " AND o.uuid = :repository" if repository else ""
    member_filter = " AND g.subject_uuid = :user" if user else ""
    effective_filter = (" AND g.object_uuid = :repository" if repository else "") + (
        " AND g.subject_uuid = :user" if user else ""
    )
    if repository:
        explicit_filter = (
            " AND g.object_uuid IN (SELECT uuid FROM repos UNION ALL SELECT project_uuid FROM repos"
            " UNION ALL SELECT workspace_uuid FROM repos)"
        )
    elif user:
        explicit_filter = (
            " AND (g.subject_uuid = :user OR g.subject_uuid IN (SELECT group_uuid FROM members))"
        )
    else:
        explicit_filter = ""
    return f"""WITH
repos AS (
    SELECT o.uuid, o.parent_uuid AS project_uuid, sc.workspace_uuid
      FROM objects o JOIN scopes sc ON sc.id = o.scope_id
     WHERE o.object_type = 'repository' AND {v("o")}{repo_filter}),
members AS (
    SELECT g.subject_uuid AS user_uuid, g.object_uuid AS group_uuid, g.scope_id
      FROM grants g JOIN scopes sc ON sc.id = g.scope_id
     WHERE sc.kind = 'groups' AND {v("g")}{member_filter}),
explicit AS (
    SELECT g.subject_uuid, g.object_uuid, g.permission, g.scope_id, sc.kind
      FROM grants g JOIN scopes sc ON sc.id = g.scope_id
     WHERE sc.kind IN ({EXPLAINING_KINDS})
       AND {v("g")}{explicit_filter}),
effective AS (
    SELECT g.object_uuid AS repository_uuid, g.subject_uuid AS user_uuid, g.permission,
           g.scope_id
      FROM grants g JOIN scopes sc ON sc.id = g.scope_id
     WHERE sc.kind = 'repository_permissions' AND {v("g")}{effective_filter}),
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
     WHERE e.kind = 'workspace_roles' AND e.permission = 'owner'{
         " AND e.subject_uuid = :user" if user else ""}),
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
         WHERE x.scope_id = j.scope_id AND x.outcome = 'ok'{
             " AND x.snapshot_id <= :s" if at_snapshot else ""}) AS source_observed_in,
       (SELECT max(x.snapshot_id) FROM observations x
         WHERE x.scope_id = j.membership_scope_id AND x.outcome = 'ok'{
             " AND x.snapshot_id <= :s" if at_snapshot else ""}) AS membership_observed_in,
       (SELECT max(x.snapshot_id) FROM observations x
         WHERE x.scope_id = j.effective_scope_id AND x.outcome = 'ok'{
             " AND x.snapshot_id <= :s" if at_snapshot else ""}) AS effective_observed_in,
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
  LEFT JOIN users u ON u.uuid = j.user_uuid"""

