"""A workspace-wide listing is staged as what changed, not whole.

At ``huge`` a night staged 5 million grants, nearly all of them as they were, and the merge
compared each with its open version and each open version with the stage: most of a 70 s
merge and most of the bytes a night wrote. Now the writer loads a listing's open grants when
its first page arrives and stages only the rows that differ, and the versions that no page
showed in ``stage_gone``; ``stage_observations.delta`` tells the merge which scopes were staged
this way. The stage is empty between runs.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE stage_observations ADD COLUMN delta BOOLEAN NOT NULL DEFAULT 0")
    op.execute(
        "CREATE TABLE stage_gone (snapshot_id INTEGER NOT NULL, scope_id INTEGER NOT NULL, "
        "grant_id INTEGER NOT NULL)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE stage_gone")
    op.execute("ALTER TABLE stage_observations DROP COLUMN delta")
