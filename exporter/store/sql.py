"""The SQL that code runs: ``bbaccess diff``, the labels refresh, and who-can-access.

One body computes the changes for a set of snapshot pairs ``pair(a, b)``, ``a`` before ``b``:
``bbaccess diff`` runs it for one pair (``:a``, ``:b``); the ``access_changes`` view runs the same
body for each complete snapshot and the complete one before it. The views belong to the
migrations, which hold their SQL written out in full (``changes_sql(CONSECUTIVE_PAIRS)`` is what
the newest one froze); the property test holds the view and the diff to the same answers.

The rules (DESIGN.md, "Diff"): a version opened or closed in (a, b] can only come from an ok
observation of its scope in (a, b], so the changed rows are exactly the versions valid at ``a`` and
closed by ``b`` (old) and the versions opened after ``a`` and valid at ``b`` (new), paired by key.
A key in both with the same value left and came back: no change. A new key in a scope with no ok
observation at or before ``a`` is a ``baseline`` unless its object is new. A permission outside
the known order (``none``) has no rank: a change to or from it is ``changed``, never raised or
lowered. Group membership changes are ``added to group`` and ``removed from group``.
"""

from __future__ import annotations

import functools

from exporter.errors import Outcome

#: Every outcome an observation may have, as an SQL list. ``observation_runs`` is kept by (scope,
#: outcome, first snapshot): a question about one snapshot's observations names each outcome, so
#: that each scope's run is looked up by its key instead of read out of the scope's history.
EVERY_OUTCOME = "(" + ", ".join(f"'{outcome.value}'" for outcome in Outcome) + ")"
#: The same as rows of a ``VALUES`` list, for a join that takes each outcome in turn.
OUTCOME_ROWS = ", ".join(f"('{outcome.value}')" for outcome in Outcome)


def latest_ok_read(scope: str, upto: str | None = None, alias: str = "x") -> str:
    """SQL for the snapshot of the latest ok read of the scope whose id is ``scope`` (an SQL
    expression), at or before the snapshot ``upto`` if given; NULL if there is none. The ok
    run that starts last (at or before ``upto``), cut at ``upto``: every snapshot of a run read
    the scope, so the cut is a read too. One look-up of the table's key."""
    x = alias
    if upto is None:
        return (f"(SELECT {x}.last_snapshot_id FROM observation_runs {x}\n"
                f"         WHERE {x}.scope_id = {scope} AND {x}.outcome = 'ok'\n"
                f"         ORDER BY {x}.first_snapshot_id DESC LIMIT 1)")
    return (f"(SELECT min({x}.last_snapshot_id, {upto}) FROM observation_runs {x}\n"
            f"         WHERE {x}.scope_id = {scope} AND {x}.outcome = 'ok'\n"
            f"           AND {x}.first_snapshot_id <= {upto}\n"
            f"         ORDER BY {x}.first_snapshot_id DESC LIMIT 1)")


def latest_run_start(scope: str, outcome: str) -> str:
    """SQL for where the latest run of the scope ``scope`` with ``outcome`` starts (SQL
    expressions): the greatest key of the two, one look-up."""
    return (f"(SELECT max(x.first_snapshot_id) FROM observation_runs x\n"
            f"          WHERE x.scope_id = {scope} AND x.outcome = {outcome})")


def latest_ok_run(scope: str, alias: str = "o") -> str:
    """A join condition: the run ``alias`` is the latest ok run of the scope ``scope`` (its
    ``last_snapshot_id`` the scope's latest ok read, its ``requests`` what that read took)."""
    o, start = alias, latest_run_start(scope, "'ok'")
    return f"{o}.scope_id = {scope} AND {o}.outcome = 'ok' AND {o}.first_snapshot_id = {start}"


