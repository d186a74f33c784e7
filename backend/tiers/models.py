"""Status tiers, what each user earned of a credit over their lifetime, and each user's membership
of a tier (the status granted, expiring and revoked, following its operations)."""

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.kit.db import Base, Timestamped, Uint256, UtcDateTime


class StatusTier(Timestamped, Base):
    """Grants one unit of `status_token_id` when a user's lifetime-earned `credit_token_id` reaches
    `threshold`; the grant expires `valid_for_days` after it was granted (never, when unset)."""

    __tablename__ = "status_tiers"
    __table_args__ = (Index("ix_status_tiers_scope", "tenant_id", "environment", "created_at"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(120))
    status_token_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("token_types.id", ondelete="CASCADE"))
    credit_token_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("token_types.id", ondelete="CASCADE"), index=True
    )
    threshold: Mapped[int] = mapped_column(Uint256)
    valid_for_days: Mapped[int | None] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The users who had earned enough before the tier existed (or its last change) were all granted.
    caught_up: Mapped[bool] = mapped_column(Boolean, default=False)


class LifetimeEarning(Base):
    """A running total of a credit's confirmed mints to a user, added to in the transaction that
    confirms them: transfers, burns and redemptions never lower it."""

    __tablename__ = "lifetime_earnings"

    token_type_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("token_types.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    amount: Mapped[int] = mapped_column(Uint256)


class StatusGrant(Timestamped, Base):
    """A user's membership of a tier, one row across grants and revokes. `sequence` counts the
    operations submitted for it: the next one's ref derives from (tier, user, sequence), so no retry
    or second evaluation can mint twice."""

    __tablename__ = "status_grants"
    __table_args__ = (
        Index("ix_status_grants_tier_user", "tier_id", "user_id", unique=True),
        Index("ix_status_grants_user", "user_id"),
        Index("ix_status_grants_operation", "operation_id"),
        Index("ix_status_grants_state", "state", "expires_at"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(8))
    tier_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("status_tiers.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # granting → granted → revoking → revoked (→ granting again); failed: the grant's mint failed
    state: Mapped[str] = mapped_column(String(10))
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    # Lifetime earned when the status was last revoked: the next grant counts from here.
    earned_base: Mapped[int] = mapped_column(Uint256, default=0)
    operation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("operations.id"))
    error_code: Mapped[str | None] = mapped_column(String(32))
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    granted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
