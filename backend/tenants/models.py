"""A tenant (one organisation's loyalty program) and its two environments, each bound to a network."""

import uuid

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.kit.db import Base, Timestamped


class Tenant(Timestamped, Base):
    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(String(120))
    slug: Mapped[str] = mapped_column(String(64), unique=True)


class TenantEnvironment(Timestamped, Base):
    """`test` or `live`: a project key, a network, and the tenant's contracts there."""

    __tablename__ = "tenant_environments"
    __table_args__ = (UniqueConstraint("tenant_id", "environment"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    environment: Mapped[str] = mapped_column(String(8))
    project_key: Mapped[str] = mapped_column(String(64), unique=True)
    network: Mapped[str | None] = mapped_column(String(64))
    # unconfigured (no network) → pending → active | failed
    status: Mapped[str] = mapped_column(String(16))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    tenant_key: Mapped[str] = mapped_column(String(66))
    admin_address: Mapped[str] = mapped_column(String(42))
    admin_key_sealed: Mapped[str] = mapped_column(Text)
    factory_address: Mapped[str | None] = mapped_column(String(42))
    rewards_address: Mapped[str | None] = mapped_column(String(42))
    deploy_tx_hash: Mapped[str | None] = mapped_column(String(66))