def read_at(scope: str, outcome: str, snapshot: str, value: str, alias: str = "o") -> str:
    """SQL for ``value`` (an expression of the run's columns, never NULL) of the read of the
    scope ``scope`` with ``outcome`` in ``snapshot`` (SQL expressions); NULL if the scope was not
    read so there. The run that starts last at or before the snapshot, if it reaches it: one
    look-up of the table's key."""
    o = alias
    return (f"(SELECT CASE WHEN {o}.last_snapshot_id >= {snapshot} THEN {value} END\n"
            f"     FROM observation_runs {o}\n"
            f"    WHERE {o}.scope_id = {scope} AND {o}.outcome = {outcome}\n"
            f"      AND {o}.first_snapshot_id <= {snapshot}\n"
            f"    ORDER BY {o}.first_snapshot_id DESC LIMIT 1)")

#: Permissions and roles in order; a higher rank is more access. Any other value has no rank.
RANK_SQL = """CASE {col}
    WHEN 'read' THEN 1 WHEN 'member' THEN 1
    WHEN 'write' THEN 2 WHEN 'collaborator' THEN 2
    WHEN 'create-repo' THEN 3 WHEN 'create-project' THEN 3
    WHEN 'admin' THEN 4 WHEN 'owner' THEN 4 END"""

#: A grant version's subject type, object type and permission are one small number in
#: ``grant_versions.grant_kind`` (one byte where the three texts took about twenty, migration
#: 0016): ``subject * 64 + object * 16 + permission``, each the index of its value below. A
#: permission outside ``GRANT_PERMISSIONS`` (Bitbucket's answer as listed) is kept as it is in
#: ``permission_text``, its index then ``OTHER_PERMISSION``. The table shows the three as columns
#: computed from these (``GRANT_COLUMNS``), so that every query reads them by name.
GRANT_SUBJECT_TYPES = ("user", "group")
GRANT_OBJECT_TYPES = ("repository", "project", "workspace", "group")
GRANT_PERMISSIONS = (
    "read", "write", "admin", "create-repo", "member", "collaborator", "owner", "create-project",
    "none",
)  # fmt: skip
OTHER_PERMISSION = 15


_SUBJECT_CODES = {value: index * 64 for index, value in enumerate(GRANT_SUBJECT_TYPES)}
_OBJECT_CODES = {value: index * 16 for index, value in enumerate(GRANT_OBJECT_TYPES)}
_PERMISSION_CODES = {value: index for index, value in enumerate(GRANT_PERMISSIONS)}


@functools.lru_cache(maxsize=256)  # a run sees a few dozen triples, millions of times each
def grant_kind(subject_type: str, object_type: str, permission: str) -> tuple[int, str | None]:
    """``grant_kind`` and ``permission_text`` of a grant, as the writer stages it."""
    try:
        kind = _SUBJECT_CODES[subject_type] + _OBJECT_CODES[object_type]
    except KeyError:
        raise ValueError(f"no grant kind for a {subject_type}'s grant on a {object_type}") from None
    code = _PERMISSION_CODES.get(permission)
    if code is None:
        return kind + OTHER_PERMISSION, permission
    return kind + code, None


def _decode(part: str, values: tuple[str, ...]) -> str:
    whens = " ".join(f"WHEN {index} THEN '{value}'" for index, value in enumerate(values))
    return f"CASE {part} {whens} END"


#: The columns ``grant_versions`` computes from ``grant_kind`` (SQLite's virtual generated
#: columns: stored nowhere, computed as a row is read).
GRANT_COLUMNS = {
    "subject_type": _decode("grant_kind >> 6", GRANT_SUBJECT_TYPES),
    "object_type": _decode("(grant_kind >> 4) & 3", GRANT_OBJECT_TYPES),
    "permission": f"coalesce(permission_text, {_decode('grant_kind & 15', GRANT_PERMISSIONS)})",
}

#: Every complete snapshot paired with the complete snapshot before it (0 for the first).
CONSECUTIVE_PAIRS = """SELECT coalesce((SELECT max(p.id) FROM snapshots p
                      WHERE p.status = 'complete' AND p.id < s.id), 0) AS a,
           s.id AS b
    FROM snapshots s WHERE s.status = 'complete'"""

ONE_PAIR = "SELECT :a AS a, :b AS b"

