"""The stage leaves the database for a file of its own (``PATH-stage``).

What a running snapshot fetches was staged in tables of the database: written twice (to the
write-ahead log, then to the file), and emptied by the merge, which left its pages free in the
file. At ``huge`` a first night left 1.07 GB of the 2.82 GB file free, and wrote the stage's
gigabyte twice. The stage now lives in ``PATH-stage``, attached to every connection of a
writing engine as ``stage`` (``database.STAGE_TABLES_DDL`` creates its tables), written once,
with its journal in memory and never synced: nothing of it is needed after the run, which
removes the file at its start and its end. The stage is empty between runs: dropped here, not
moved.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TABLES = ("stage_observations", "stage_objects", "stage_grants", "stage_users", "stage_gone")


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TABLE IF EXISTS main.{table}")


def downgrade() -> None:
    op.execute(
        "CREATE TABLE main.stage_observations (snapshot_id INTEGER NOT NULL, "
        "scope_id INTEGER NOT NULL, outcome TEXT NOT NULL, detail TEXT, "
        "requests INTEGER NOT NULL DEFAULT 0, delta BOOLEAN NOT NULL DEFAULT 0, "
        "CONSTRAINT pk_stage_observations PRIMARY KEY (snapshot_id, scope_id))"
    )
    op.execute(
        "CREATE TABLE main.stage_objects (snapshot_id INTEGER NOT NULL, "
        "scope_id INTEGER NOT NULL, uuid TEXT NOT NULL, object_type TEXT NOT NULL, "
        "slug TEXT NOT NULL, name TEXT NOT NULL, is_private BOOLEAN, parent_uuid TEXT)"
    )
    op.execute(
        "CREATE TABLE main.stage_grants (snapshot_id INTEGER NOT NULL, "
        "scope_id INTEGER NOT NULL, subject_type TEXT NOT NULL, subject_uuid TEXT NOT NULL, "
        "object_type TEXT NOT NULL, object_uuid TEXT NOT NULL, permission TEXT NOT NULL)"
    )
    op.execute(
        "CREATE TABLE main.stage_users (snapshot_id INTEGER NOT NULL, "
        "scope_id INTEGER NOT NULL, uuid TEXT NOT NULL, display_name TEXT NOT NULL, "
        "nickname TEXT, account_id TEXT)"
    )
    op.execute(
        "CREATE TABLE main.stage_gone (snapshot_id INTEGER NOT NULL, scope_id INTEGER NOT NULL, "
        "grant_id INTEGER NOT NULL)"
    )
