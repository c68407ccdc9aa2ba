"""privacy budgets of data sets and their ledger

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 11:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "privacy_budgets",
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("epsilon", sa.Double(), nullable=False),
        sa.Column("delta", sa.Double(), nullable=False),
        sa.Column("allow_non_private", sa.Boolean(), nullable=False),
        sa.Column("updated_by_id", sa.String(length=32), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_privacy_budgets_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dataset_id", name=op.f("pk_privacy_budgets")),
    )
    op.create_table(
        "privacy_ledger",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("epsilon", sa.Double(), nullable=False),
        sa.Column("delta", sa.Double(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_privacy_ledger_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_ledger")),
    )
    op.create_index(
        op.f("ix_privacy_ledger_dataset_id"), "privacy_ledger", ["dataset_id"], unique=False
    )
    op.create_index(op.f("ix_privacy_ledger_job_id"), "privacy_ledger", ["job_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_privacy_ledger_job_id"), table_name="privacy_ledger")
    op.drop_index(op.f("ix_privacy_ledger_dataset_id"), table_name="privacy_ledger")
    op.drop_table("privacy_ledger")
    op.drop_table("privacy_budgets")