CHANGES_CTES = """WITH
pair(a, b) AS ({pairs}),
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
                  CASE WHEN EXISTS (SELECT 1 FROM observation_runs x
                                     WHERE x.scope_id = op.scope_id AND x.outcome = 'ok'
                                       AND x.first_snapshot_id <= op.a)
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
    SELECT p.a, p.b, g.* FROM pair p JOIN grant_versions g
      ON g.valid_to > p.a AND g.valid_to <= p.b AND g.valid_from <= p.a),
new_g AS (
    SELECT p.a, p.b, g.* FROM pair p JOIN grant_versions g
      ON g.valid_from > p.a AND g.valid_from <= p.b
     AND (g.valid_to IS NULL OR g.valid_to > p.b)),
grant_pairs AS (
    SELECT n.a, n.b, n.scope_id, n.subject_type, n.subject_id, n.object_type, n.object_id,
           o.permission AS old_value, n.permission AS new_value, o.id AS old_id, n.id AS new_id
      FROM new_g n LEFT JOIN old_g o
        ON o.b = n.b AND o.scope_id = n.scope_id
       AND o.subject_id = n.subject_id AND o.object_id = n.object_id
     WHERE o.permission IS NOT n.permission
    UNION ALL
    SELECT o.a, o.b, o.scope_id, o.subject_type, o.subject_id, o.object_type, o.object_id,
           o.permission, NULL, o.id, NULL FROM old_g o
     WHERE NOT EXISTS (SELECT 1 FROM new_g n
                        WHERE n.b = o.b AND n.scope_id = o.scope_id
                          AND n.subject_id = o.subject_id
                          AND n.object_id = o.object_id)),
grant_changes AS (
    SELECT gp.*,
           CASE WHEN gp.old_value IS NULL THEN
                  CASE WHEN EXISTS (SELECT 1 FROM observation_runs x
                                     WHERE x.scope_id = gp.scope_id AND x.outcome = 'ok'
                                       AND x.first_snapshot_id <= gp.a)
                       THEN 'granted'
                       WHEN s.parent_scope_id IS NOT NULL
                        AND EXISTS (SELECT 1 FROM observation_runs x
                                     WHERE x.scope_id = s.parent_scope_id AND x.outcome = 'ok'
                                       AND x.first_snapshot_id <= gp.a)
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
                WHEN {rank_new} > {rank_old} THEN 'raised'
                WHEN {rank_new} < {rank_old} THEN 'lowered'
                ELSE 'changed' END AS change,
           s.source
      FROM grant_pairs gp JOIN scopes s ON s.id = gp.scope_id),
workspaces AS (SELECT uuid, label FROM object_labels WHERE object_type = 'workspace')"""

#: A grant change's name: membership changes are ``added to group`` and ``removed from group``.
_GRANT_CHANGE = """\
       CASE WHEN c.source = 'membership' AND c.change = 'granted' THEN 'added to group'
            WHEN c.source = 'membership' AND c.change = 'revoked' THEN 'removed from group'
            ELSE c.change END"""

#: How many repositories the group of a membership change (``c``) reaches at ``b``.
_GROUP_REACH = """(SELECT count(DISTINCT reached) FROM (
                SELECT xo.uuid AS reached FROM grant_versions x
                  JOIN names xo ON xo.id = x.object_id
                 WHERE x.subject_id = c.object_id AND x.object_type = 'repository'
                   AND x.valid_from <= c.b AND (x.valid_to IS NULL OR x.valid_to > c.b)
                UNION ALL
                SELECT r.uuid FROM grant_versions x JOIN names xo ON xo.id = x.object_id
                  JOIN objects r ON r.parent_uuid = xo.uuid
                 WHERE x.subject_id = c.object_id AND x.object_type = 'project'
                   AND x.valid_from <= c.b AND (x.valid_to IS NULL OR x.valid_to > c.b)
                   AND r.object_type = 'repository' AND r.valid_from <= c.b
                   AND (r.valid_to IS NULL OR r.valid_to > c.b)))"""

