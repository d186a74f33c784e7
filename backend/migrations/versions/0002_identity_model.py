"""identity model and sessions: per-business user links, user profiles, absolute session lifetime

Existing users keep their identifiers as the tenant's record (visible to admins); existing sessions end
when their refresh token does.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 12:24:21.857638
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.kit.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "user_links",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("environment", sa.String(length=8), nullable=False),
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("created_user", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", backend.kit.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["business_id"],
            ["businesses.id"],
            name=op.f("fk_user_links_business_id_businesses"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_user_links_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_links_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_links")),
        sa.UniqueConstraint(
            "business_id", "environment", "email", name=op.f("uq_user_links_business_id_environment_email")
        ),
        sa.UniqueConstraint(
            "business_id",
            "environment",
            "external_id",
            name=op.f("uq_user_links_business_id_environment_external_id"),
        ),
        sa.UniqueConstraint("business_id", "user_id", name=op.f("uq_user_links_business_id_user_id")),
    )
    with op.batch_alter_table("user_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_links_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_user_links_user_id"), ["user_id"], unique=False)

    # New NOT NULL columns: added nullable, filled, then made NOT NULL, so existing rows survive.
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("session_expires_at", backend.kit.db.UtcDateTime(timezone=True), nullable=True)
        )
    op.execute("UPDATE refresh_tokens SET session_expires_at = expires_at")
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.alter_column(
            "session_expires_at", existing_type=backend.kit.db.UtcDateTime(timezone=True), nullable=False
        )

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("profile", sa.JSON(), nullable=True))
    op.execute("UPDATE users SET profile = '{}'")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("profile", existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("profile")

    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_column("session_expires_at")

    with op.batch_alter_table("user_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_links_user_id"))
        batch_op.drop_index(batch_op.f("ix_user_links_tenant_id"))

    op.drop_table("user_links")
