"""Customers of a tenant environment, identified by wallet and optionally by external id or email."""

import uuid
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.kit.db import Base, Timestamped


class User(Timestamped, Base):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("tenant_id", "environment", "wallet_address"),
        UniqueConstraint("tenant_id", "environment", "external_id"),
        UniqueConstraint("tenant_id", "environment", "email"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    environment: Mapped[str] = mapped_column(String(8))
    wallet_address: Mapped[str] = mapped_column(String(42))
    external_id: Mapped[str | None] = mapped_column(String(128))
    email: Mapped[str | None] = mapped_column(String(254))
    name: Mapped[str | None] = mapped_column(String(120))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    wallet_key_sealed: Mapped[str | None] = mapped_column(Text)  # set for managed wallets only