#: ``created`` or ``deleted`` when the object of a grant granted or revoked (``c``) was created or
#: deleted in the same pair, else NULL.
_OBJECT_EVENT = """(SELECT oe.change FROM object_events oe
              WHERE oe.b = c.b AND oe.uuid = (SELECT n.uuid FROM names n WHERE n.id = c.object_id)
                AND oe.change = CASE c.change WHEN 'revoked' THEN 'deleted'
                                              ELSE 'created' END)"""

#: Why a grant was granted or revoked: how far a group reaches, or its object's creation or
#: deletion.
_GRANT_REASON = f"""\
       CASE WHEN c.source = 'membership' AND c.change IN ('revoked', 'granted') THEN
            'the group grants access to ' || {_GROUP_REACH}
            || ' repositories'
            WHEN c.change IN ('revoked', 'granted') THEN
            {_OBJECT_EVENT} || ' ' || c.object_type END"""

CHANGES_SELECT = f"""SELECT c.b AS snapshot_id,
       (SELECT sn.finished_at FROM snapshots sn WHERE sn.id = c.b) AS snapshot_at,
       c.a AS from_snapshot_id,
       coalesce(w.label, s.workspace_uuid) AS workspace,
       c.object_type,
       coalesce(l.label, c.uuid) AS object_name,
       NULL AS subject_type,
       NULL AS subject_name,
       c.change,
       c.attribute,
       c.old_value,
       c.new_value,
       NULL AS source,
       NULL AS reason,
       NULL AS subject_uuid,
       c.uuid AS object_uuid,
       c.scope_id
  FROM object_changes c
  JOIN scopes s ON s.id = c.scope_id
  LEFT JOIN workspaces w ON w.uuid = s.workspace_uuid
  LEFT JOIN object_labels l ON l.uuid = c.uuid
UNION ALL
SELECT c.b, (SELECT sn.finished_at FROM snapshots sn WHERE sn.id = c.b), c.a,
       coalesce(w.label, s.workspace_uuid),
       c.object_type,
       coalesce(l.label, cn.uuid),
       c.subject_type,
       coalesce(u.display_name, sl.label, sn.uuid),
{_GRANT_CHANGE},
       NULL,
       c.old_value,
       c.new_value,
       c.source,
{_GRANT_REASON},
       sn.uuid,
       cn.uuid,
       c.scope_id
  FROM grant_changes c
  JOIN scopes s ON s.id = c.scope_id
  JOIN names sn ON sn.id = c.subject_id
  JOIN names cn ON cn.id = c.object_id
  LEFT JOIN workspaces w ON w.uuid = s.workspace_uuid
  LEFT JOIN object_labels l ON l.uuid = cn.uuid
  LEFT JOIN users u ON u.uuid = sn.uuid
  LEFT JOIN object_labels sl ON c.subject_type = 'group' AND sl.uuid = sn.uuid"""

#: How many baseline rows the body yields, counted from the same rules without labelling them.
BASELINE_COUNT_SELECT = """SELECT
    (SELECT count(*) FROM object_changes WHERE change = 'baseline')
  + (SELECT count(*) FROM grant_changes WHERE change = 'baseline')"""


def changes_sql(pairs: str, select: str = CHANGES_SELECT) -> str:
    """The change rows for the snapshot pairs that ``pairs`` (a SELECT of ``a, b``) yields, or
    what ``select`` makes of the rules' CTEs (``object_changes``, ``grant_changes``)."""
    return (CHANGES_CTES + "\n" + select).format(
        pairs=pairs,
        rank_new=RANK_SQL.format(col="gp.new_value"),
        rank_old=RANK_SQL.format(col="gp.old_value"),
    )


DIFF_SQL = changes_sql(ONE_PAIR)
DIFF_BASELINE_COUNT_SQL = changes_sql(ONE_PAIR, BASELINE_COUNT_SELECT)

