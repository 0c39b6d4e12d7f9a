"""The effective access that no recorded source explains, kept as data by the merge.

``current_access_sources`` lists, beside the sources of every grant, the effective grants that no
recorded source explains (``source`` NULL). Asked of every grant, that is five questions of each
(its repository's user and group grants, its project's, its workspace's owners): at ``huge``, 4.7
million grants, over a minute. The table ``unexplained_access`` keeps the answer on current
knowledge instead, by the key of each such effective grant, and the view reads it.

The merge brings it up to date in its transaction (``update_unexplained``):

- the first snapshot of a database has it found from its stage, beside the merge
  (``unexplained_staged``), and takes the rows;
- a bulk merge (a new large workspace) rebuilds it whole, by sets: every (user, repository) pair
  a source explains is gathered once, then the effective grants outside them are kept (7.3 s at
  ``huge``);
- any other merge asks again, pair by pair, only the (user, repository) pairs whose answer the
  night may have changed: those of every effective grant that began or ended tonight and of
  every source version opened or closed tonight (a user's grant; a group's grant for each
  member, a project's for each repository in it; a membership for each repository its group
  reaches; a workspace owner for each repository of the workspace), and every effective grant of
  a repository listed anew, no more, or in another project. A change of level or a rename
  changes no answer: no source asks for a level or a name. At ``huge`` a night asks about 300,000
  pairs, in 3 to 5 s.

The store's tests hold the view to the same question asked of every grant at the latest
snapshot (``who-can-access``'s SQL), night after night, through both ways.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from exporter.store.unexplained_staged import StagedUnexplained

log = logging.getLogger(__name__)

#: A merge that may have changed more pairs than this rebuilds the table whole instead: by then
#: asking pair by pair costs more (about 11 µs a pair at ``huge``, all told; the rebuild, 1.3 µs
#: a grant).
REBUILD_PAIRS = 500_000

#: The page cache while the table is rebuilt. SQLite's sorter sizes its memory by it: the 3
#: million pairs of ``huge`` sorted within a bulk merge's cache (48 MiB then) raised the first
#: snapshot's peak memory by 36 MB (to 318 MB), and were no faster than within 4 MB.
REBUILD_CACHE_KIB = 4 * 1024

#: The keys of ``temp.unexplained_repos`` (every open repository: its id, uuid, project and
#: workspace), the owners and the explained pairs, and what an effective grant ``ef`` is without
#: them: the pieces both ways of asking the whole question share (``REBUILD`` here, of the
#: merged tables; ``unexplained_staged.STAGE_REBUILD``, of a first snapshot's stage).
REPOS_KEYS = (
    "CREATE INDEX temp.unexplained_repos_uuid ON unexplained_repos (uuid, id)",
    "CREATE INDEX temp.unexplained_repos_project ON unexplained_repos (project_uuid, project_id)",
    "CREATE INDEX temp.unexplained_repos_id ON unexplained_repos (id)",
)
OWNERS_TABLE = """CREATE TEMP TABLE unexplained_owners (
           user_id INTEGER NOT NULL, workspace_uuid TEXT NOT NULL, workspace_id INTEGER NOT NULL,
           PRIMARY KEY (user_id, workspace_uuid, workspace_id)) WITHOUT ROWID"""
EXPLAINED_TABLE = "CREATE TEMP TABLE unexplained_pairs_explained (k INTEGER PRIMARY KEY)"
UNEXPLAINED_BY_PAIRS_OR_OWNERS = """NOT EXISTS (SELECT 1 FROM temp.unexplained_pairs_explained x
                           WHERE x.k = ef.subject_id * 4294967296 + ef.object_id)
          AND NOT (ef.subject_id IN (SELECT user_id FROM temp.unexplained_owners)
                   AND EXISTS (SELECT 1 FROM temp.unexplained_repos r
                                 JOIN temp.unexplained_owners o
                                   ON o.user_id = ef.subject_id
                                  AND o.workspace_uuid = r.workspace_uuid
                                  AND o.workspace_id = r.workspace_id
                                WHERE r.id = ef.object_id))"""

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
    *REPOS_KEYS,
    OWNERS_TABLE,
    """INSERT OR IGNORE INTO temp.unexplained_owners
       SELECT e.subject_id, es.object_uuid, e.object_id
         FROM scopes es CROSS JOIN grant_versions e ON e.scope_id = es.id AND e.valid_to IS NULL
        WHERE es.kind = 'workspace_roles' AND e.permission = 'owner'""",
    EXPLAINED_TABLE,
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
    f"""INSERT INTO unexplained_access (scope_id, subject_id, object_id)
       SELECT ef.scope_id, ef.subject_id, ef.object_id
         FROM scopes efs
        CROSS JOIN grant_versions ef ON ef.scope_id = efs.id AND ef.valid_to IS NULL
        WHERE efs.kind = 'repository_permissions'
          AND {UNEXPLAINED_BY_PAIRS_OR_OWNERS}""",
    "DROP TABLE temp.unexplained_pairs_explained",
    "DROP TABLE temp.unexplained_owners",
    "DROP TABLE temp.unexplained_repos",
)

STAGED_INSERT = (
    "INSERT INTO unexplained_access (scope_id, subject_id, object_id) VALUES (?, ?, ?)"
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
       SELECT g.scope_id, g.subject_id, g.object_id, g.permission, s.kind, s.object_uuid,
              1 AS opened
         FROM grant_versions g JOIN scopes s ON s.id = g.scope_id WHERE g.valid_from = :s
       UNION ALL
       SELECT g.scope_id, g.subject_id, g.object_id, g.permission, s.kind, s.object_uuid, 0
         FROM grant_versions g JOIN scopes s ON s.id = g.scope_id WHERE g.valid_to = :s""",
    # Every rule starts from tonight's changes (CROSS JOIN keeps SQLite to that order: it knows
    # nothing of the temporary table's size, and at ``huge`` it chose to start from every
    # repository instead).
    # An effective grant that began or ended (one whose level changed is as explained as it
    # was: no source asks for a level), a user's grant on the repository:
    """INSERT OR IGNORE INTO temp.unexplained_pairs
       SELECT subject_id, object_id FROM temp.unexplained_changed
        WHERE kind = 'repository_permissions'
        GROUP BY scope_id, subject_id, object_id HAVING min(opened) = max(opened)""",
    """INSERT OR IGNORE INTO temp.unexplained_pairs
       SELECT subject_id, object_id FROM temp.unexplained_changed
        WHERE kind = 'repository_user_grants'""",
    # a group's grant on the repository: each member's,
    """INSERT OR IGNORE INTO temp.unexplained_pairs
       SELECT m.subject_id, c.object_id
         FROM temp.unexplained_changed c
        CROSS JOIN grant_versions m INDEXED BY ix_grant_versions_object
           ON m.object_id = c.subject_id AND (m.valid_to IS NULL OR m.valid_to = :s)
        CROSS JOIN scopes ms ON ms.id = m.scope_id AND ms.kind = 'groups'
        WHERE c.kind = 'repository_group_grants'""",
    # a user's grant on the project: each repository of the project,
    """INSERT OR IGNORE INTO temp.unexplained_pairs
       SELECT c.subject_id, rn.id
         FROM temp.unexplained_changed c
        CROSS JOIN objects o INDEXED BY ix_objects_parent
           ON o.parent_uuid = c.object_uuid AND o.object_type = 'repository'
          AND o.valid_to IS NULL
        CROSS JOIN names rn ON rn.uuid = o.uuid
        WHERE c.kind = 'project_user_grants'""",
    # a group's grant on the project: each member's, on each repository of the project,
    """INSERT OR IGNORE INTO temp.unexplained_pairs
       SELECT m.subject_id, rn.id
         FROM temp.unexplained_changed c
        CROSS JOIN grant_versions m INDEXED BY ix_grant_versions_object
           ON m.object_id = c.subject_id AND (m.valid_to IS NULL OR m.valid_to = :s)
        CROSS JOIN scopes ms ON ms.id = m.scope_id AND ms.kind = 'groups'
        CROSS JOIN objects o INDEXED BY ix_objects_parent
           ON o.parent_uuid = c.object_uuid AND o.object_type = 'repository'
          AND o.valid_to IS NULL
        CROSS JOIN names rn ON rn.uuid = o.uuid
        WHERE c.kind = 'project_group_grants'""",
    # a membership: the repositories the group reaches, by its grants and its projects',
    """INSERT OR IGNORE INTO temp.unexplained_pairs
       SELECT c.subject_id, g.object_id
         FROM temp.unexplained_changed c
        CROSS JOIN grant_versions g INDEXED BY ix_grant_versions_subject
           ON g.subject_id = c.object_id AND g.valid_to IS NULL
        CROSS JOIN scopes gs ON gs.id = g.scope_id AND gs.kind = 'repository_group_grants'
        WHERE c.kind = 'groups'""",
    """INSERT OR IGNORE INTO temp.unexplained_pairs
       SELECT c.subject_id, rn.id
         FROM temp.unexplained_changed c
        CROSS JOIN grant_versions g INDEXED BY ix_grant_versions_subject
           ON g.subject_id = c.object_id AND g.valid_to IS NULL
        CROSS JOIN scopes gs ON gs.id = g.scope_id AND gs.kind = 'project_group_grants'
        CROSS JOIN objects o INDEXED BY ix_objects_parent
           ON o.parent_uuid = gs.object_uuid AND o.object_type = 'repository'
          AND o.valid_to IS NULL
        CROSS JOIN names rn ON rn.uuid = o.uuid
        WHERE c.kind = 'groups'""",
    # a workspace owner (before or after): every repository of the workspace,
    """INSERT OR IGNORE INTO temp.unexplained_pairs
       SELECT c.subject_id, rn.id
         FROM temp.unexplained_changed c
        CROSS JOIN scopes rs ON rs.kind = 'repositories' AND rs.object_uuid = c.object_uuid
        CROSS JOIN objects o INDEXED BY ix_objects_open
           ON o.scope_id = rs.id AND o.valid_to IS NULL AND o.object_type = 'repository'
        CROSS JOIN names rn ON rn.uuid = o.uuid
        WHERE c.kind = 'workspace_roles' AND c.permission = 'owner'""",
    # a repository listed anew, no more, or in another project (not one renamed): its
    # effective grants.
    """INSERT OR IGNORE INTO temp.unexplained_pairs
       SELECT ef.subject_id, ef.object_id
         FROM (SELECT o.uuid FROM objects o
                WHERE o.valid_from = :s AND o.object_type = 'repository'
                  AND NOT EXISTS (SELECT 1 FROM objects b WHERE b.uuid = o.uuid
                                     AND b.valid_to = :s AND b.scope_id = o.scope_id
                                     AND b.parent_uuid IS o.parent_uuid)
               UNION
               SELECT o.uuid FROM objects o
                WHERE o.valid_to = :s AND o.object_type = 'repository'
                  AND NOT EXISTS (SELECT 1 FROM objects a WHERE a.uuid = o.uuid
                                     AND a.valid_from = :s AND a.scope_id = o.scope_id
                                     AND a.parent_uuid IS o.parent_uuid)) o
        CROSS JOIN names rn ON rn.uuid = o.uuid
        CROSS JOIN grant_versions ef INDEXED BY ix_grant_versions_object
           ON ef.object_id = rn.id AND ef.valid_to IS NULL
        CROSS JOIN scopes efs ON efs.id = ef.scope_id AND efs.kind = 'repository_permissions'""",
    "DROP TABLE temp.unexplained_changed",
)

