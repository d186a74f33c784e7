"""operations: no foreign-key checks on the hot path, the exchange link's index partial

Every operation row inserted checked its tenant, business and token type (a `SELECT … FOR KEY SHARE` of
each parent row per row) and, when submitted, its relayer transaction. Under concurrent requests those
shared locks on the same parent rows become MultiXacts: the insert cost 122 µs of Postgres time per row
in a batch (50 µs without the checks). The parents are never deleted (tenants, businesses and token
types are suspended or paused, not removed) and the relay writes these columns from rows it has just
read or written, so the constraints guarded nothing the code does not. The links that are NULL on the
hot path (request, exchange) keep theirs. The exchange link's index held every operation; now only
exchange legs. See docs/adr/0009-operations-hot-path.md.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28 00:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PARENTS = (
    ("tenant_id", "tenants", "CASCADE"),
    ("business_id", "businesses", "SET NULL"),
    ("token_type_id", "token_types", "CASCADE"),
    ("relayer_tx_id", "relayer_transactions", None),
)
EXCHANGE_INDEX = "ix_operations_exchange_id"
LEGS = sa.text("exchange_id IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("operations") as batch_op:
        for column, parent, _ in PARENTS:
            batch_op.drop_constraint(f"fk_operations_{column}_{parent}", type_="foreignkey")
        batch_op.drop_index(EXCHANGE_INDEX)
        batch_op.create_index(EXCHANGE_INDEX, ["exchange_id"], postgresql_where=LEGS, sqlite_where=LEGS)


def downgrade() -> None:
    with op.batch_alter_table("operations") as batch_op:
        batch_op.drop_index(EXCHANGE_INDEX)
        batch_op.create_index(EXCHANGE_INDEX, ["exchange_id"])
        for column, parent, on_delete in PARENTS:
            batch_op.create_foreign_key(
                f"fk_operations_{column}_{parent}", parent, [column], ["id"], ondelete=on_delete
            )
