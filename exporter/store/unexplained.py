"""The effective access that no recorded source explains, kept as data by the merge.

``current_access_sources`` lists, beside the sources of every grant, the effective grants that no
recorded source explains (``source`` NULL). Asked of every grant, that is five questions of each
(its repository's user and group grants, its project's, its workspace's owners): at ``huge``, 4.7
million grants, over a minute. The table ``unexplained_access`` keeps the answer on current
knowledge instead, by the key of each such effective grant, and the view reads it.

The merge brings it up to date in its own transaction (``update_unexplained``):

- a bulk merge (a first night) rebuilds it whole, by sets: every (user, repository) pair a source
  explains is gathered once, then the effective grants outside them are kept (6.5 s at ``huge``);
- any other merge asks again, grant by grant with the view's own question
  (``explain.explained_sql``), only of the (user, repository) pairs whose answer the night may
  have changed: those of every grant version opened or closed tonight (an effective grant, a
  user grant; a group's grant for each member, a project's for each repository in it; a
  membership for each repository its group reaches; a workspace owner for each repository of the
  workspace) and every effective grant of a repository whose listing changed.

The store's tests hold the view to the same question asked of every grant at the latest
snapshot (``who-can-access``'s SQL), night after night, through both ways.
"""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from exporter.store.explain import explained_sql, repos_cte

log = logging.getLogger(__name__)

#: A merge that may have changed more pairs than this rebuilds the table whole instead: by then
#: asking pair by pair costs more (about 12 µs a pair at ``huge``; the rebuild, 1.3 µs a grant).
REBUILD_PAIRS = 500_000