#: The newest version of every object with a readable label (``acme/payments-api``): what the
#: ``labels`` table holds. The writer recomputes it when a snapshot completes, so that the views,
#: which label every row they return, look labels up by primary key instead of computing them.
LABELS_SQL = """SELECT o.uuid, o.object_type,
       CASE WHEN o.object_type = 'workspace' THEN o.slug
            ELSE coalesce((SELECT w.slug FROM objects w
                            WHERE w.uuid = s.workspace_uuid AND w.object_type = 'workspace'
                            ORDER BY w.id DESC LIMIT 1), s.workspace_uuid) || '/' || o.slug
       END AS label,
       o.name, s.workspace_uuid
  FROM objects o JOIN scopes s ON s.id = o.scope_id
 WHERE o.id = (SELECT max(x.id) FROM objects x WHERE x.uuid = o.uuid)"""

#: The name every uuid that a view shows goes by, in ``names``: a user's display name, an object's
#: label, else the uuid itself (a group whose listing was never read, say). The views show
#: ``names.name`` as it is, with nothing computed around it, so that a filter on a name
#: (``subject_name = 'Ada Lovelace'``) reaches the index on it and starts there. A uuid first
#: seen in a grant gets its row (and its id, which ``grant_versions`` refers to) from the writer,
#: named by itself; the merge of snapshot ``:s`` brings names up to date (a user's wins over a
#: label, as in the views before). A name is never removed.
_UPSERT_NAME = (
    "ON CONFLICT (uuid) DO UPDATE SET name = excluded.name WHERE name IS NOT excluded.name"
)
#: The users' names, and the workspaces' uuids where nothing names them; the labels' names are
#: brought up to date with the labels (``REFRESH_LABELS``), before these.
REFRESH_NAMES = (
    f"INSERT INTO names (uuid, name) SELECT uuid, display_name FROM users WHERE true "
    f"{_UPSERT_NAME}",
    "INSERT OR IGNORE INTO names (uuid, name) SELECT DISTINCT workspace_uuid, workspace_uuid "
    "FROM scopes",
)
#: Statistics on the small tables the views start from, so that SQLite knows a scope kind is
#: thousands of rows and a name a few: without them it reads all 100,000 scopes of a kind to
#: find one person's grants. ``grant_versions`` is left out (a full pass at its size would cost
#: seconds).
ANALYZE_SMALL = ("ANALYZE scopes", "ANALYZE objects", "ANALYZE labels", "ANALYZE names")

#: The labels (and the names they give) of the objects whose label may have changed in snapshot
#: ``:s``: those with a new version, and every object of a workspace with a new version (its slug
#: is in each label). The others keep theirs: recomputing all 108,000 labels of ``huge`` took
#: about 0.9 s a night.
REFRESH_LABELS = (
    "DROP TABLE IF EXISTS temp.merge_relabelled",
    """CREATE TEMP TABLE merge_relabelled AS
       SELECT uuid FROM objects WHERE valid_from = :s
       UNION
       SELECT uuid FROM objects WHERE scope_id IN (
           SELECT id FROM scopes WHERE workspace_uuid IN (
               SELECT uuid FROM objects WHERE valid_from = :s AND object_type = 'workspace'))""",
    f"INSERT OR REPLACE INTO labels (uuid, object_type, label, name, workspace_uuid)\n{LABELS_SQL}"
    "\n   AND o.uuid IN (SELECT uuid FROM temp.merge_relabelled)",
    "INSERT INTO names (uuid, name) SELECT uuid, label FROM labels "
    f"WHERE uuid IN (SELECT uuid FROM temp.merge_relabelled) {_UPSERT_NAME}",
    *REFRESH_NAMES,
    "DROP TABLE temp.merge_relabelled",
)

# The change log. The merge of snapshot ``b`` writes the changes since the complete snapshot
# before it (``a``) into ``change_log``, by the rules above, once; ``access_changes`` reads it,
# so a query for last week costs last week, not every night since the first. An entry names the
# versions it compares (``old_id``, ``new_id`` of ``objects`` or ``grant_versions``) and its kind
# (``CHANGE_KINDS``: the fact, the change, the attribute, the reason's form), not their values:
# the view reads values, names and the scope from the versions as the diff does, and ``a`` from
# ``snapshots`` (the complete snapshot before ``b``: ``prune`` writes again the entries of a
# snapshot whose ``a`` it removes). So an entry is a few small integers, about 20 bytes. Baseline
# rows are not written at all (the first snapshot would be stored twice): ``baseline_scopes``
# names each scope whose rows at ``b`` are all ``baseline`` (a scope read ok for the first time),
# and the view lists the versions that scope opened at ``b``.

