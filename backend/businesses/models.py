"""Partner businesses, their on-chain signers and their secret API keys."""

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backend.kit.db import Base, Timestamped, UtcDateTime


class Business(Timestamped, Base):
    __tablename__ = "businesses"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | suspended
    signer_address: Mapped[str] = mapped_column(String(42))
    # None when the business registered its own signer address.
    signer_key_sealed: Mapped[str | None] = mapped_column(Text)
    # Signers it used before: their minter role is revoked, and stays revoked.
    retired_signers: Mapped[list[str]] = mapped_column(JSON, default=list)


class ApiKey(Timestamped, Base):
    __tablename__ = "api_keys"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    business_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("businesses.id", ondelete="CASCADE"), index=True
    )
    environment: Mapped[str] = mapped_column(String(8))
    name: Mapped[str | None] = mapped_column(String(120))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
