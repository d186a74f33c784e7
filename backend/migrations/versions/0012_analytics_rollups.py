"""analytics: daily rollups of claims, unique users, operations and redeems, backfilled

The tables `backend.analytics.rollups` keeps as facts settle, filled here from every settled row by
the same statements (INSERT … SELECT … GROUP BY), so a database upgraded with history answers the
same figures as one that grew with the rollups.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27 21:31:06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.kit.db
from backend.analytics.rollups import backfill

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "analytics_claim_days",
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("trigger_type", sa.String(length=16), nullable=False),
        sa.Column("trigger_source_id", sa.Uuid(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("environment", sa.String(length=8), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_analytics_claim_days_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "environment",
            "day",
            "campaign_id",
            "business_id",
            "trigger_type",
            "trigger_source_id",
            name=op.f("pk_analytics_claim_days"),
        ),
    )
    op.create_table(
        "analytics_operation_days",
        sa.Column("token_type_id", sa.Uuid(), nullable=False),
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("issued", backend.kit.db.Uint256(length=78), nullable=False),
        sa.Column("burned", backend.kit.db.Uint256(length=78), nullable=False),
        sa.Column("transferred", backend.kit.db.Uint256(length=78), nullable=False),
        sa.Column("gas_used", sa.BigInteger(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("environment", sa.String(length=8), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_analytics_operation_days_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "environment",
            "day",
            "token_type_id",
            "business_id",
            "campaign_id",
            name=op.f("pk_analytics_operation_days"),
        ),
    )
    op.create_table(
        "analytics_redeem_days",
        sa.Column("redemption_id", sa.Uuid(), nullable=False),
        sa.Column("redeems", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("environment", sa.String(length=8), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_analytics_redeem_days_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "environment", "day", "redemption_id", name=op.f("pk_analytics_redeem_days")
        ),
    )
    op.create_table(
        "analytics_user_days",
        sa.Column("audience", sa.Uuid(), nullable=False),
        sa.Column("subject", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("environment", sa.String(length=8), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_analytics_user_days_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "environment",
            "audience",
            "subject",
            "user_id",
            "day",
            name=op.f("pk_analytics_user_days"),
        ),
    )
    op.create_table(
        "analytics_user_returns",
        sa.Column("audience", sa.Uuid(), nullable=False),
        sa.Column("subject", sa.Uuid(), nullable=False),
        sa.Column("previous", sa.Date(), nullable=False),
        sa.Column("users", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("environment", sa.String(length=8), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_analytics_user_returns_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "environment",
            "audience",
            "subject",
            "day",
            "previous",
            name=op.f("pk_analytics_user_returns"),
        ),
    )
    backfill(op.get_bind())


def downgrade() -> None:
    op.drop_table("analytics_user_returns")
    op.drop_table("analytics_user_days")
    op.drop_table("analytics_redeem_days")
    op.drop_table("analytics_operation_days")
    op.drop_table("analytics_claim_days")
