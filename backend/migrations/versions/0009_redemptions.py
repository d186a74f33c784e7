"""redemptions: offers, redeems, exchanges; operations.exchange_id

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 18:43:02.917629
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.kit.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "exchanges",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("environment", sa.String(length=8), nullable=False),
        sa.Column("network", sa.String(length=64), nullable=False),
        sa.Column("ref", sa.String(length=66), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("relayer_tx_id", sa.Uuid(), nullable=True),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("finished_at", backend.kit.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", backend.kit.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["relayer_tx_id"],
            ["relayer_transactions.id"],
            name=op.f("fk_exchanges_relayer_tx_id_relayer_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_exchanges_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchanges")),
        sa.UniqueConstraint("ref", name=op.f("uq_exchanges_ref")),
    )
    op.create_index("ix_exchanges_queue", "exchanges", ["status", "network", "created_at"], unique=False)
    op.create_table(
        "redemptions",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("environment", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("cost_token_id", sa.Uuid(), nullable=False),
        sa.Column("cost_amount", backend.kit.db.Uint256(length=78), nullable=False),
        sa.Column("reward_token_id", sa.Uuid(), nullable=True),
        sa.Column("reward_amount", backend.kit.db.Uint256(length=78), nullable=True),
        sa.Column("required_status_token_id", sa.Uuid(), nullable=True),
        sa.Column("stock", sa.Integer(), nullable=True),
        sa.Column("stock_remaining", sa.Integer(), nullable=True),
        sa.Column("per_user_limit", sa.Integer(), nullable=True),
        sa.Column("valid_from", backend.kit.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("valid_until", backend.kit.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", backend.kit.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["business_id"],
            ["businesses.id"],
            name=op.f("fk_redemptions_business_id_businesses"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["cost_token_id"],
            ["token_types.id"],
            name=op.f("fk_redemptions_cost_token_id_token_types"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["required_status_token_id"],
            ["token_types.id"],
            name=op.f("fk_redemptions_required_status_token_id_token_types"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reward_token_id"],
            ["token_types.id"],
            name=op.f("fk_redemptions_reward_token_id_token_types"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_redemptions_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemptions")),
    )
    op.create_index(
        "ix_redemptions_scope", "redemptions", ["tenant_id", "environment", "created_at"], unique=False
    )
    op.create_table(
        "redeems",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("environment", sa.String(length=8), nullable=False),
        sa.Column("redemption_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("burn_operation_id", sa.Uuid(), nullable=False),
        sa.Column("mint_operation_id", sa.Uuid(), nullable=True),
        sa.Column("exchange_id", sa.Uuid(), nullable=True),
        sa.Column("finished_at", backend.kit.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("fulfilled_at", backend.kit.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", backend.kit.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["burn_operation_id"], ["operations.id"], name=op.f("fk_redeems_burn_operation_id_operations")
        ),
        sa.ForeignKeyConstraint(
            ["exchange_id"], ["exchanges.id"], name=op.f("fk_redeems_exchange_id_exchanges")
        ),
        sa.ForeignKeyConstraint(
            ["mint_operation_id"], ["operations.id"], name=op.f("fk_redeems_mint_operation_id_operations")
        ),
        sa.ForeignKeyConstraint(
            ["redemption_id"],
            ["redemptions.id"],
            name=op.f("fk_redeems_redemption_id_redemptions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_redeems_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_redeems_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redeems")),
    )
    op.create_index("ix_redeems_open", "redeems", ["status"], unique=False)
    op.create_index("ix_redeems_scope", "redeems", ["tenant_id", "environment", "created_at"], unique=False)
    op.create_index("ix_redeems_user", "redeems", ["redemption_id", "user_id", "status"], unique=False)
    with op.batch_alter_table("operations", schema=None) as batch_op:  # SQLite alters by copying
        batch_op.add_column(sa.Column("exchange_id", sa.Uuid(), nullable=True))
        batch_op.create_index(batch_op.f("ix_operations_exchange_id"), ["exchange_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_operations_exchange_id_exchanges"), "exchanges", ["exchange_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_operations_exchange_id_exchanges"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_operations_exchange_id"))
        batch_op.drop_column("exchange_id")
    op.drop_index("ix_redeems_user", table_name="redeems")
    op.drop_index("ix_redeems_scope", table_name="redeems")
    op.drop_index("ix_redeems_open", table_name="redeems")
    op.drop_table("redeems")
    op.drop_index("ix_redemptions_scope", table_name="redemptions")
    op.drop_table("redemptions")
    op.drop_index("ix_exchanges_queue", table_name="exchanges")
    op.drop_table("exchanges")
