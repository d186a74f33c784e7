"""Campaigns: lifecycle, tags and token units. An admin manages every campaign of the tenant, a
business the campaigns it owns; the public (project key) and users see active campaigns only."""

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Select, delete, insert, select
from sqlalchemy.orm import Session

from backend.auth.principal import ADMIN, AUDITOR, BUSINESS, Forbidden, Principal
from backend.businesses.models import Business
from backend.campaigns.models import Campaign, CampaignTag, Claim, TokenUnit
from backend.campaigns.schemas import (
    CampaignCreate,
    CampaignOut,
    CampaignUpdate,
    TokenUnitCreate,
    TokenUnitOut,
)
from backend.kit.db import utcnow
from backend.kit.errors import Conflict, NotFound, PersError
from backend.kit.scope import get_scoped, scoped
from backend.tokens.models import TokenType

STAFF = (ADMIN, AUDITOR, BUSINESS)  # see campaigns whatever their status
# The moves of the lifecycle: action -> (the statuses it starts from, the status it leads to).
TRANSITIONS = {
    "activate": (("draft", "paused"), "active"),
    "pause": (("active",), "paused"),
    "end": (("draft", "active", "paused"), "ended"),
}
SORTABLE = ("created_at", "name", "starts_at", "ends_at")
SortBy = Literal["createdAt", "name", "startsAt", "endsAt"]


def _business(session: Session, caller: Principal, business_id: uuid.UUID | None) -> Business:
    """The owner of a new campaign: a business owns its own; an admin names one."""
    if caller.kind == BUSINESS:
        if business_id not in (None, caller.subject_id):
            raise Forbidden("a business creates campaigns for itself")
        business_id = caller.subject_id
    if business_id is None:
        raise PersError("name the owner business in `businessId`", code="business_required", status=422)
    found = session.get(Business, business_id)
    if found is None or found.tenant_id != caller.tenant.tenant_id:
        raise NotFound("business not found", code="business_not_found")
    return found


def _check_dates(starts_at: datetime | None, ends_at: datetime | None) -> None:
    for moment in (starts_at, ends_at):
        if moment is None:
            continue
        if moment.tzinfo is None:
            raise PersError("times carry a timezone (ISO-8601 UTC)", code="invalid_datetime", status=422)
        try:
            moment.astimezone(UTC)  # stored in UTC: year 1 at +05:00 has no UTC time
        except OverflowError:
            raise PersError("the time is out of range", code="invalid_datetime", status=422) from None
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise PersError("`endsAt` must be after `startsAt`", code="invalid_date_range", status=422)


def create_campaign(session: Session, caller: Principal, data: CampaignCreate) -> Campaign:
    _check_dates(data.starts_at, data.ends_at)
    scope = caller.tenant
    campaign = Campaign(
        id=uuid.uuid4(),
        tenant_id=scope.tenant_id,
        environment=scope.environment,
        business_id=_business(session, caller, data.business_id).id,
        name=data.name,
        description=data.description,
        status="draft",
        starts_at=data.starts_at,
        ends_at=data.ends_at,
        image_url=data.image_url,
        external_url=data.external_url,
    )
    session.add(campaign)
    session.flush()
    _write_tags(session, campaign, data.tags)
    return campaign


def get_campaign(session: Session, caller: Principal, campaign_id: str | uuid.UUID) -> Campaign:
    """A campaign the caller may see: staff see all of the tenant's, others the active ones only."""
    campaign = get_scoped(session, Campaign, caller.tenant, campaign_id, environment=True)
    if caller.kind not in STAFF and campaign.status != "active":
        raise NotFound("campaign not found")
    return campaign


def managed(session: Session, caller: Principal, campaign_id: str | uuid.UUID) -> Campaign:
    """A campaign the caller may change: any of the tenant's for an admin, its own for a business."""
    campaign = get_scoped(session, Campaign, caller.tenant, campaign_id, environment=True)
    if caller.kind == BUSINESS and campaign.business_id != caller.subject_id:
        raise NotFound("campaign not found")  # another business's campaign is not there for it
    return campaign


def listed(
    caller: Principal,
    *,
    active: bool | None,
    tag: str | None,
    business_id: uuid.UUID | None,
    sort_by: SortBy,
    sort_order: Literal["asc", "desc"],
) -> Select[Campaign]:
    query = scoped(Campaign, caller.tenant, environment=True)
    if caller.kind not in STAFF:
        active = True
    if active is not None:
        query = query.where((Campaign.status == "active") == active)
    if tag is not None:
        tagged = select(CampaignTag.campaign_id).where(CampaignTag.tag == tag)
        query = query.where(Campaign.id.in_(tagged))
    if business_id is not None:
        query = query.where(Campaign.business_id == business_id)
    column = getattr(Campaign, SORTABLE[("createdAt", "name", "startsAt", "endsAt").index(sort_by)])
    ordered = column.asc() if sort_order == "asc" else column.desc()
    return query.order_by(ordered, Campaign.id)


def update_campaign(session: Session, caller: Principal, campaign_id: str, data: CampaignUpdate) -> Campaign:
    campaign = managed(session, caller, campaign_id)
    for name in data.model_fields_set:
        value = getattr(data, name)
        if name == "name" and value is None:
            raise PersError("a campaign keeps a name", code="invalid_value", status=422)
        setattr(campaign, name, value)
    _check_dates(campaign.starts_at, campaign.ends_at)
    session.flush()
    return campaign


