"""Sign-in state: tenant admins, refresh-token families, single-use SIWE nonces."""

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.kit.db import Base, Timestamped, UtcDateTime


class Admin(Timestamped, Base):
    __tablename__ = "admins"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str | None] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(16))  # TENANT_ADMIN | AUDITOR
    password_hash: Mapped[str] = mapped_column(String(256))


class RefreshToken(Timestamped, Base):
    """One link of a rotation chain. Presenting a used link again revokes its whole family."""

    __tablename__ = "refresh_tokens"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[uuid.UUID] = mapped_column(index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    environment: Mapped[str] = mapped_column(String(8))
    subject_kind: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[uuid.UUID]
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    api_key_id: Mapped[uuid.UUID | None]  # business sessions: the key they came from
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # When the family ends however often it is refreshed: the absolute session lifetime.
    session_expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SiweNonce(Base):
    __tablename__ = "siwe_nonces"

    nonce: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    environment: Mapped[str] = mapped_column(String(8))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
