"""``change_log`` keeps an entry as a few small integers: about 20 bytes, not 45.

The change log grows by an entry per change, every night: after 365 nights of ``medium`` it was
the largest table (13 MB; the grant versions' table is 8 MB). An entry held its comparison
(``from_snapshot_id``), its scope and its change, attribute and reason as text; all of these are
known elsewhere. Now an entry is (``snapshot_id``, ``id``, ``kind``, ``old_id``, ``new_id``,
``reach``):

- ``kind`` names a row of the new table ``change_kinds``: the fact, the change, the attribute and
  the form of the reason (``created <object>``, ``the group grants access to <reach>
  repositories``);
- ``reach`` keeps the one number a reason needs, for a membership change;
- the scope is the versions' own, and ``from_snapshot_id`` is the complete snapshot before
  (``prune`` writes the entries again where it removes it).

``access_changes`` and ``latest_access_changes`` read them so: their columns and rows are
unchanged. Before the old table goes, every new entry is read back as the old table held it; if
one differs (an entry of no known kind, say), the upgrade stops and the database is as it was.
Going back writes every entry out as before.

The SQL is written out in full so that this revision never changes.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op
from alembic.script import ScriptDirectory

from exporter.errors import DatabaseError

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

CHANGE_KINDS = (
    "CREATE TABLE change_kinds (kind INTEGER NOT NULL, fact TEXT NOT NULL, change TEXT NOT NULL, "
    "attribute TEXT, reason TEXT, CONSTRAINT pk_change_kinds PRIMARY KEY (kind))",
    """INSERT INTO change_kinds (kind, fact, change, attribute, reason) VALUES
    (1, 'grant', 'granted', NULL, NULL),
    (2, 'grant', 'revoked', NULL, NULL),
    (3, 'grant', 'raised', NULL, NULL),
    (4, 'grant', 'lowered', NULL, NULL),
    (5, 'grant', 'changed', NULL, NULL),
    (6, 'grant', 'added to group', NULL, 'the group grants access to <reach> repositories'),
    (7, 'grant', 'removed from group', NULL, 'the group grants access to <reach> repositories'),
    (8, 'grant', 'granted', NULL, 'created <object>'),
    (9, 'grant', 'revoked', NULL, 'deleted <object>'),
    (10, 'object', 'created', NULL, NULL),
    (11, 'object', 'deleted', NULL, NULL),
    (12, 'object', 'changed', 'slug', NULL),
    (13, 'object', 'changed', 'name', NULL),
    (14, 'object', 'changed', 'is_private', NULL),
    (15, 'object', 'changed', 'project', NULL)""",
)

#: The complete snapshot before ``{s}``, 0 for none.
_FROM = """coalesce((SELECT p.id FROM snapshots p WHERE p.status = 'complete'
                    AND p.id < {s} ORDER BY p.id DESC LIMIT 1), 0)"""

#: Each entry of ``{table}`` (by kind) as the table by text held it.
_AS_TEXT = (
    "SELECT c.snapshot_id, c.id, " + _FROM.format(s="c.snapshot_id") + " AS from_snapshot_id,"
    + """
              coalesce(g.scope_id, o.scope_id) AS scope_id, k.fact, c.old_id, c.new_id, k.change,
              k.attribute,
              replace(replace(k.reason, '<object>', g.object_type), '<reach>',
                      coalesce(c.reach, '')) AS reason
         FROM {table} c
         JOIN change_kinds k ON k.kind = c.kind
         LEFT JOIN grant_versions g ON k.fact = 'grant' AND g.id = coalesce(c.new_id, c.old_id)
         LEFT JOIN objects o ON k.fact = 'object' AND o.id = coalesce(c.new_id, c.old_id)"""
)

COPY = (
    *CHANGE_KINDS,
    "CREATE TABLE change_log_by_kind (snapshot_id INTEGER NOT NULL, id INTEGER NOT NULL, "
    "kind INTEGER NOT NULL, old_id INTEGER, new_id INTEGER, reach INTEGER, "
    "CONSTRAINT pk_change_log PRIMARY KEY (snapshot_id, id)) WITHOUT ROWID",
    # A reason is the change's word and the object type, or a group's reach.
    """INSERT INTO change_log_by_kind (snapshot_id, id, kind, old_id, new_id, reach)
       SELECT c.snapshot_id, c.id, k.kind, c.old_id, c.new_id,
              CASE WHEN c.reason LIKE 'the group grants access to %'
                   THEN CAST(substr(c.reason, 28) AS INTEGER) END
         FROM change_log c
         JOIN change_kinds k ON k.fact = c.fact AND k.change = c.change
                            AND k.attribute IS c.attribute
                            AND (k.reason IS NULL) = (c.reason IS NULL)
        ORDER BY c.snapshot_id, c.id""",
)
#: The entries the copy would not give back as they were (no kind of theirs, or another
#: scope, snapshot compared with or reason), and how many: the first one described.
CHECK = f"""SELECT count(*), min(c.snapshot_id || ', entry ' || c.id || ': ' || c.fact || ' '
                                 || quote(c.change) || ', reason ' || quote(c.reason))
  FROM change_log c
  LEFT JOIN ({_AS_TEXT.format(table="change_log_by_kind")}) r
    ON r.snapshot_id = c.snapshot_id AND r.id = c.id
 WHERE r.id IS NULL OR r.from_snapshot_id IS NOT c.from_snapshot_id
    OR r.scope_id IS NOT c.scope_id OR r.reason IS NOT c.reason"""
SWAP = (
    "DROP TABLE change_log",
    "ALTER TABLE change_log_by_kind RENAME TO change_log",
)

DOWNGRADE = (
    "CREATE TABLE change_log_by_text (snapshot_id INTEGER NOT NULL, id INTEGER NOT NULL, "
    "from_snapshot_id INTEGER NOT NULL, scope_id INTEGER NOT NULL, fact TEXT NOT NULL, "
    "old_id INTEGER, new_id INTEGER, change TEXT NOT NULL, attribute TEXT, reason TEXT, "
    "CONSTRAINT pk_change_log PRIMARY KEY (snapshot_id, id)) WITHOUT ROWID",
    f"""INSERT INTO change_log_by_text (snapshot_id, id, from_snapshot_id, scope_id, fact, old_id,
                                       new_id, change, attribute, reason)
       {_AS_TEXT.format(table="change_log")}
        ORDER BY c.snapshot_id, c.id""",
    "DROP TABLE change_log",
    "ALTER TABLE change_log_by_text RENAME TO change_log",
    "DROP TABLE change_kinds",
)

ACCESS_CHANGES_SQL = """SELECT c.snapshot_id, sn.finished_at AS snapshot_at,
       coalesce((SELECT p.id FROM snapshots p WHERE p.status = 'complete'
                    AND p.id < sn.id ORDER BY p.id DESC LIMIT 1), 0) AS from_snapshot_id,
       coalesce(w.label, s.workspace_uuid) AS workspace,
       coalesce(nv.object_type, ov.object_type) AS object_type,
       coalesce(l.label, nv.uuid, ov.uuid) AS object_name,
       NULL AS subject_type, NULL AS subject_name, k.change, k.attribute,
       CASE k.attribute WHEN 'slug' THEN ov.slug WHEN 'name' THEN ov.name
            WHEN 'is_private' THEN CASE ov.is_private WHEN 1 THEN 'true' WHEN 0 THEN 'false' END
            WHEN 'project' THEN (SELECT p.slug FROM objects p WHERE p.uuid = ov.parent_uuid
                                  ORDER BY p.id DESC LIMIT 1) END AS old_value,
       CASE k.attribute WHEN 'slug' THEN nv.slug WHEN 'name' THEN nv.name
            WHEN 'is_private' THEN CASE nv.is_private WHEN 1 THEN 'true' WHEN 0 THEN 'false' END
            WHEN 'project' THEN (SELECT p.slug FROM objects p WHERE p.uuid = nv.parent_uuid
                                  ORDER BY p.id DESC LIMIT 1) END AS new_value,
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
       coalesce((SELECT p.id FROM snapshots p WHERE p.status = 'complete'
                    AND p.id < sn.id ORDER BY p.id DESC LIMIT 1), 0),
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

