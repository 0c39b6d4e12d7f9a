"""``observations`` and ``change_log`` are stored by their key, without a rowid.

Both grow by every night: ``observations`` by a row per scope read, ``change_log`` by a row per
change. Each was a table by rowid with its key in a second B-tree beside it (the primary key
of ``observations``, ``ix_change_log_snapshot``), so that every row was stored twice. Stored by
their key (``WITHOUT ROWID``) they are stored once: after 365 nights of ``medium``, 11.4 MB of
observations take 6.7 MB, 15.1 MB of change log 12 MB.

``change_log`` is keyed by (``snapshot_id``, ``id``), its key columns first (SQLite 3.40's
``quick_check`` misreads a table without rowid whose key columns are not its first ones). An
entry's ``id`` numbers it within its snapshot; the ids of the entries already written are kept.
Going back numbers every entry again, in order of snapshot and id.

The SQL is written out in full so that this revision never changes.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_OBSERVATION_COLUMNS = (
    "snapshot_id INTEGER NOT NULL, scope_id INTEGER NOT NULL, outcome TEXT NOT NULL, "
    "detail TEXT, closure TEXT, requests INTEGER NOT NULL DEFAULT 0, "
    "CONSTRAINT pk_observations PRIMARY KEY (snapshot_id, scope_id), "
    "CONSTRAINT fk_observations_snapshot_id_snapshots FOREIGN KEY(snapshot_id) "
    "REFERENCES snapshots (id), "
    "CONSTRAINT fk_observations_scope_id_scopes FOREIGN KEY(scope_id) REFERENCES scopes (id)"
)
_OBSERVATIONS = "snapshot_id, scope_id, outcome, detail, closure, requests"
_CHANGES = "from_snapshot_id, scope_id, fact, old_id, new_id, change, attribute, reason"
_CHANGE_COLUMNS = (
    "from_snapshot_id INTEGER NOT NULL, scope_id INTEGER NOT NULL, fact TEXT NOT NULL, "
    "old_id INTEGER, new_id INTEGER, change TEXT NOT NULL, attribute TEXT, reason TEXT"
)

UPGRADE = (
    f"CREATE TABLE observations_by_key ({_OBSERVATION_COLUMNS}) WITHOUT ROWID",
    f"INSERT INTO observations_by_key ({_OBSERVATIONS}) SELECT {_OBSERVATIONS} "
    "FROM observations ORDER BY snapshot_id, scope_id",
    "DROP TABLE observations",
    "ALTER TABLE observations_by_key RENAME TO observations",
    "CREATE INDEX ix_observations_scope ON observations (scope_id, outcome, snapshot_id)",
    f"CREATE TABLE change_log_by_key (snapshot_id INTEGER NOT NULL, id INTEGER NOT NULL, "
    f"{_CHANGE_COLUMNS}, CONSTRAINT pk_change_log PRIMARY KEY (snapshot_id, id)) WITHOUT ROWID",
    f"INSERT INTO change_log_by_key (snapshot_id, id, {_CHANGES}) "
    f"SELECT snapshot_id, id, {_CHANGES} FROM change_log ORDER BY snapshot_id, id",
    "DROP TABLE change_log",
    "ALTER TABLE change_log_by_key RENAME TO change_log",
)
DOWNGRADE = (
    f"CREATE TABLE observations_by_rowid ({_OBSERVATION_COLUMNS})",
    f"INSERT INTO observations_by_rowid ({_OBSERVATIONS}) SELECT {_OBSERVATIONS} "
    "FROM observations ORDER BY snapshot_id, scope_id",
    "DROP TABLE observations",
    "ALTER TABLE observations_by_rowid RENAME TO observations",
    "CREATE INDEX ix_observations_scope ON observations (scope_id, outcome, snapshot_id)",
    f"CREATE TABLE change_log_by_rowid (id INTEGER NOT NULL, snapshot_id INTEGER NOT NULL, "
    f"{_CHANGE_COLUMNS}, CONSTRAINT pk_change_log PRIMARY KEY (id))",
    f"INSERT INTO change_log_by_rowid (id, snapshot_id, {_CHANGES}) "
    f"SELECT row_number() OVER (ORDER BY snapshot_id, id), snapshot_id, {_CHANGES} "
    "FROM change_log ORDER BY snapshot_id, id",
    "DROP TABLE change_log",
    "ALTER TABLE change_log_by_rowid RENAME TO change_log",
    "CREATE INDEX ix_change_log_snapshot ON change_log (snapshot_id)",
)


def _run(statements: tuple[str, ...]) -> None:
    # The views read both tables by name: SQLite need not rewrite them for the renaming.
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
