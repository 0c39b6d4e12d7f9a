"""The stage as plain heaps: staged rows are appended, and keyed only when the snapshot merges.

A key on each stage table made every staged row an insert at a random place of a B-tree (uuids
are random): at ``huge`` that rewrote about a page per row, 12 GB to stage 4.7 million grants
of a 3 GB database. The merge now builds the keys once, by sorting, then drops them with the
staged rows. The stage is empty between runs: its tables are rebuilt, not migrated.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = {
    "stage_objects": "snapshot_id INTEGER NOT NULL, scope_id INTEGER NOT NULL, uuid TEXT NOT NULL, "
    "object_type TEXT NOT NULL, slug TEXT NOT NULL, name TEXT NOT NULL, is_private BOOLEAN, "
    "parent_uuid TEXT",
    "stage_grants": "snapshot_id INTEGER NOT NULL, scope_id INTEGER NOT NULL, "
    "subject_type TEXT NOT NULL, subject_uuid TEXT NOT NULL, object_type TEXT NOT NULL, "
    "object_uuid TEXT NOT NULL, permission TEXT NOT NULL",
    "stage_users": "snapshot_id INTEGER NOT NULL, scope_id INTEGER NOT NULL, uuid TEXT NOT NULL, "
    "display_name TEXT NOT NULL, nickname TEXT, account_id TEXT",
}
KEYS = {
    "stage_objects": "snapshot_id, scope_id, uuid",
    "stage_grants": "snapshot_id, scope_id, subject_uuid, object_uuid",
    "stage_users": "snapshot_id, scope_id, uuid",
}


def _rebuild(*, keyed: bool) -> None:
    for table, columns in COLUMNS.items():
        op.execute(f"DROP TABLE {table}")
        key = f", CONSTRAINT pk_{table} PRIMARY KEY ({KEYS[table]})" if keyed else ""
        op.execute(f"CREATE TABLE {table} ({columns}{key})")


def upgrade() -> None:
    _rebuild(keyed=False)


def downgrade() -> None:
    _rebuild(keyed=True)