#: The whole table, by sets. A pair is ``user id * 2^32 + repository id`` (ids in ``names``).
REBUILD = (
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
    # The owners apart: each reaches every repository of the workspace (2 million pairs at
    # ``huge``), which one look-up per grant answers for less.
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

#: The grant versions snapshot ``:s`` opened or closed, and the (user, repository) pairs whose
#: answer they may change (more pairs than that do no harm: each is asked again). A group's grant
#: reaches its members of now and those whose membership ended tonight: a membership and the
#: group's grant that end together still change the member's answer (the membership rules need
#: then read only the grants open now). Repositories are taken as listed now: one that left a
#: project or the listing tonight has a new or closed version, the last rule.
AFFECTED_PAIRS = (
    """CREATE TEMP TABLE unexplained_pairs (
           subject_id INTEGER NOT NULL, object_id INTEGER NOT NULL,
           PRIMARY KEY (subject_id, object_id)) WITHOUT ROWID""",
    """CREATE TEMP TABLE unexplained_changed AS
       SELECT g.subject_id, g.object_id, g.permission, s.kind, s.object_uuid
         FROM grant_versions g JOIN scopes s ON s.id = g.scope_id WHERE g.valid_from = :s
       UNION ALL
       SELECT g.subject_id, g.object_id, g.permission, s.kind, s.object_uuid
         FROM grant_versions g JOIN scopes s ON s.id = g.scope_id WHERE g.valid_to = :s""",
    # an effective grant, a user's grant on the repository
    """INSERT OR IGNORE INTO temp.unexplained_pairs
       SELECT subject_id, object_id FROM temp.unexplained_changed
        WHERE kind IN ('repository_permissions', 'repository_user_grants')""",
    # a group's grant on the repository: each member's
    """INSERT OR IGNORE INTO temp.unexplained_pairs
       SELECT m.subject_id, c.object_id
         FROM temp.unexplained_changed c
         JOIN grant_versions m ON m.object_id = c.subject_id
                              AND (m.valid_to IS NULL OR m.valid_to = :s)
         JOIN scopes ms ON ms.id = m.scope_id AND ms.kind = 'groups'
        WHERE c.kind = 'repository_group_grants'""",
    # a user's grant on the project: each repository of the project
    """INSERT OR IGNORE INTO temp.unexplained_pairs
       SELECT c.subject_id, rn.id
         FROM temp.unexplained_changed c
         JOIN objects o ON o.parent_uuid = c.object_uuid AND o.object_type = 'repository'
                       AND o.valid_to IS NULL
         JOIN names rn ON rn.uuid = o.uuid
        WHERE c.kind = 'project_user_grants'""",
    # a group's grant on the project: each member's, on each repository of the project
    """INSERT OR IGNORE INTO temp.unexplained_pairs
       SELECT m.subject_id, rn.id
         FROM temp.unexplained_changed c
         JOIN grant_versions m ON m.object_id = c.subject_id
                              AND (m.valid_to IS NULL OR m.valid_to = :s)
         JOIN scopes ms ON ms.id = m.scope_id AND ms.kind = 'groups'
         JOIN objects o ON o.parent_uuid = c.object_uuid AND o.object_type = 'repository'
                       AND o.valid_to IS NULL
         JOIN names rn ON rn.uuid = o.uuid
        WHERE c.kind = 'project_group_grants'""",
    # a membership: the repositories the group reaches, by their grants and their projects'
    """INSERT OR IGNORE INTO temp.unexplained_pairs
       SELECT c.subject_id, g.object_id
         FROM temp.unexplained_changed c
         JOIN grant_versions g ON g.subject_id = c.object_id AND g.valid_to IS NULL
         JOIN scopes gs ON gs.id = g.scope_id AND gs.kind = 'repository_group_grants'
        WHERE c.kind = 'groups'""",
    """INSERT OR IGNORE INTO temp.unexplained_pairs
       SELECT c.subject_id, rn.id
         FROM temp.unexplained_changed c
         JOIN grant_versions g ON g.subject_id = c.object_id AND g.valid_to IS NULL
         JOIN scopes gs ON gs.id = g.scope_id AND gs.kind = 'project_group_grants'
         JOIN objects o ON o.parent_uuid = gs.object_uuid AND o.object_type = 'repository'
                       AND o.valid_to IS NULL
         JOIN names rn ON rn.uuid = o.uuid
        WHERE c.kind = 'groups'""",
    # a workspace owner (before or after): every repository of the workspace
    """INSERT OR IGNORE INTO temp.unexplained_pairs
       SELECT c.subject_id, rn.id
         FROM temp.unexplained_changed c
         JOIN scopes rs ON rs.kind = 'repositories' AND rs.object_uuid = c.object_uuid
         JOIN objects o ON o.scope_id = rs.id AND o.valid_to IS NULL
                       AND o.object_type = 'repository'
         JOIN names rn ON rn.uuid = o.uuid
        WHERE c.kind = 'workspace_roles' AND c.permission = 'owner'""",
    # a repository listed anew or no more (created, deleted, moved, renamed): its effective grants
    """INSERT OR IGNORE INTO temp.unexplained_pairs
       SELECT ef.subject_id, ef.object_id
         FROM objects o
         JOIN names rn ON rn.uuid = o.uuid
         JOIN grant_versions ef ON ef.object_id = rn.id AND ef.valid_to IS NULL
         JOIN scopes efs ON efs.id = ef.scope_id AND efs.kind = 'repository_permissions'
        WHERE o.object_type = 'repository' AND (o.valid_from = :s OR o.valid_to = :s)""",
    "DROP TABLE temp.unexplained_changed",
)

#: Ask the affected pairs again: drop their rows, keep the open effective grants of them that no
#: source explains (the view's question, ``explain.explained_sql``).
RECHECK = (
    """DELETE FROM unexplained_access
        WHERE (subject_id, object_id) IN (SELECT subject_id, object_id
                                            FROM temp.unexplained_pairs)""",
    f"""INSERT INTO unexplained_access (scope_id, subject_id, object_id)
WITH
{repos_cte(False)}
SELECT ef.scope_id, ef.subject_id, ef.object_id
  FROM temp.unexplained_pairs p
 CROSS JOIN grant_versions ef ON ef.object_id = p.object_id AND ef.subject_id = p.subject_id
   AND ef.valid_to IS NULL
  JOIN scopes efs ON efs.id = ef.scope_id AND efs.kind = 'repository_permissions'
 WHERE NOT EXISTS (
       SELECT 1 FROM repos r
        WHERE r.id = ef.object_id
          AND ({explained_sql(False)}))""",
    "DROP TABLE temp.unexplained_pairs",
)


async def update_unexplained(conn: AsyncConnection, snapshot_id: int, *, whole: bool) -> None:
    """Bring ``unexplained_access`` up to date with the merge of ``snapshot_id``, in the caller's
    transaction: rebuilt ``whole`` (a bulk merge), else for the pairs the merge may have
    changed, or whole if they are more than ``REBUILD_PAIRS``."""
    params = {"s": snapshot_id}
    if not whole:
        for statement in AFFECTED_PAIRS:
            await conn.execute(text(statement), params)
        pairs = (
            await conn.execute(text("SELECT count(*) FROM temp.unexplained_pairs"))
        ).scalar_one()
        whole = pairs > REBUILD_PAIRS
        if not whole:
            log.debug("asking %d (user, repository) pairs again", pairs)
            for statement in RECHECK:
                await conn.execute(text(statement), params)
            return
        await conn.execute(text("DROP TABLE temp.unexplained_pairs"))
    log.info("finding the effective access no source explains")
    for statement in REBUILD:
        await conn.execute(text(statement), params)
