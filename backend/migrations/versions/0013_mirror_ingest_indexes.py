"""mirror: fewer and cheaper indexes to maintain while ingesting

The events' and balance changes' natural key (chain id, block hash, log index[, position]) is now led
by the block number: rows arrive in block order, so the key's index grows at its right edge instead of
taking random block hashes, and a reorg deletes by the key's prefix, which the separate block-number
indexes did (they go). The (signer, ref) index holds the outcome events only, the rows operations are
joined to. Holdings pages keep room for HOT updates. See docs/indexer.md ("Writing a chunk").

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27 21:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTCOMES = sa.text("name IN ('OperationExecuted', 'OperationFailed')")
KEYS = {
    "mirror_events": ["block_hash", "log_index"],
    "mirror_balance_changes": ["block_hash", "log_index", "position"],
}
BLOCK_INDEXES = {
    "mirror_events": "ix_mirror_events_block",
    "mirror_balance_changes": "ix_mirror_balance_changes_block",
}


def _primary_key(table: str, columns: list[str]) -> None:
    with op.batch_alter_table(table) as batch_op:
        batch_op.drop_constraint(f"pk_{table}", type_="primary")
        batch_op.create_primary_key(f"pk_{table}", columns)


def upgrade() -> None:
    for table, key in KEYS.items():
        op.drop_index(BLOCK_INDEXES[table], table_name=table)
        _primary_key(table, ["chain_id", "block_number", *key])
    op.drop_index("ix_mirror_events_ref", table_name="mirror_events")
    op.create_index(
        "ix_mirror_events_outcome",
        "mirror_events",
        ["chain_id", "signer", "ref"],
        postgresql_where=OUTCOMES,
        sqlite_where=OUTCOMES,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE mirror_holdings SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE mirror_holdings RESET (fillfactor)")
    op.drop_index("ix_mirror_events_outcome", table_name="mirror_events")
    op.create_index("ix_mirror_events_ref", "mirror_events", ["chain_id", "signer", "ref"])
    for table, key in KEYS.items():
        _primary_key(table, ["chain_id", *key])
        op.create_index(BLOCK_INDEXES[table], table, ["chain_id", "block_number"])
