"""Campaigns and what hangs off them: tags, token units (what a claim pays, and the budget), triggers
(what fires a claim, with its limits), trigger sources (signed QR codes), claims and the caller's
events. Limits are enforced by locking one `TriggerCounter` row per (trigger, user); budgets by a
conditional UPDATE of the token unit (see claims.py)."""

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.kit.db import Base, Timestamped, Uint256, UtcDateTime


class Campaign(Timestamped, Base):
    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_scope", "tenant_id", "environment", "status", "created_at"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(8))
    business_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("businesses.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(8), default="draft")  # draft | active | paused | ended
    starts_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    image_url: Mapped[str | None] = mapped_column(String(2048))
    external_url: Mapped[str | None] = mapped_column(String(2048))


class CampaignTag(Base):
    __tablename__ = "campaign_tags"
    __table_args__ = (Index("ix_campaign_tags_scope", "tenant_id", "environment", "tag"),)

    campaign_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(8))


class TokenUnit(Timestamped, Base):
    """What one claim of the campaign pays in one token, and the most the campaign gives of it."""

    __tablename__ = "campaign_token_units"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(8))
    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    token_type_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("token_types.id", ondelete="CASCADE"))
    amount: Mapped[int] = mapped_column(Uint256)
    max_amount: Mapped[int] = mapped_column(Uint256)
    issued: Mapped[int] = mapped_column(Uint256, default=0)


class Trigger(Timestamped, Base):
    __tablename__ = "campaign_triggers"
    __table_args__ = (Index("ix_campaign_triggers_event", "tenant_id", "environment", "event_name"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(8))
    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(16))  # api_event | qr_code | manual
    event_name: Mapped[str | None] = mapped_column(String(120))
    conditions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    max_per_user: Mapped[int | None] = mapped_column(Integer)
    max_per_day: Mapped[int | None] = mapped_column(Integer)
    min_cooldown_seconds: Mapped[int | None] = mapped_column(Integer)
    completion_threshold: Mapped[int] = mapped_column(Integer, default=1)


class TriggerSource(Timestamped, Base):
    """A place a trigger fires from: a QR code whose payloads are signed with the source's sealed secret."""

    __tablename__ = "trigger_sources"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    environment: Mapped[str] = mapped_column(String(8))
    trigger_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaign_triggers.id", ondelete="CASCADE"))
    business_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("businesses.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(16))  # qr_code
    name: Mapped[str] = mapped_column(String(120))
    secret_sealed: Mapped[str] = mapped_column(Text)
    payload_seconds: Mapped[int] = mapped_column(Integer)  # how long a QR payload is valid


class TriggerCounter(Base):
    """One user's standing with one trigger, locked FOR UPDATE while a claim is decided."""

    __tablename__ = "campaign_trigger_counters"

    trigger_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("campaign_triggers.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    claims: Mapped[int] = mapped_column(Integer, default=0)
    day: Mapped[date | None] = mapped_column(Date)
    day_claims: Mapped[int] = mapped_column(Integer, default=0)
    last_claim_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    progress: Mapped[int] = mapped_column(Integer, default=0)  # matching events toward the threshold


class Engagement(Timestamped, Base):
    """A partner business invited to a campaign: once it accepts, claims can be made at it (paid by the
    owner's signer), within its caps; the row is locked FOR UPDATE while a claim at it is decided."""

    __tablename__ = "campaign_engagements"
    __table_args__ = (UniqueConstraint("campaign_id", "business_id"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    environment: Mapped[str] = mapped_column(String(8))
    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    business_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("businesses.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(8), default="invited")  # invited | accepted | rejected
    max_per_business: Mapped[int | None] = mapped_column(Integer)  # claims at this partner, in all
    max_per_day: Mapped[int | None] = mapped_column(Integer)  # claims at this partner, per UTC day
    claims: Mapped[int] = mapped_column(Integer, default=0)
    day: Mapped[date | None] = mapped_column(Date)
    day_claims: Mapped[int] = mapped_column(Integer, default=0)


class Claim(Timestamped, Base):
    __tablename__ = "claims"
    __table_args__ = (
        Index("ix_claims_campaign", "tenant_id", "campaign_id", "created_at"),
        Index("ix_claims_user", "tenant_id", "user_id"),
        Index("ix_claims_business", "tenant_id", "business_id"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(8))
    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    trigger_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaign_triggers.id", ondelete="CASCADE"))
    trigger_source_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("trigger_sources.id", ondelete="SET NULL")
    )
    event_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_events.id", ondelete="SET NULL"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    business_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("businesses.id", ondelete="CASCADE"))
    claimed_by: Mapped[str] = mapped_column(String(8))  # admin | business | user
    claimed_by_id: Mapped[uuid.UUID | None]
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending | completed | failed
    operation_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ClaimOperation(Base):
    """Which claim an operation pays (the relay's status changes find their claim through it)."""

    __tablename__ = "claim_operations"

    operation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("operations.id", ondelete="CASCADE"), primary_key=True
    )
    claim_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("claims.id", ondelete="CASCADE"), index=True)


class UserEvent(Timestamped, Base):
    """A user action a caller reported, processed once per (tenant, environment, caller's id)."""

    __tablename__ = "user_events"
    __table_args__ = (UniqueConstraint("tenant_id", "environment", "external_id"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(8))
    external_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(120))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    business_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("businesses.id", ondelete="SET NULL"))
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the answer given the first time