#: The kinds of change log entries: (kind, fact, change, attribute, reason). The table
#: ``change_kinds`` holds the same rows (migration 0015 wrote them). A reason names the grant's
#: object type as ``<object>`` and the repositories a group reaches, counted at ``b`` and kept in
#: the entry's ``reach``, as ``<reach>``.
CHANGE_KINDS: tuple[tuple[int, str, str, str | None, str | None], ...] = (
    (1, "grant", "granted", None, None),
    (2, "grant", "revoked", None, None),
    (3, "grant", "raised", None, None),
    (4, "grant", "lowered", None, None),
    (5, "grant", "changed", None, None),
    (6, "grant", "added to group", None, "the group grants access to <reach> repositories"),
    (7, "grant", "removed from group", None, "the group grants access to <reach> repositories"),
    (8, "grant", "granted", None, "created <object>"),
    (9, "grant", "revoked", None, "deleted <object>"),
    (10, "object", "created", None, None),
    (11, "object", "deleted", None, None),
    (12, "object", "changed", "slug", None),
    (13, "object", "changed", "name", None),
    (14, "object", "changed", "is_private", None),
    (15, "object", "changed", "project", None),
)


def _kind(fact: str, change: str, attribute: str | None = None, reason: str | None = None) -> int:
    """The kind of entry that ``CHANGE_KINDS`` gives these; its reason by its first word."""
    found = [k for k, f, c, a, r in CHANGE_KINDS if (f, c, a) == (fact, change, attribute)
             and (r or "").startswith(reason or "") and (r is None) == (reason is None)]
    assert len(found) == 1, (fact, change, attribute, reason)
    return found[0]


#: The entries of one pair (``:a``, ``:b``), baseline apart, as ``change_log`` stores them. A
#: membership's reach is counted now: it describes the facts at ``b``, which never change.
LOG_SELECT = f"""SELECT c.b AS snapshot_id,
       CASE c.change WHEN 'created' THEN {_kind("object", "created")}
            WHEN 'deleted' THEN {_kind("object", "deleted")}
            ELSE CASE c.attribute WHEN 'slug' THEN {_kind("object", "changed", "slug")}
                 WHEN 'name' THEN {_kind("object", "changed", "name")}
                 WHEN 'is_private' THEN {_kind("object", "changed", "is_private")}
                 WHEN 'project' THEN {_kind("object", "changed", "project")} END END AS kind,
       c.old_id, c.new_id, NULL AS reach
  FROM object_changes c WHERE c.change <> 'baseline'
UNION ALL
SELECT c.b,
       CASE WHEN c.source = 'membership' AND c.change = 'granted'
            THEN {_kind("grant", "added to group", reason="the group")}
            WHEN c.source = 'membership' AND c.change = 'revoked'
            THEN {_kind("grant", "removed from group", reason="the group")}
            WHEN c.change = 'granted'
            THEN CASE WHEN {_OBJECT_EVENT} IS NULL THEN {_kind("grant", "granted")}
                      ELSE {_kind("grant", "granted", reason="created")} END
            WHEN c.change = 'revoked'
            THEN CASE WHEN {_OBJECT_EVENT} IS NULL THEN {_kind("grant", "revoked")}
                      ELSE {_kind("grant", "revoked", reason="deleted")} END
            WHEN c.change = 'raised' THEN {_kind("grant", "raised")}
            WHEN c.change = 'lowered' THEN {_kind("grant", "lowered")}
            ELSE {_kind("grant", "changed")} END,
       c.old_id, c.new_id,
       CASE WHEN c.source = 'membership' AND c.change IN ('revoked', 'granted')
            THEN {_GROUP_REACH} END
  FROM grant_changes c WHERE c.change <> 'baseline'"""

