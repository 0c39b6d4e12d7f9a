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

from exporter.store.sql import latest_ok_read


def _valid(alias: str, at_snapshot: bool) -> str:
    # At a snapshot, the unary + keeps SQLite from reading versions through their validity
    # indexes (nearly every version is valid at any snapshot): it starts from a name or a uuid.
    if at_snapshot:
        return (f"+{alias}.valid_from <= :s AND (+{alias}.valid_to IS NULL "
                f"OR +{alias}.valid_to > :s)")
    return f"{alias}.valid_to IS NULL"


def _id_of(uuid_column: str) -> str:
    """The column of ``repos`` holding the id in ``names`` of ``uuid_column`` (``r.uuid``,
    ``r.project_uuid``, ``r.workspace_uuid``)."""
    return uuid_column.replace("uuid", "id")


def sources_sql(*, at_snapshot: bool, repository: bool = False, user: bool = False) -> str:
    """The rows described above: at snapshot ``:s`` or on current knowledge; for one repository
    (``:repository``, a uuid) or one user (``:user_id``, the user's id in ``names``) when asked.

    Every branch names its own rows, so that SQLite pushes a filter on a name (``repository =
    'acme/api'``, ``user_name = ...``) or a uuid into each branch, which starts from an index:
    no part is read whole unless the question is about everything. A branch reads a source
    through its scope (the repository's user grants, say), which the open versions' index
    (scope, subject, object) finds directly; a grant's object is its scope's object, which
    finds the versions of any snapshot by their object. Versions name their subject and object
    by id in ``names``: ``repos`` looks up each repository's ids (its own, its project's, its
    workspace's) once, and every join between versions compares ids."""

    def v(alias: str) -> str:
        return _valid(alias, at_snapshot)

    def and_v(alias: str) -> str:
        """`` AND`` the versions of ``alias`` valid; at a snapshot, on a line of its own (the
        SQL ``--sql`` prints stays within 100 characters a line)."""
        return f"\n       AND {v(alias)}" if at_snapshot else f" AND {v(alias)}"

    def held(alias: str, kind: str, of: str) -> str:
        """Join the versions of scope ``kind`` of object ``of`` (a uuid column of ``repos``) as
        ``alias``."""
        a, of_id = alias, _id_of(of)
        return (f"JOIN scopes {a}s ON {a}s.kind = '{kind}' AND {a}s.object_uuid = {of}\n"
                f"      JOIN grant_versions {a} ON {a}.scope_id = {a}s.id "
                f"AND {a}.object_id = {of_id}\n"
                f"       AND {v(a)}")

    def named(alias: str, name_id: str) -> str:
        return f"LEFT JOIN names {alias} ON {alias}.id = {name_id}"

    def seen(column: str) -> str:
        return latest_ok_read(f"j.{column}", ":s" if at_snapshot else None)

    member = f"""JOIN scopes ms
        ON ms.kind = 'groups' AND ms.object_uuid = r.workspace_uuid
      JOIN grant_versions m ON m.scope_id = ms.id AND m.object_id = e.subject_id
       AND {v("m")}"""

    def source_exists(kind: str, of: str, *, group: bool = False, owner: bool = False) -> str:
        """Whether a source of ``kind`` on ``of`` (the repository, its project or its
        workspace) reaches the user of the effective row ``ef``."""
        join, who = (f"\n      {member}", "m") if group else ("", "e")
        only = ""
        if owner:
            only = ("\n       " if at_snapshot else " ") + "AND e.permission = 'owner'"
        return (f"EXISTS (SELECT 1 FROM scopes es JOIN grant_versions e "
                f"ON e.scope_id = es.id{join}\n"
                f"     WHERE es.kind = '{kind}' AND es.object_uuid = {of}\n"
                f"       AND e.object_id = {_id_of(of)} "
                f"AND {who}.subject_id = ef.subject_id\n"
                f"       AND {v('e')}{only})")

    explained = "\n           OR ".join((
        source_exists("repository_user_grants", "r.uuid"),
        source_exists("repository_group_grants", "r.uuid", group=True),
        source_exists("project_user_grants", "r.project_uuid"),
        source_exists("project_group_grants", "r.project_uuid", group=True),
        source_exists("workspace_roles", "r.workspace_uuid", owner=True),
    ))
    repo_names = f"""{named("rl", "r.id")}
      {named("wl", "r.workspace_id")}"""
    if at_snapshot:
        unexplained = f"""FROM scopes efs
      JOIN grant_versions ef ON ef.scope_id = efs.id{and_v("ef")}
      {named("rl", "ef.object_id")}
      {named("ul", "ef.subject_id")}
      LEFT JOIN names wl ON wl.uuid = efs.object_uuid
     WHERE efs.kind = 'repository_permissions'
       AND NOT EXISTS (
           SELECT 1 FROM repos r
            WHERE r.id = ef.object_id
              AND ({explained}))"""
    else:  # kept by the merge (``unexplained``): asked of every grant, it took minutes
        unexplained = f"""FROM unexplained_access ua
      JOIN grant_versions ef ON ef.scope_id = ua.scope_id AND ef.subject_id = ua.subject_id
       AND ef.object_id = ua.object_id AND ef.valid_to IS NULL
      JOIN scopes efs ON efs.id = ef.scope_id
      {named("rl", "ef.object_id")}
      {named("ul", "ef.subject_id")}
      LEFT JOIN names wl ON wl.uuid = efs.object_uuid"""
    wanted = []
    if repository:
        wanted.append("j.repository_uuid = :repository")
    if user:
        wanted.append("j.user_id = :user_id")
    where = ("\n WHERE " + " AND ".join(wanted)) if wanted else ""
    return f"""WITH
repos AS NOT MATERIALIZED (
    SELECT o.uuid, o.parent_uuid AS project_uuid, sc.object_uuid AS workspace_uuid,
           rn.id, pn.id AS project_id, wn.id AS workspace_id
      FROM scopes sc JOIN objects o ON o.scope_id = sc.id
      JOIN names rn ON rn.uuid = o.uuid
      LEFT JOIN names pn ON pn.uuid = o.parent_uuid
      LEFT JOIN names wn ON wn.uuid = sc.object_uuid
     WHERE sc.kind = 'repositories' AND o.object_type = 'repository'{and_v("o")}),
sources AS NOT MATERIALIZED (
    SELECT wl.name AS workspace, rl.name AS repository, ul.name AS user_name,
           'direct' AS source, e.permission AS granted, NULL AS via_group, NULL AS via_project,
           r.uuid AS repository_uuid, r.workspace_uuid, ul.uuid AS user_uuid,
           NULL AS group_uuid, NULL AS project_uuid, e.scope_id, NULL AS membership_scope_id,
           r.id AS repository_id, e.subject_id AS user_id
      FROM repos r
      {held("e", "repository_user_grants", "r.uuid")}
      {repo_names}
      {named("ul", "e.subject_id")}
    UNION ALL
    SELECT wl.name, rl.name, ul.name, 'group', e.permission, gl.name, NULL, r.uuid,
           r.workspace_uuid, ul.uuid, gl.uuid, NULL, e.scope_id, m.scope_id, r.id, m.subject_id
      FROM repos r
      {held("e", "repository_group_grants", "r.uuid")}
      {member}
      {repo_names}
      {named("ul", "m.subject_id")}
      {named("gl", "e.subject_id")}
    UNION ALL
    SELECT wl.name, rl.name, ul.name, 'project', e.permission, NULL, pl.name, r.uuid,
           r.workspace_uuid, ul.uuid, NULL, r.project_uuid, e.scope_id, NULL, r.id, e.subject_id
      FROM repos r
      {held("e", "project_user_grants", "r.project_uuid")}
      {repo_names}
      {named("ul", "e.subject_id")}
      {named("pl", "r.project_id")}
    UNION ALL
    SELECT wl.name, rl.name, ul.name, 'project group', e.permission, gl.name, pl.name,
           r.uuid, r.workspace_uuid, ul.uuid, gl.uuid, r.project_uuid, e.scope_id,
           m.scope_id, r.id, m.subject_id
      FROM repos r
      {held("e", "project_group_grants", "r.project_uuid")}
      {member}
      {repo_names}
      {named("ul", "m.subject_id")}
      {named("gl", "e.subject_id")}
      {named("pl", "r.project_id")}
    UNION ALL
    SELECT wl.name, rl.name, ul.name, 'workspace owner', 'admin', NULL, NULL, r.uuid,
           r.workspace_uuid, ul.uuid, NULL, NULL, e.scope_id, NULL, r.id, e.subject_id
      FROM repos r
      {held("e", "workspace_roles", "r.workspace_uuid")}
      {repo_names}
      {named("ul", "e.subject_id")}
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
       AND {v("ef")}
    UNION ALL
    SELECT wl.name, rl.name, ul.name, ef.permission, NULL, NULL, NULL, NULL, ul.uuid,
           rl.uuid, NULL, NULL, NULL, NULL, ef.scope_id, ef.subject_id
      {unexplained})
SELECT j.workspace, j.repository, j.user_name, j.effective, j.source, j.granted, j.via_group,
       j.via_project,
       {seen("scope_id")} AS source_observed_in,
       {seen("membership_scope_id")} AS membership_observed_in,
       {seen("effective_scope_id")} AS effective_observed_in,
       j.user_uuid, j.repository_uuid, j.group_uuid, j.project_uuid
  FROM joined j{where}"""
