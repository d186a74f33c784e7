"""Engagements (B2B): a campaign invites partner businesses, each accepts or rejects; claims made at
an accepted partner count against its caps (`maxPerBusiness`, `maxPerDay`) and are paid by the owner."""

import uuid
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.auth.principal import BUSINESS, Principal
from backend.businesses.models import Business
from backend.campaigns.models import Campaign, Engagement
from backend.campaigns.schemas import EngagementCreate
from backend.campaigns.service import managed
from backend.kit.errors import Conflict, NotFound, PersError
from backend.kit.scope import get_scoped


def invite(session: Session, caller: Principal, campaign_id: str, data: EngagementCreate) -> list[Engagement]:
    campaign = managed(session, caller, campaign_id)
    invited = []
    for business_id in dict.fromkeys(data.business_ids):  # each once, in the order given
        business = session.get(Business, business_id)
        if business is None or business.tenant_id != campaign.tenant_id:
            raise NotFound("business not found", code="business_not_found", business_id=str(business_id))
        if business.id == campaign.business_id:
            raise PersError("the owner takes part already", code="owner_not_partner", status=422)
        engagement = Engagement(
            id=uuid.uuid4(),
            tenant_id=campaign.tenant_id,
            environment=campaign.environment,
            campaign_id=campaign.id,
            business_id=business.id,
            status="invited",
            max_per_business=data.max_per_business,
            max_per_day=data.max_per_day,
            claims=0,
            day_claims=0,
        )
        session.add(engagement)
        invited.append(engagement)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict("a business is invited to this campaign already", code="engagement_exists") from exc
    return invited


def campaign_engagements(session: Session, caller: Principal, campaign_id: str) -> Select[Engagement]:
    """Every engagement for the admin and the owner; its own for an invited business."""
    campaign = get_scoped(session, Campaign, caller.tenant, campaign_id, environment=True)
    query = select(Engagement).where(Engagement.campaign_id == campaign.id)
    if caller.kind == BUSINESS and campaign.business_id != caller.subject_id:
        query = query.where(Engagement.business_id == caller.subject_id)
        if session.scalar(query) is None:
            raise NotFound("campaign not found")
    return query.order_by(Engagement.created_at, Engagement.id)


def respond(session: Session, caller: Principal, engagement_id: str, status: str) -> Engagement:
    """The invited business accepts or rejects (and may withdraw an acceptance); a rejection is final."""
    engagement = get_scoped(session, Engagement, caller.tenant, engagement_id, environment=True)
    if engagement.business_id != caller.subject_id:
        raise NotFound("engagement not found")
    if engagement.status == "rejected" and status != "rejected":
        raise Conflict("the invitation was rejected", code="engagement_rejected")
    engagement.status = status
    session.flush()
    return engagement


def partner_of(session: Session, campaign_id: uuid.UUID, business_id: uuid.UUID | None) -> Engagement | None:
    if business_id is None:
        return None
    query = select(Engagement).where(
        Engagement.campaign_id == campaign_id,
        Engagement.business_id == business_id,
        Engagement.status == "accepted",
    )
    return session.scalar(query)


def take_share(session: Session, engagement: Engagement, now: datetime) -> None:
    """Counts one claim at the partner, its row locked (claims at one partner are decided one at a
    time); refused when a cap is reached."""
    locked = select(Engagement).where(Engagement.id == engagement.id).with_for_update()
    current = session.scalar(locked.execution_options(populate_existing=True))
    if current is None or current.status != "accepted":
        raise Conflict("the business no longer takes part in the campaign", code="not_a_partner")
    today = now.date()
    day_claims = current.day_claims if current.day == today else 0
    if current.max_per_business is not None and current.claims >= current.max_per_business:
        raise Conflict("the partner's share of the campaign is used up", code="max_per_business_reached")
    if current.max_per_day is not None and day_claims >= current.max_per_day:
        raise Conflict("the partner's share for today is used up", code="partner_max_per_day_reached")
    current.claims, current.day, current.day_claims = current.claims + 1, today, day_claims + 1