def delete_campaign(session: Session, caller: Principal, campaign_id: str) -> None:
    """Only a campaign nobody claimed yet: claims are the audit trail of what was paid."""
    campaign = managed(session, caller, campaign_id)
    if session.scalar(select(Claim.id).where(Claim.campaign_id == campaign.id).limit(1)) is not None:
        raise Conflict("the campaign has claims: end it instead", code="campaign_has_claims")
    session.delete(campaign)
    session.flush()


def transition(session: Session, caller: Principal, campaign_id: str, action: str) -> Campaign:
    campaign = managed(session, caller, campaign_id)
    sources, target = TRANSITIONS[action]
    if campaign.status not in sources:
        raise Conflict(
            f"a campaign {campaign.status} cannot {action}",
            code="invalid_transition",
            current=campaign.status,
            action=action,
        )
    if target == "active":
        if session.scalar(select(TokenUnit.id).where(TokenUnit.campaign_id == campaign.id).limit(1)) is None:
            raise Conflict("give the campaign a token unit first", code="campaign_has_no_tokens")
        if campaign.ends_at is not None and campaign.ends_at <= utcnow():
            raise Conflict("the campaign's end date has passed", code="campaign_expired")
    campaign.status = target
    session.flush()
    return campaign


def put_tags(session: Session, caller: Principal, campaign_id: str, tags: list[str]) -> Campaign:
    campaign = managed(session, caller, campaign_id)
    session.execute(delete(CampaignTag).where(CampaignTag.campaign_id == campaign.id))
    _write_tags(session, campaign, tags)
    return campaign


def _write_tags(session: Session, campaign: Campaign, tags: list[str]) -> None:
    rows = [
        {
            "campaign_id": campaign.id,
            "tag": t,
            "tenant_id": campaign.tenant_id,
            "environment": campaign.environment,
        }
        for t in sorted(set(tags))
    ]
    if rows:
        session.execute(insert(CampaignTag), rows)


def all_tags(session: Session, caller: Principal) -> list[str]:
    scope = caller.tenant
    query = (
        select(CampaignTag.tag)
        .where(CampaignTag.tenant_id == scope.tenant_id, CampaignTag.environment == scope.environment)
        .group_by(CampaignTag.tag)
        .order_by(CampaignTag.tag)
    )
    return list(session.scalars(query))


def add_token_unit(session: Session, caller: Principal, campaign_id: str, data: TokenUnitCreate) -> TokenUnit:
    campaign = managed(session, caller, campaign_id)
    token = session.get(TokenType, data.token_id)
    if token is None or (token.tenant_id, token.environment) != (campaign.tenant_id, campaign.environment):
        raise NotFound("token not found", code="token_not_found")
    if data.amount > data.max_amount:
        raise PersError("`amount` per claim is over `maxAmount`", code="amount_over_max", status=422)
    if campaign.status == "ended":
        raise Conflict("the campaign has ended", code="campaign_ended")
    taken = select(TokenUnit.id).where(
        TokenUnit.campaign_id == campaign.id, TokenUnit.token_type_id == token.id
    )
    if session.scalar(taken) is not None:
        raise Conflict("the campaign already pays this token", code="token_unit_exists")
    unit = TokenUnit(
        id=uuid.uuid4(),
        tenant_id=campaign.tenant_id,
        environment=campaign.environment,
        campaign_id=campaign.id,
        token_type_id=token.id,
        amount=data.amount,
        max_amount=data.max_amount,
        issued=0,
    )
    session.add(unit)
    session.flush()
    return unit


def remove_token_unit(session: Session, caller: Principal, campaign_id: str, unit_id: str) -> None:
    campaign = managed(session, caller, campaign_id)
    unit = get_scoped(session, TokenUnit, caller.tenant, unit_id, environment=True)
    if unit.campaign_id != campaign.id:
        raise NotFound("token unit not found")
    if campaign.status == "active":
        raise Conflict("pause the campaign before changing what it pays", code="campaign_active")
    session.delete(unit)
    session.flush()


def described(session: Session, campaigns: Sequence[Campaign]) -> list[CampaignOut]:
    """Campaigns with their tags and token units (two queries, whatever the page's size)."""
    ids = [c.id for c in campaigns]
    tags: dict[uuid.UUID, list[str]] = defaultdict(list)
    units: dict[uuid.UUID, list[TokenUnitOut]] = defaultdict(list)
    if ids:
        for campaign_id, tag in session.execute(
            select(CampaignTag.campaign_id, CampaignTag.tag)
            .where(CampaignTag.campaign_id.in_(ids))
            .order_by(CampaignTag.tag)
        ):
            tags[campaign_id].append(tag)
        query = select(TokenUnit).where(TokenUnit.campaign_id.in_(ids)).order_by(TokenUnit.created_at)
        for unit in session.scalars(query):
            units[unit.campaign_id].append(TokenUnitOut.model_validate(unit))
    return [_out(c, tags[c.id], units[c.id]) for c in campaigns]


def _out(campaign: Campaign, tags: list[str], units: list[TokenUnitOut]) -> CampaignOut:
    fields = {name: getattr(campaign, name) for name in CampaignOut.model_fields if hasattr(campaign, name)}
    return CampaignOut.model_validate({**fields, "tags": tags, "token_units": units})
