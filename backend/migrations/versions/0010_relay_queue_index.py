"""operations: partial indexes (the pump's queue, unconfirmed mined rows, transaction and request links)

An operation's row is written three times (queued, submitted, its outcome) and none of these updates
is HOT (its status is indexed), so every version goes into every index whose predicate it meets. The
queue index held every row ever queued; now it holds the queued ones only, the confirmations read
mined rows from an index of their own, and rows without a transaction or a request are left out of
those links' indexes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 18:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The operation pump's queue: exchange legs (0009) are sent by the exchange pump.
QUEUED = "status = 'queued' AND exchange_id IS NULL"
PARTIAL = (
    ("ix_operations_queue", ["network", "contract_address", "created_at", "id"], QUEUED),
    ("ix_operations_unconfirmed", ["network", "block_number"], "status = 'mined'"),
    ("ix_operations_relayer_tx_id", ["relayer_tx_id"], "relayer_tx_id IS NOT NULL"),
    ("ix_operations_request_id", ["request_id"], "request_id IS NOT NULL"),
)

REPLACED = ("ix_operations_queue", "ix_operations_relayer_tx_id", "ix_operations_request_id")


def upgrade() -> None:
    for name in REPLACED:
        op.drop_index(name, table_name="operations")
    for name, columns, predicate in PARTIAL:
        where = sa.text(predicate)
        op.create_index(name, "operations", columns, postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    for name, _, _ in PARTIAL:
        op.drop_index(name, table_name="operations")
    queue = ["status", "network", "contract_address", "created_at"]
    op.create_index("ix_operations_queue", "operations", queue)
    op.create_index("ix_operations_relayer_tx_id", "operations", ["relayer_tx_id"])
    op.create_index("ix_operations_request_id", "operations", ["request_id"])