LATEST_ACCESS_CHANGES_SQL = """SELECT c.snapshot_id, sn.finished_at AS snapshot_at,
       coalesce((SELECT p.id FROM snapshots p WHERE p.status = 'complete'
                    AND p.id < sn.id ORDER BY p.id DESC LIMIT 1), 0) AS from_snapshot_id,
       coalesce(w.label, s.workspace_uuid) AS workspace,
       coalesce(nv.object_type, ov.object_type) AS object_type,
       coalesce(l.label, nv.uuid, ov.uuid) AS object_name,
       NULL AS subject_type, NULL AS subject_name, k.change, k.attribute,
       CASE k.attribute WHEN 'slug' THEN ov.slug WHEN 'name' THEN ov.name
            WHEN 'is_private' THEN CASE ov.is_private WHEN 1 THEN 'true' WHEN 0 THEN 'false' END
            WHEN 'project' THEN (SELECT p.slug FROM objects p WHERE p.uuid = ov.parent_uuid
                                  ORDER BY p.id DESC LIMIT 1) END AS old_value,
       CASE k.attribute WHEN 'slug' THEN nv.slug WHEN 'name' THEN nv.name
            WHEN 'is_private' THEN CASE nv.is_private WHEN 1 THEN 'true' WHEN 0 THEN 'false' END
            WHEN 'project' THEN (SELECT p.slug FROM objects p WHERE p.uuid = nv.parent_uuid
                                  ORDER BY p.id DESC LIMIT 1) END AS new_value,
       NULL AS source, NULL AS reason, NULL AS subject_uuid,
       coalesce(nv.uuid, ov.uuid) AS object_uuid, s.id AS scope_id
  FROM (SELECT * FROM snapshots
         WHERE id = (SELECT max(id) FROM snapshots WHERE status = 'complete')) sn
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
       coalesce((SELECT p.id FROM snapshots p WHERE p.status = 'complete'
                    AND p.id < sn.id ORDER BY p.id DESC LIMIT 1), 0),
       coalesce(w.label, s.workspace_uuid), g.object_type, coalesce(l.label, gn.uuid),
       g.subject_type, coalesce(u.display_name, sl.label, gs.uuid), k.change, NULL,
       og.permission, ng.permission, s.source,
       replace(replace(k.reason, '<object>', g.object_type), '<reach>', coalesce(c.reach, '')),
       gs.uuid, gn.uuid, s.id
  FROM (SELECT * FROM snapshots
         WHERE id = (SELECT max(id) FROM snapshots WHERE status = 'complete')) sn
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
  FROM (SELECT * FROM snapshots
         WHERE id = (SELECT max(id) FROM snapshots WHERE status = 'complete')) sn
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
  FROM (SELECT * FROM snapshots
         WHERE id = (SELECT max(id) FROM snapshots WHERE status = 'complete')) sn
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

VIEWS = (
    ("access_changes", ACCESS_CHANGES_SQL),
    ("latest_access_changes", LATEST_ACCESS_CHANGES_SQL),
)


def _run(statements: tuple[str, ...]) -> None:
    # The views are created again below; the renaming need not rewrite them.
    op.execute("PRAGMA legacy_alter_table = ON")
    try:
        for statement in statements:
            op.execute(statement)
    finally:
        op.execute("PRAGMA legacy_alter_table = OFF")


def upgrade() -> None:
    for name, _sql in VIEWS:
        op.execute(f"DROP VIEW {name}")
    _run(COPY)
    wrong, first = op.get_bind().exec_driver_sql(CHECK).one()
    if wrong:  # the transaction is rolled back: nothing is changed
        raise DatabaseError(
            f"{wrong} of the change log's entries cannot be kept as they are (the first: snapshot "
            f"{first}), so the database was not upgraded and is as it was; use the bbaccess "
            "that wrote it, and report this message"
        )
    _run(SWAP)
    for name, sql in VIEWS:
        op.execute(f"CREATE VIEW {name} AS\n{sql}")


def downgrade() -> None:
    scripts = ScriptDirectory.from_config(op.get_context().config)
    previous = {
        "access_changes": dict(scripts.get_revision("0010").module.VIEWS)["access_changes"],
        "latest_access_changes": scripts.get_revision("0013").module.LATEST_ACCESS_CHANGES_SQL,
    }
    for name, _sql in VIEWS:
        op.execute(f"DROP VIEW {name}")
    _run(DOWNGRADE)
    for name, _sql in VIEWS:
        op.execute(f"CREATE VIEW {name} AS\n{previous[name]}")
