"""Labels looked up, not computed: a ``labels`` table (every object's newest label, refreshed by
the writer when a snapshot completes) behind the ``object_labels`` view, and ``users`` without a
rowid, so that a view labelling 400,000 rows finds each label and name with one primary-key search.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: How ``labels`` is filled: the body of the ``object_labels`` view of 0001, frozen here.
LABELS_SQL = """SELECT o.uuid, o.object_type,
       CASE WHEN o.object_type = 'workspace' THEN o.slug
            ELSE coalesce((SELECT w.slug FROM objects w
                            WHERE w.uuid = s.workspace_uuid AND w.object_type = 'workspace'
                            ORDER BY w.id DESC LIMIT 1), s.workspace_uuid) || '/' || o.slug
       END AS label,
       o.name, s.workspace_uuid
  FROM objects o JOIN scopes s ON s.id = o.scope_id
 WHERE o.id = (SELECT max(x.id) FROM objects x WHERE x.uuid = o.uuid)"""

USER_COLUMNS = "uuid, display_name, nickname, account_id, last_seen"


def _rebuild_users(*, with_rowid: bool) -> None:
    op.execute(
        "CREATE TABLE users_rebuilt (uuid TEXT NOT NULL, display_name TEXT NOT NULL, "
        "nickname TEXT, account_id TEXT, last_seen INTEGER, "
        "CONSTRAINT pk_users PRIMARY KEY (uuid))" + ("" if with_rowid else " WITHOUT ROWID")
    )
    op.execute(f"INSERT INTO users_rebuilt ({USER_COLUMNS}) SELECT {USER_COLUMNS} FROM users")
    op.execute("DROP TABLE users")
    op.execute("ALTER TABLE users_rebuilt RENAME TO users")


def _drop_views() -> list[tuple[str, str]]:
    """Drop every view (SQLite refuses to rename a table while a view names a missing one) and
    return them, name and CREATE statement, in the order they were created."""
    rows = op.get_bind().execute(
        sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'view' ORDER BY rowid")
    )
    views = [(str(name), str(sql)) for name, sql in rows]
    for name, _sql in reversed(views):
        op.execute(f"DROP VIEW {name}")
    return views


def _create_views(views: list[tuple[str, str]], object_labels: str) -> None:
    for name, sql in views:
        op.execute(f"CREATE VIEW object_labels AS\n{object_labels}" if name == "object_labels"
                   else sql)


def upgrade() -> None:
    views = _drop_views()
    _rebuild_users(with_rowid=False)
    op.execute(
        "CREATE TABLE labels (uuid TEXT NOT NULL, object_type TEXT NOT NULL, label TEXT NOT NULL, "
        "name TEXT, workspace_uuid TEXT, CONSTRAINT pk_labels PRIMARY KEY (uuid)) WITHOUT ROWID"
    )
    op.execute(f"INSERT INTO labels (uuid, object_type, label, name, workspace_uuid)\n{LABELS_SQL}")
    _create_views(views, "SELECT uuid, object_type, label, name, workspace_uuid FROM labels")


def downgrade() -> None:
    views = _drop_views()
    op.execute("DROP TABLE labels")
    _rebuild_users(with_rowid=True)
    _create_views(views, LABELS_SQL)
