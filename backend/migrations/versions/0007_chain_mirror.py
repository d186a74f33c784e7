"""chain mirror: cursor, headers, contracts, events, balances; operations.confirmed_at

Revision ID: 0007
Revises: 0004
Create Date: 2026-11-27 15:23:50.881002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.kit.db
import indexer.models

revision: str = "0007"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mirror_balance_changes",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(length=66), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("contract", sa.String(length=42), nullable=False),
        sa.Column("token_id", backend.kit.db.Uint256(length=78), nullable=False),
        sa.Column("holder", sa.String(length=42), nullable=False),
        sa.Column("delta", indexer.models.Int257(length=80), nullable=False),
        sa.PrimaryKeyConstraint(
            "chain_id", "block_hash", "log_index", "position", name=op.f("pk_mirror_balance_changes")
        ),
    )
    with op.batch_alter_table("mirror_balance_changes", schema=None) as batch_op:
        batch_op.create_index("ix_mirror_balance_changes_block", ["chain_id", "block_number"], unique=False)

    op.create_table(
        "mirror_blocks",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=66), nullable=False),
        sa.Column("parent_hash", sa.String(length=66), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "number", name=op.f("pk_mirror_blocks")),
    )
    op.create_table(
        "mirror_contracts",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("tenant_key", sa.String(length=66), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "address", name=op.f("pk_mirror_contracts")),
    )
    with op.batch_alter_table("mirror_contracts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mirror_contracts_tenant_key"), ["tenant_key"], unique=False)

    op.create_table(
        "mirror_cursors",
        sa.Column("network", sa.String(length=64), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(length=66), nullable=True),
        sa.Column("head_number", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", backend.kit.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("network", name=op.f("pk_mirror_cursors")),
    )
    op.create_table(
        "mirror_events",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(length=66), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("contract", sa.String(length=42), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("operator", sa.String(length=42), nullable=True),
        sa.Column("from_address", sa.String(length=42), nullable=True),
        sa.Column("to_address", sa.String(length=42), nullable=True),
        sa.Column("token_id", backend.kit.db.Uint256(length=78), nullable=True),
        sa.Column("amount", backend.kit.db.Uint256(length=78), nullable=True),
        sa.Column("signer", sa.String(length=42), nullable=True),
        sa.Column("ref", sa.String(length=66), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("chain_id", "block_hash", "log_index", name=op.f("pk_mirror_events")),
    )
    with op.batch_alter_table("mirror_events", schema=None) as batch_op:
        batch_op.create_index("ix_mirror_events_block", ["chain_id", "block_number"], unique=False)
        batch_op.create_index(
            "ix_mirror_events_contract", ["chain_id", "contract", "block_number", "log_index"], unique=False
        )
        batch_op.create_index("ix_mirror_events_ref", ["chain_id", "signer", "ref"], unique=False)

    op.create_table(
        "mirror_holdings",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("contract", sa.String(length=42), nullable=False),
        sa.Column("token_id", backend.kit.db.Uint256(length=78), nullable=False),
        sa.Column("holder", sa.String(length=42), nullable=False),
        sa.Column("amount", backend.kit.db.Uint256(length=78), nullable=False),
        sa.PrimaryKeyConstraint(
            "chain_id", "contract", "token_id", "holder", name=op.f("pk_mirror_holdings")
        ),
    )
    with op.batch_alter_table("mirror_holdings", schema=None) as batch_op:
        batch_op.create_index("ix_mirror_holdings_holder", ["chain_id", "holder"], unique=False)

    op.create_table(
        "mirror_supplies",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("contract", sa.String(length=42), nullable=False),
        sa.Column("token_id", backend.kit.db.Uint256(length=78), nullable=False),
        sa.Column("supply", backend.kit.db.Uint256(length=78), nullable=False),
        sa.Column("holders", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "contract", "token_id", name=op.f("pk_mirror_supplies")),
    )
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("confirmed_at", backend.kit.db.UtcDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.drop_column("confirmed_at")

    op.drop_table("mirror_supplies")
    with op.batch_alter_table("mirror_holdings", schema=None) as batch_op:
        batch_op.drop_index("ix_mirror_holdings_holder")

    op.drop_table("mirror_holdings")
    with op.batch_alter_table("mirror_events", schema=None) as batch_op:
        batch_op.drop_index("ix_mirror_events_ref")
        batch_op.drop_index("ix_mirror_events_contract")
        batch_op.drop_index("ix_mirror_events_block")

    op.drop_table("mirror_events")
    op.drop_table("mirror_cursors")
    with op.batch_alter_table("mirror_contracts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mirror_contracts_tenant_key"))

    op.drop_table("mirror_contracts")
    op.drop_table("mirror_blocks")
    with op.batch_alter_table("mirror_balance_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_mirror_balance_changes_block")

    op.drop_table("mirror_balance_changes")