#: Ask the affected pairs again: drop their rows, keep the open effective grants of them that no
#: source explains. The question is the one ``explain.sources_sql`` asks at a snapshot (its
#: ``explained``), with each repository's scopes looked up once (``unexplained_repos``), not
#: once a source and a pair (5 µs a pair instead of 14 at ``huge``), and the sources that take
#: one look-up first: a workspace's owners alone hold 38 % of its effective grants there.
RECHECK = (
    """DELETE FROM unexplained_access
        WHERE (subject_id, object_id) IN (SELECT subject_id, object_id
                                            FROM temp.unexplained_pairs)""",
    # A workspace's two scopes and a project's two are looked up once each, not once a repository
    # (at ``huge``, 1.0 s where 1.3 s).
    """CREATE TEMP TABLE unexplained_repos AS
       WITH workspaces AS MATERIALIZED (
           SELECT object_uuid, max(CASE kind WHEN 'groups' THEN id END) AS members_scope,
                  max(CASE kind WHEN 'workspace_roles' THEN id END) AS roles_scope
             FROM scopes WHERE kind IN ('groups', 'workspace_roles') GROUP BY object_uuid),
       projects AS MATERIALIZED (
           SELECT object_uuid, max(CASE kind WHEN 'project_user_grants' THEN id END) AS user_scope,
                  max(CASE kind WHEN 'project_group_grants' THEN id END) AS group_scope
             FROM scopes WHERE kind IN ('project_user_grants', 'project_group_grants')
            GROUP BY object_uuid)
       SELECT rn.id, pn.id AS project_id, wn.id AS workspace_id,
              (SELECT x.id FROM scopes x WHERE x.kind = 'repository_user_grants'
                  AND x.object_uuid = o.uuid) AS user_scope,
              (SELECT x.id FROM scopes x WHERE x.kind = 'repository_group_grants'
                  AND x.object_uuid = o.uuid) AS group_scope,
              pr.user_scope AS project_scope, pr.group_scope AS project_group_scope,
              ws.members_scope, ws.roles_scope
         FROM (SELECT DISTINCT object_id FROM temp.unexplained_pairs) p
        CROSS JOIN names rn ON rn.id = p.object_id
        CROSS JOIN objects o INDEXED BY ix_objects_uuid
           ON o.uuid = rn.uuid AND o.valid_to IS NULL AND o.object_type = 'repository'
        CROSS JOIN scopes sc ON sc.id = o.scope_id AND sc.kind = 'repositories'
         LEFT JOIN names pn ON pn.uuid = o.parent_uuid
         LEFT JOIN names wn ON wn.uuid = sc.object_uuid
         LEFT JOIN workspaces ws ON ws.object_uuid = sc.object_uuid
         LEFT JOIN projects pr ON pr.object_uuid = o.parent_uuid""",
    "CREATE INDEX temp.unexplained_repos_id ON unexplained_repos (id)",
    """INSERT INTO unexplained_access (scope_id, subject_id, object_id)
       SELECT ef.scope_id, ef.subject_id, ef.object_id
         FROM temp.unexplained_pairs p
        CROSS JOIN grant_versions ef INDEXED BY ix_grant_versions_object
           ON ef.object_id = p.object_id AND ef.subject_id = p.subject_id AND ef.valid_to IS NULL
        CROSS JOIN scopes efs ON efs.id = ef.scope_id AND efs.kind = 'repository_permissions'
        WHERE NOT EXISTS (
              SELECT 1 FROM temp.unexplained_repos r
               WHERE r.id = ef.object_id
                 AND (EXISTS (SELECT 1 FROM grant_versions e
                               WHERE e.scope_id = r.roles_scope
                                 AND e.subject_id = ef.subject_id
                                 AND e.object_id = r.workspace_id AND e.valid_to IS NULL
                                 AND e.permission = 'owner')
                      OR EXISTS (SELECT 1 FROM grant_versions e
                                  WHERE e.scope_id = r.user_scope
                                    AND e.subject_id = ef.subject_id
                                    AND e.object_id = r.id AND e.valid_to IS NULL)
                      OR EXISTS (SELECT 1 FROM grant_versions e
                                  WHERE e.scope_id = r.project_scope
                                    AND e.subject_id = ef.subject_id
                                    AND e.object_id = r.project_id AND e.valid_to IS NULL)
                      OR EXISTS (SELECT 1 FROM grant_versions m CROSS JOIN grant_versions e
                                  WHERE m.scope_id = r.members_scope
                                    AND m.subject_id = ef.subject_id AND m.valid_to IS NULL
                                    AND e.scope_id = r.group_scope AND e.subject_id = m.object_id
                                    AND e.object_id = r.id AND e.valid_to IS NULL)
                      OR EXISTS (SELECT 1 FROM grant_versions m CROSS JOIN grant_versions e
                                  WHERE m.scope_id = r.members_scope
                                    AND m.subject_id = ef.subject_id AND m.valid_to IS NULL
                                    AND e.scope_id = r.project_group_scope
                                    AND e.subject_id = m.object_id
                                    AND e.object_id = r.project_id AND e.valid_to IS NULL)))""",
    "DROP TABLE temp.unexplained_repos",
    "DROP TABLE temp.unexplained_pairs",
)


