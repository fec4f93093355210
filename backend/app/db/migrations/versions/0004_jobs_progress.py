"""jobs.progress: in-epoch progress of a running job (batch, rates), overwritten in place.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable JSON column ``jobs.progress``."""
    op.add_column("jobs", sa.Column("progress", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop ``jobs.progress``."""
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("progress")
