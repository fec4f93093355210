"""Initial schema: users, api_tokens, runs, jobs, preferences, metric_points, artifacts.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _id() -> sa.types.TypeEngine:
    """BIGINT ids on PostgreSQL, INTEGER PRIMARY KEY (rowid alias) on SQLite."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _fk(column: str, target: str, ondelete: str = "CASCADE") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [target], ondelete=ondelete)


def upgrade() -> None:
    """Create every table and index."""
    op.create_table(
        "users",
        sa.Column("id", _id(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", _id(), nullable=False),
        sa.Column("user_id", _id(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(12), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("last_used_at", _ts(), nullable=True),
        sa.Column("revoked_at", _ts(), nullable=True),
        _fk("user_id", "users.id"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    op.create_table(
        "runs",
        sa.Column("id", _id(), nullable=False),
        sa.Column("owner_id", _id(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("problem", sa.String(200), nullable=False),
        sa.Column("problem_options", sa.JSON(), nullable=False),
        sa.Column("method", sa.String(100), nullable=False),
        sa.Column("hyperparameters", sa.JSON(), nullable=False),
        sa.Column("training", sa.JSON(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("n_tasks", sa.Integer(), nullable=False),
        sa.Column("task_names", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        _fk("owner_id", "users.id"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_runs_owner_id", "runs", ["owner_id"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_table(
        "jobs",
        sa.Column("id", _id(), nullable=False),
        sa.Column("run_id", _id(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_token", sa.Integer(), nullable=False),
        sa.Column("lease_expires_at", _ts(), nullable=True),
        sa.Column("heartbeat_at", _ts(), nullable=True),
        sa.Column("device", sa.String(50), nullable=True),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("epochs", sa.Integer(), nullable=False),
        sa.Column("warm_start", sa.JSON(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("started_at", _ts(), nullable=True),
        sa.Column("finished_at", _ts(), nullable=True),
        _fk("run_id", "runs.id"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_jobs_run_id", "jobs", ["run_id"])
    op.create_index("ix_jobs_state_id", "jobs", ["state", "id"])
    op.create_table(
        "preferences",
        sa.Column("id", _id(), nullable=False),
        sa.Column("run_id", _id(), nullable=False),
        sa.Column("job_id", _id(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("vector", sa.JSON(), nullable=False),
        sa.Column("warm_started_from", _id(), nullable=True),
        sa.Column("diverged", sa.Boolean(), nullable=False),
        sa.Column("diverged_epoch", sa.Integer(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        _fk("job_id", "jobs.id"),
        _fk("run_id", "runs.id"),
        _fk("warm_started_from", "preferences.id", ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "index"),
    )
    op.create_index("ix_preferences_job_id", "preferences", ["job_id"])
    op.create_index("ix_preferences_run_id", "preferences", ["run_id"])
    op.create_table(
        "artifacts",
        sa.Column("id", _id(), nullable=False),
        sa.Column("run_id", _id(), nullable=False),
        sa.Column("job_id", _id(), nullable=False),
        sa.Column("preference_id", _id(), nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        _fk("job_id", "jobs.id"),
        _fk("preference_id", "preferences.id"),
        _fk("run_id", "runs.id"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "kind", "epoch", "preference_id"),
    )
    op.create_index("ix_artifacts_job_id", "artifacts", ["job_id"])
    op.create_index("ix_artifacts_run_id", "artifacts", ["run_id"])
    op.create_table(
        "metric_points",
        sa.Column("seq", _id(), autoincrement=True, nullable=False),
        sa.Column("run_id", _id(), nullable=False),
        sa.Column("job_id", _id(), nullable=False),
        sa.Column("preference_id", _id(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(10), nullable=False),
        sa.Column("losses", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("wall_time", sa.Float(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        _fk("job_id", "jobs.id"),
        _fk("preference_id", "preferences.id"),
        _fk("run_id", "runs.id"),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("preference_id", "epoch", "split"),
    )
    op.create_index("ix_metric_points_job_id", "metric_points", ["job_id"])
    op.create_index("ix_metric_points_preference_id", "metric_points", ["preference_id"])
    op.create_index("ix_metric_points_run_seq", "metric_points", ["run_id", "seq"])


def downgrade() -> None:
    """Drop every table (children first)."""
    for table in ("metric_points", "artifacts", "preferences", "jobs", "runs", "api_tokens"):
        op.drop_table(table)
    op.drop_table("users")
