"""Redemption offers and the redeems users make of them.

An offer converts tokens: `exchange` (burn the cost, mint the reward, atomically on chain through an
exchange: docs/adr/0002) or `catalog` (burn the cost; a partner business then fulfils a real-world
item). A redeem follows its operations: PENDING (queued) → PROCESSING (sent) → COMPLETED | FAILED."""

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backend.kit.db import Base, Timestamped, Uint256, UtcDateTime


class Redemption(Timestamped, Base):
    __tablename__ = "redemptions"
    __table_args__ = (Index("ix_redemptions_scope", "tenant_id", "environment", "created_at"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(8))  # exchange | catalog
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str | None] = mapped_column(Text)
    # exchange: whose minter signs the reward mint; catalog: the partner that fulfils the item
    business_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("businesses.id", ondelete="CASCADE"))
    cost_token_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("token_types.id", ondelete="CASCADE"))
    cost_amount: Mapped[int] = mapped_column(Uint256)
    reward_token_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("token_types.id", ondelete="CASCADE")
    )
    reward_amount: Mapped[int | None] = mapped_column(Uint256)
    required_status_token_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("token_types.id", ondelete="CASCADE")
    )
    stock: Mapped[int | None] = mapped_column(Integer)  # None: unlimited
    stock_remaining: Mapped[int | None] = mapped_column(Integer)  # taken by a conditional UPDATE
    per_user_limit: Mapped[int | None] = mapped_column(Integer)
    valid_from: Mapped[datetime | None] = mapped_column(UtcDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Redeem(Timestamped, Base):
    __tablename__ = "redeems"
    __table_args__ = (
        Index("ix_redeems_scope", "tenant_id", "environment", "created_at"),
        Index("ix_redeems_user", "redemption_id", "user_id", "status"),
        Index("ix_redeems_open", "status"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(8))
    redemption_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("redemptions.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(
        String(10), default="PENDING"
    )  # PENDING | PROCESSING | COMPLETED | FAILED
    error_code: Mapped[str | None] = mapped_column(String(32))
    burn_operation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("operations.id"))
    mint_operation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("operations.id"))
    exchange_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("exchanges.id"))
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    fulfilled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # catalog: when the partner fulfilled