#: What the merge of snapshot ``:b`` writes, ``:a`` being the complete snapshot before it (0 for
#: the first), then ``BASELINE_SCOPES``. The entries are numbered within their snapshot
#: (``change_log`` is keyed by snapshot and number).
LOG_CHANGES = (
    "INSERT INTO change_log (id, snapshot_id, kind, old_id, new_id, reach)\n"
    + changes_sql(ONE_PAIR, f"SELECT row_number() OVER (), * FROM (\n{LOG_SELECT})")
)
#: The scopes whose rows of the pair are ``baseline``, by the rules above without running them over
#: every change (at ``huge`` that took about 1 s a night to find a few dozen scopes, and 24 s to
#: say that the first night's 4.9 million rows are baselines). A row is a baseline when its
#: scope was not read ok by ``a`` (so it had no version valid at ``a`` either: versions come
#: from ok reads); a scope's rows share that, so such a scope is a baseline scope when it opened
#: a version in (a, b] still valid at b, unless (for grants) its object appeared in a parent
#: listing read by ``a``, which makes its rows ``granted``. Every version opened in (a, b] comes
#: from an ok read in (a, b] (a pruned snapshot's reads move with its versions): the candidates
#: are found through the observations (each scope's, ``observation_runs`` being kept by scope), not
#: through the versions. The versions closed after b (only when an older pair's log is written
#: again) are gathered once, not per scope.
BASELINE_SCOPES = f"""INSERT INTO baseline_scopes (snapshot_id, scope_id, from_snapshot_id)
SELECT :b, s.id, :a FROM scopes s
 WHERE {latest_ok_read("s.id", ":b")} > :a
   AND NOT EXISTS (SELECT 1 FROM observation_runs x WHERE x.scope_id = s.id AND x.outcome = 'ok'
                      AND x.first_snapshot_id <= :a)
   AND (EXISTS (SELECT 1 FROM objects o WHERE o.scope_id = s.id AND o.valid_to IS NULL
                   AND o.valid_from > :a AND o.valid_from <= :b)
        OR s.id IN (SELECT scope_id FROM objects WHERE valid_to > :b
                      AND +valid_from > :a AND +valid_from <= :b)
        OR ((EXISTS (SELECT 1 FROM grant_versions g WHERE g.scope_id = s.id
                        AND g.valid_to IS NULL AND g.valid_from > :a AND g.valid_from <= :b)
             OR s.id IN (SELECT scope_id FROM grant_versions WHERE valid_to > :b
                           AND +valid_from > :a AND +valid_from <= :b))
            AND NOT (s.parent_scope_id IS NOT NULL
                     AND EXISTS (SELECT 1 FROM observation_runs x
                                  WHERE x.scope_id = s.parent_scope_id AND x.outcome = 'ok'
                                    AND x.first_snapshot_id <= :a)
                     AND NOT EXISTS (SELECT 1 FROM objects y
                                      WHERE y.scope_id = s.parent_scope_id
                                        AND y.uuid = s.object_uuid AND y.valid_from <= :a
                                        AND (y.valid_to IS NULL OR y.valid_to > :a))
                     AND EXISTS (SELECT 1 FROM objects y
                                  WHERE y.scope_id = s.parent_scope_id
                                    AND y.uuid = s.object_uuid AND y.valid_from <= :b
                                    AND (y.valid_to IS NULL OR y.valid_to > :b)))))"""
PREVIOUS_COMPLETE = (
    "SELECT coalesce(max(id), 0) FROM snapshots WHERE status = 'complete' AND id < :b"
)

#: An attribute's value in the object version ``{v}``, as the diff shows it.
_ATTRIBUTE = """CASE k.attribute WHEN 'slug' THEN {v}.slug WHEN 'name' THEN {v}.name
            WHEN 'is_private' THEN CASE {v}.is_private WHEN 1 THEN 'true' WHEN 0 THEN 'false' END
            WHEN 'project' THEN (SELECT p.slug FROM objects p WHERE p.uuid = {v}.parent_uuid
                                  ORDER BY p.id DESC LIMIT 1) END"""

