"""status tiers: tiers, lifetime earnings (backfilled from confirmed credit mints), grants

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 21:30:57.444839
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.kit.db

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# What users earned before this revision: the confirmed credit mints to them, summed.
BACKFILL = """
INSERT INTO lifetime_earnings (token_type_id, user_id, tenant_id, amount)
SELECT o.token_type_id, o.recipient_user_id, o.tenant_id, SUM(o.amount)
FROM operations o JOIN token_types t ON t.id = o.token_type_id AND t.kind = 'credit'
WHERE o.type = 'mint' AND o.status = 'confirmed' AND o.recipient_user_id IS NOT NULL
GROUP BY o.token_type_id, o.recipient_user_id, o.tenant_id
"""


def upgrade() -> None:
    op.create_table(
        "lifetime_earnings",
        sa.Column("token_type_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("amount", backend.kit.db.Uint256(length=78), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_lifetime_earnings_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["token_type_id"],
            ["token_types.id"],
            name=op.f("fk_lifetime_earnings_token_type_id_token_types"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_lifetime_earnings_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_type_id", "user_id", name=op.f("pk_lifetime_earnings")),
    )
    op.create_table(
        "status_tiers",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("environment", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("status_token_id", sa.Uuid(), nullable=False),
        sa.Column("credit_token_id", sa.Uuid(), nullable=False),
        sa.Column("threshold", backend.kit.db.Uint256(length=78), nullable=False),
        sa.Column("valid_for_days", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("caught_up", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", backend.kit.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["credit_token_id"],
            ["token_types.id"],
            name=op.f("fk_status_tiers_credit_token_id_token_types"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["status_token_id"],
            ["token_types.id"],
            name=op.f("fk_status_tiers_status_token_id_token_types"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_status_tiers_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_tiers")),
    )
    with op.batch_alter_table("status_tiers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_status_tiers_credit_token_id"), ["credit_token_id"], unique=False
        )
        batch_op.create_index(
            "ix_status_tiers_scope", ["tenant_id", "environment", "created_at"], unique=False
        )

    op.create_table(
        "status_grants",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("environment", sa.String(length=8), nullable=False),
        sa.Column("tier_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("earned_base", backend.kit.db.Uint256(length=78), nullable=False),
        sa.Column("operation_id", sa.Uuid(), nullable=True),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("changed_at", backend.kit.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("granted_at", backend.kit.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", backend.kit.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", backend.kit.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", backend.kit.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["operation_id"], ["operations.id"], name=op.f("fk_status_grants_operation_id_operations")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_status_grants_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tier_id"],
            ["status_tiers.id"],
            name=op.f("fk_status_grants_tier_id_status_tiers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_status_grants_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_grants")),
    )
    with op.batch_alter_table("status_grants", schema=None) as batch_op:
        batch_op.create_index("ix_status_grants_operation", ["operation_id"], unique=False)
        batch_op.create_index("ix_status_grants_state", ["state", "expires_at"], unique=False)
        batch_op.create_index("ix_status_grants_tier_user", ["tier_id", "user_id"], unique=True)
        batch_op.create_index("ix_status_grants_user", ["user_id"], unique=False)
    op.execute(BACKFILL)


def downgrade() -> None:
    with op.batch_alter_table("status_grants", schema=None) as batch_op:
        batch_op.drop_index("ix_status_grants_user")
        batch_op.drop_index("ix_status_grants_tier_user")
        batch_op.drop_index("ix_status_grants_state")
        batch_op.drop_index("ix_status_grants_operation")

    op.drop_table("status_grants")
    with op.batch_alter_table("status_tiers", schema=None) as batch_op:
        batch_op.drop_index("ix_status_tiers_scope")
        batch_op.drop_index(batch_op.f("ix_status_tiers_credit_token_id"))

    op.drop_table("status_tiers")
    op.drop_table("lifetime_earnings")
