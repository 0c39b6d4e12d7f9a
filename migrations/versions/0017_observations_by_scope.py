"""``observations`` is stored by scope, and its second copy by scope (``ix_observations_scope``)
is gone.

Every question bbaccess asks of ``observations`` but one is asked of a scope: its latest ok
observation at or before a snapshot, whether it was read ok between two snapshots, its first ok
read. The table was kept by (``snapshot_id``, ``scope_id``) and answered those through an index
by (``scope_id``, ``outcome``, ``snapshot_id``) that held every row a second time: after 365
nights of ``medium``, 3.7 MB of observations and 3.0 MB of index. Now the table is kept by that
index's key, and the index goes. A scope's latest ok observation is one look-up whatever came
after it (kept by (``scope_id``, ``snapshot_id``) alone, it was found by reading back over every
failed or forbidden read since: a workspace's listing forbidden for a year made a reading of
``current_access`` 26 times slower). The questions asked of one snapshot (what it read, how its
reads ended) ask each scope in turn, for each outcome.

The key's columns become the table's first ones, in its order (SQLite 3.40's ``quick_check``
misreads a table without rowid whose key columns are not its first ones); the other columns are
as they were. A scope's observation at a snapshot stays one row: bbaccess writes one, and
replaces it (a closure) by deleting it first. Going back restores the table and its index as at
0016.

The SQL is written out in full so that this revision never changes.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_FOREIGN_KEYS = (
    "CONSTRAINT fk_observations_snapshot_id_snapshots FOREIGN KEY(snapshot_id) "
    "REFERENCES snapshots (id), "
    "CONSTRAINT fk_observations_scope_id_scopes FOREIGN KEY(scope_id) REFERENCES scopes (id)"
)
_REST = "detail TEXT, closure TEXT, requests INTEGER NOT NULL DEFAULT 0"
_COLUMNS = "scope_id, outcome, snapshot_id, detail, closure, requests"

UPGRADE = (
    f"CREATE TABLE observations_by_scope (scope_id INTEGER NOT NULL, outcome TEXT NOT NULL, "
    f"snapshot_id INTEGER NOT NULL, {_REST}, "
    f"CONSTRAINT pk_observations PRIMARY KEY (scope_id, outcome, snapshot_id), "
    f"{_FOREIGN_KEYS}) WITHOUT ROWID",
    f"INSERT INTO observations_by_scope ({_COLUMNS}) SELECT {_COLUMNS} FROM observations "
    "ORDER BY scope_id, outcome, snapshot_id",
    "DROP TABLE observations",
    "ALTER TABLE observations_by_scope RENAME TO observations",
)
DOWNGRADE = (
    f"CREATE TABLE observations_by_snapshot (snapshot_id INTEGER NOT NULL, "
    f"scope_id INTEGER NOT NULL, outcome TEXT NOT NULL, {_REST}, "
    f"CONSTRAINT pk_observations PRIMARY KEY (snapshot_id, scope_id), {_FOREIGN_KEYS}) "
    "WITHOUT ROWID",
    f"INSERT INTO observations_by_snapshot ({_COLUMNS}) SELECT {_COLUMNS} FROM observations "
    "ORDER BY snapshot_id, scope_id",
    "DROP TABLE observations",
    "ALTER TABLE observations_by_snapshot RENAME TO observations",
    "CREATE INDEX ix_observations_scope ON observations (scope_id, outcome, snapshot_id)",
)


def _run(statements: tuple[str, ...]) -> None:
    # The views read the table by name: SQLite need not rewrite them for the renaming.
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