#: The complete snapshot before snapshot ``sn``, 0 for none: what its change log compares it with.
_FROM_SNAPSHOT = """coalesce((SELECT p.id FROM snapshots p WHERE p.status = 'complete'
                    AND p.id < sn.id ORDER BY p.id DESC LIMIT 1), 0)"""

#: ``access_changes``: the log, read through the versions and the kinds it names, and the baseline
#: rows it stands for. Snapshots come first, then what they opened (``CROSS JOIN`` fixes the
#: order): a question about last week, by ``snapshot_id`` or ``snapshot_at``, reads last week's
#: only.
ACCESS_CHANGES_SQL = f"""SELECT c.snapshot_id, sn.finished_at AS snapshot_at,
       {_FROM_SNAPSHOT} AS from_snapshot_id,
       coalesce(w.label, s.workspace_uuid) AS workspace,
       coalesce(nv.object_type, ov.object_type) AS object_type,
       coalesce(l.label, nv.uuid, ov.uuid) AS object_name,
       NULL AS subject_type, NULL AS subject_name, k.change, k.attribute,
       {_ATTRIBUTE.format(v="ov")} AS old_value,
       {_ATTRIBUTE.format(v="nv")} AS new_value,
       NULL AS source, NULL AS reason, NULL AS subject_uuid,
       coalesce(nv.uuid, ov.uuid) AS object_uuid, s.id AS scope_id
  FROM snapshots sn
  CROSS JOIN change_log c ON c.snapshot_id = sn.id
                         AND c.kind IN (SELECT kind FROM change_kinds WHERE fact = 'object')
  CROSS JOIN change_kinds k ON k.kind = c.kind
  LEFT JOIN objects ov ON ov.id = c.old_id
  LEFT JOIN objects nv ON nv.id = c.new_id
  CROSS JOIN scopes s ON s.id = coalesce(nv.scope_id, ov.scope_id)
  LEFT JOIN object_labels w ON w.uuid = s.workspace_uuid AND w.object_type = 'workspace'
  LEFT JOIN object_labels l ON l.uuid = coalesce(nv.uuid, ov.uuid)
UNION ALL
SELECT c.snapshot_id, sn.finished_at,
       {_FROM_SNAPSHOT},
       coalesce(w.label, s.workspace_uuid), g.object_type, coalesce(l.label, gn.uuid),
       g.subject_type, coalesce(u.display_name, sl.label, gs.uuid), k.change, NULL,
       og.permission, ng.permission, s.source,
       replace(replace(k.reason, '<object>', g.object_type), '<reach>', coalesce(c.reach, '')),
       gs.uuid, gn.uuid, s.id
  FROM snapshots sn
  CROSS JOIN change_log c ON c.snapshot_id = sn.id
                         AND c.kind IN (SELECT kind FROM change_kinds WHERE fact = 'grant')
  CROSS JOIN change_kinds k ON k.kind = c.kind
  LEFT JOIN grant_versions og ON og.id = c.old_id
  LEFT JOIN grant_versions ng ON ng.id = c.new_id
  CROSS JOIN grant_versions g ON g.id = coalesce(c.new_id, c.old_id)
  CROSS JOIN scopes s ON s.id = g.scope_id
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
 WHERE g.valid_to IS NULL OR g.valid_to > sn.id"""

#: The latest complete snapshot, as ``access_changes`` reads its snapshots.
_LATEST_COMPLETE = (
    "(SELECT * FROM snapshots\n"
    "         WHERE id = (SELECT max(id) FROM snapshots WHERE status = 'complete'))"
)
#: ``latest_access_changes``: ``access_changes`` of the latest complete snapshot, each branch
#: starting from it. The same filter on ``access_changes`` (``snapshot_id = (SELECT max(id) ...)``)
#: reads every night first: SQLite moves no filter holding a subquery into a view's branches.
LATEST_ACCESS_CHANGES_SQL = ACCESS_CHANGES_SQL.replace(
    "  FROM snapshots sn\n", f"  FROM {_LATEST_COMPLETE} sn\n"
)