async def update_unexplained(
    conn: AsyncConnection, snapshot_id: int, *, whole: bool,
    staged: StagedUnexplained | None = None,
) -> None:  # fmt: skip
    """Bring ``unexplained_access`` up to date with the merge of ``snapshot_id``, in the caller's
    transaction: from what ``staged`` found (a first snapshot), else rebuilt ``whole`` (a bulk
    merge), else for the pairs the merge may have changed, or whole if they are more than
    ``REBUILD_PAIRS``."""
    params = {"s": snapshot_id}
    started = time.monotonic()
    if staged is not None:
        try:
            await conn.execute(text("DELETE FROM unexplained_access"))
            async for chunk in staged.chunks():
                await conn.exec_driver_sql(STAGED_INSERT, chunk)
            return
        except sqlite3.Error as error:  # the stage's connection's own: the merge goes on
            log.warning("could not find the effective access no source explains beside the "
                        "merge (%s); finding it within", error)  # fmt: skip
            whole = True
    if not whole:
        for statement in AFFECTED_PAIRS:
            await conn.execute(text(statement), params)
        pairs = (
            await conn.execute(text("SELECT count(*) FROM temp.unexplained_pairs"))
        ).scalar_one()
        whole = pairs > REBUILD_PAIRS
        if not whole:
            for statement in RECHECK:
                await conn.execute(text(statement), params)
            log.info("asked %d (user, repository) pairs again whether a source explains their "
                     "access in %.1f s", pairs, time.monotonic() - started)  # fmt: skip
            return
        await conn.execute(text("DROP TABLE temp.unexplained_pairs"))
    cache = (await conn.execute(text("PRAGMA cache_size"))).scalar_one()
    await conn.execute(text(f"PRAGMA cache_size=-{REBUILD_CACHE_KIB}"))
    try:
        for statement in REBUILD:
            await conn.execute(text(statement), params)
    finally:
        await conn.execute(text(f"PRAGMA cache_size={int(cache)}"))
    log.info("found the effective access no source explains in %.1f s",
             time.monotonic() - started)  # fmt: skip
