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


def _valid(alias: str, at_snapshot: bool) -> str:
    # At a snapshot, the unary + keeps SQLite from reading versions through their validity
    # indexes (nearly every version is valid at any snapshot): it starts from a name or a uuid.
    if at_snapshot:
        return (f"+{alias}.valid_from <= :s AND (+{alias}.valid_to IS NULL "
                f"OR +{alias}.valid_to > :s)")
    return f"{alias}.valid_to IS NULL"


def sources_sql(*, at_snapshot: bool, repository: bool = False, user: bool = False) -> str:
    """The rows described above: at snapshot ``:s`` or on current knowledge; for one repository
    (``:repository``, a uuid) or one user (``:user``, a uuid) when asked.

    Every branch names its own rows, so that SQLite pushes a filter on a name (``repository =
    'acme/api'``, ``user_name = ...``) or a uuid into each branch, which starts from an index:
    no part is read whole unless the question is about everything. A branch reads a source
    through its scope (the repository's user grants, say), which the open versions' index
    (scope, subject, object) finds directly; a grant's object is its scope's object, which
    finds the versions of any snapshot by their object."""

    def v(alias: str) -> str:
        return _valid(alias, at_snapshot)

    def and_v(alias: str) -> str:
        """`` AND`` the versions of ``alias`` valid; at a snapshot, on a line of its own (the
        SQL ``--sql`` prints stays within 100 characters a line)."""
        return f"\n       AND {v(alias)}" if at_snapshot else f" AND {v(alias)}"

    def held(alias: str, kind: str, of: str) -> str:
        """Join the versions of scope ``kind`` of object ``of`` as ``alias``."""
        a = alias
        return (f"JOIN scopes {a}s ON {a}s.kind = '{kind}' AND {a}s.object_uuid = {of}\n"
                f"      JOIN grants {a} ON {a}.scope_id = {a}s.id AND {a}.object_uuid = {of}\n"
                f"       AND {v(a)}")

    def named(alias: str, uuid: str) -> str:
        return f"LEFT JOIN names {alias} ON {alias}.uuid = {uuid}"

    def seen(column: str) -> str:
        upto = "\n           AND x.snapshot_id <= :s" if at_snapshot else ""
        return (f"(SELECT max(x.snapshot_id) FROM observations x\n"
                f"         WHERE x.scope_id = j.{column} AND x.outcome = 'ok'{upto})")

    member = f"""JOIN scopes ms
        ON ms.kind = 'groups' AND ms.object_uuid = r.workspace_uuid
      JOIN grants m ON m.scope_id = ms.id AND m.object_uuid = e.subject_uuid
       AND {v("m")}"""

    def source_exists(kind: str, of: str, *, group: bool = False, owner: bool = False) -> str:
        """Whether a source of ``kind`` on ``of`` (the repository, its project or its
        workspace) reaches the user of the effective row ``ef``."""
        join, who = (f"\n      {member}", "m") if group else ("", "e")
        only = ""
        if owner:
            only = ("\n       " if at_snapshot else " ") + "AND e.permission = 'owner'"
        return (f"EXISTS (SELECT 1 FROM scopes es JOIN grants e ON e.scope_id = es.id{join}\n"
                f"     WHERE es.kind = '{kind}' AND es.object_uuid = {of}\n"
                f"       AND e.object_uuid = {of} AND {who}.subject_uuid = ef.subject_uuid\n"
                f"       AND {v('e')}{only})")

    explained = "\n           OR ".join((
        source_exists("repository_user_grants", "r.uuid"),
        source_exists("repository_group_grants", "r.uuid", group=True),
        source_exists("project_user_grants", "r.project_uuid"),
        source_exists("project_group_grants", "r.project_uuid", group=True),
        source_exists("workspace_roles", "r.workspace_uuid", owner=True),
    ))
    repo_names = f"""{named("rl", "r.uuid")}
      {named("wl", "r.workspace_uuid")}"""
    wanted = []
    if repository:
        wanted.append("j.repository_uuid = :repository")
    if user:
        wanted.append("j.user_uuid = :user")
    where = ("\n WHERE " + " AND ".join(wanted)) if wanted else ""
    return f"""WITH
repos AS NOT MATERIALIZED (
    SELECT o.uuid, o.parent_uuid AS project_uuid, sc.object_uuid AS workspace_uuid
      FROM scopes sc JOIN objects o ON o.scope_id = sc.id
     WHERE sc.kind = 'repositories' AND o.object_type = 'repository'{and_v("o")}),
sources AS NOT MATERIALIZED (
    SELECT wl.name AS workspace, rl.name AS repository, ul.name AS user_name,
           'direct' AS source, e.permission AS granted, NULL AS via_group, NULL AS via_project,
           r.uuid AS repository_uuid, r.workspace_uuid, e.subject_uuid AS user_uuid,
           NULL AS group_uuid, NULL AS project_uuid, e.scope_id, NULL AS membership_scope_id
      FROM repos r
      {held("e", "repository_user_grants", "r.uuid")}
      {repo_names}
      {named("ul", "e.subject_uuid")}
    UNION ALL
    SELECT wl.name, rl.name, ul.name, 'group', e.permission, gl.name, NULL, r.uuid,
           r.workspace_uuid, m.subject_uuid, e.subject_uuid, NULL, e.scope_id, m.scope_id
      FROM repos r
      {held("e", "repository_group_grants", "r.uuid")}
      {member}
      {repo_names}
      {named("ul", "m.subject_uuid")}
      {named("gl", "e.subject_uuid")}
    UNION ALL
    SELECT wl.name, rl.name, ul.name, 'project', e.permission, NULL, pl.name, r.uuid,
           r.workspace_uuid, e.subject_uuid, NULL, e.object_uuid, e.scope_id, NULL
      FROM repos r
      {held("e", "project_user_grants", "r.project_uuid")}
      {repo_names}
      {named("ul", "e.subject_uuid")}
      {named("pl", "e.object_uuid")}
    UNION ALL
    SELECT wl.name, rl.name, ul.name, 'project group', e.permission, gl.name, pl.name,
           r.uuid, r.workspace_uuid, m.subject_uuid, e.subject_uuid, e.object_uuid, e.scope_id,
           m.scope_id
      FROM repos r
      {held("e", "project_group_grants", "r.project_uuid")}
      {member}
      {repo_names}
      {named("ul", "m.subject_uuid")}
      {named("gl", "e.subject_uuid")}
      {named("pl", "e.object_uuid")}
    UNION ALL
    SELECT wl.name, rl.name, ul.name, 'workspace owner', 'admin', NULL, NULL, r.uuid,
           r.workspace_uuid, e.subject_uuid, NULL, NULL, e.scope_id, NULL
      FROM repos r
      {held("e", "workspace_roles", "r.workspace_uuid")}
      {repo_names}
      {named("ul", "e.subject_uuid")}
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
       AND {v("ef")}
    UNION ALL
    SELECT wl.name, rl.name, ul.name, ef.permission, NULL, NULL, NULL, NULL, ef.subject_uuid,
           ef.object_uuid, NULL, NULL, NULL, NULL, ef.scope_id
      FROM scopes efs
      JOIN grants ef ON ef.scope_id = efs.id{and_v("ef")}
      {named("rl", "ef.object_uuid")}
      {named("ul", "ef.subject_uuid")}
      {named("wl", "efs.object_uuid")}
     WHERE efs.kind = 'repository_permissions'
       AND NOT EXISTS (
           SELECT 1 FROM repos r
            WHERE r.uuid = ef.object_uuid
              AND ({explained})))
SELECT j.workspace, j.repository, j.user_name, j.effective, j.source, j.granted, j.via_group,
       j.via_project,
       {seen("scope_id")} AS source_observed_in,
       {seen("membership_scope_id")} AS membership_observed_in,
       {seen("effective_scope_id")} AS effective_observed_in,
       j.user_uuid, j.repository_uuid, j.group_uuid, j.project_uuid
  FROM joined j{where}"""
