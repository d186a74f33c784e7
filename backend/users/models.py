"""Customers of a tenant environment, and what each business knows about them.

A user is one wallet in one environment. What identifies them to the whole tenant (the wallet, an
email or external id an admin recorded, the program's attributes) lives on `User`; what a business
knows (its own external id, the email it was given, its attributes) lives on that business's
`UserLink`, so no business can read or change another's customer records (docs/adr/0004)."""

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
    external_id: Mapped[str | None] = mapped_column(String(128))  # set by an admin
    email: Mapped[str | None] = mapped_column(String(254))  # set by an admin
    name: Mapped[str | None] = mapped_column(String(120))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the program's, set by admins
    profile: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the user's own
    wallet_key_sealed: Mapped[str | None] = mapped_column(Text)  # set for managed wallets only


class UserLink(Timestamped, Base):
    """A business's relationship with a user: created when the business finds or creates them (the
    relay adds one when a business serves a user it has not looked up). The business's identifiers
    for the user are unique within that business only."""

    __tablename__ = "user_links"
    __table_args__ = (
        UniqueConstraint("business_id", "user_id"),
        UniqueConstraint("business_id", "environment", "external_id"),
        UniqueConstraint("business_id", "environment", "email"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    environment: Mapped[str] = mapped_column(String(8))
    business_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("businesses.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str | None] = mapped_column(String(128))
    email: Mapped[str | None] = mapped_column(String(254))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_user: Mapped[bool] = mapped_column(default=False)  # this business created the user
