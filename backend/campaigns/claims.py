"""Claims: every rule checked and the claim written in the caller's unit of work, with one mint per
token unit queued through the relay in the same transaction (signed by the campaign owner's signer).

Correct under READ COMMITTED with any number of API processes: the (trigger, user) counter row is
locked FOR UPDATE first, so one user's claims on a trigger are decided one at a time (per-user,
per-day, cooldown and threshold progress); then the campaign's token units are locked in id order,
so two claims never both take the last of a budget. On SQLite the first write takes the database's
write lock, which serialises the same way."""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, insert, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from backend.auth.principal import BUSINESS, USER, Forbidden, Principal, TenantScope
from backend.campaigns import engagements, triggers
from backend.campaigns.models import (
    Campaign,
    Claim,
    ClaimOperation,
    Engagement,
    TokenUnit,
    Trigger,
    TriggerCounter,
    TriggerSource,
)
from backend.campaigns.schemas import ClaimCreate, UserRef
from backend.campaigns.service import get_campaign
from backend.kit.db import utcnow
from backend.kit.errors import NotFound, PersError
from backend.kit.keystore import Keystore
from backend.kit.scope import get_scoped, scoped
from backend.relay.service import submit_mint
from backend.settings import Settings
from backend.users.models import User, UserLink
from backend.users.service import get_user, user_by_wallet
from backend.webhooks import service as webhooks


class Refused(PersError):
    """A claim the rules do not allow (now, or any more)."""

    status = 409


@dataclass(frozen=True)
class Target:
    """What one claim is about."""

    campaign: Campaign
    trigger: Trigger
    user: User
    business_id: uuid.UUID  # where it is made: the owner, or a partner
    partner: Engagement | None = None
    source_id: uuid.UUID | None = None
    event_id: uuid.UUID | None = None


def resolve_user(session: Session, caller: Principal, ref: UserRef) -> User:
    """The user a claim or event is for: a user's session is for themselves; others name exactly one of
    `userId`, `walletAddress`, `externalId` (a business's own external ids first)."""
    scope = caller.tenant
    given = [v for v in (ref.user_id, ref.wallet_address, ref.external_id) if v is not None]
    if caller.kind == USER:
        assert caller.subject_id is not None
        user = get_user(session, scope, caller.subject_id)
        names_self = (
            ref.user_id in (None, user.id)
            and ref.wallet_address in (None, user.wallet_address)
            and ref.external_id in (None, user.external_id)
        )
        if not names_self:
            raise Forbidden("a user claims for themselves")
        return user
    if len(given) != 1:
        raise PersError(
            "name the user by exactly one of `userId`, `walletAddress`, `externalId`",
            code="user_required",
            status=422,
        )
    found: User | None = None
    if ref.user_id is not None:
        found = session.get(User, ref.user_id)
        found = (
            found
            if found and (found.tenant_id, found.environment) == (scope.tenant_id, scope.environment)
            else None
        )
    elif ref.wallet_address is not None:
        found = user_by_wallet(session, scope, ref.wallet_address)
    else:
        users = scoped(User, scope, environment=True)
        if caller.kind == BUSINESS:
            linked = select(UserLink.user_id).where(
                UserLink.business_id == caller.subject_id, UserLink.external_id == ref.external_id
            )
            found = session.scalar(users.where(User.id.in_(linked)))
        found = found or session.scalar(users.where(User.external_id == ref.external_id))
    if found is None:
        raise NotFound("user not found", code="user_not_found")
    return found


def create_claim(
    session: Session, settings: Settings, keystore: Keystore, caller: Principal, data: ClaimCreate
) -> Claim:
    """A claim by campaign (its manual trigger) or by QR source (its payload checked)."""
    if (data.campaign_id is None) == (data.trigger_source_id is None):
        raise PersError("give `campaignId` or `triggerSourceId`", code="claim_target_required", status=422)
    source: TriggerSource | None = None
    if data.trigger_source_id is not None:
        source = get_scoped(session, TriggerSource, caller.tenant, data.trigger_source_id, environment=True)
        triggers.verify_payload(keystore, source, data.payload)
        trigger = session.get(Trigger, source.trigger_id)
        assert trigger is not None
        campaign = _claimable(session, caller, trigger.campaign_id)
    else:
        assert data.campaign_id is not None
        campaign = _claimable(session, caller, data.campaign_id)
        trigger = _manual_trigger(session, campaign, data.trigger_id)
    venue = data.business_id or (source.business_id if source else None)
    if caller.kind == BUSINESS:
        if venue not in (None, caller.subject_id):
            raise Forbidden("a business claims at itself")
        venue = caller.subject_id
    user = resolve_user(session, caller, data)
    target = at(session, campaign, trigger, user, venue, source_id=source.id if source else None)
    claim = fire(session, settings, caller, target)
    assert isinstance(claim, Claim)  # a manual or QR trigger pays at once
    return claim


def _claimable(session: Session, caller: Principal, campaign_id: uuid.UUID) -> Campaign:
    """A business claims on its own campaigns and those it is an accepted partner of; others on any
    they see."""
    campaign = get_campaign(session, caller, campaign_id)
    owned = caller.kind != BUSINESS or campaign.business_id == caller.subject_id
    if not owned and engagements.partner_of(session, campaign.id, caller.subject_id) is None:
        raise NotFound("campaign not found")
    return campaign


def at(
    session: Session,
    campaign: Campaign,
    trigger: Trigger,
    user: User,
    business_id: uuid.UUID | None,
    *,
    source_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
) -> Target:
    """A claim made at the owner (by default) or at an accepted partner."""
    partner = None
    if business_id is not None and business_id != campaign.business_id:
        partner = engagements.partner_of(session, campaign.id, business_id)
        if partner is None:
            raise Forbidden("the business does not take part in the campaign", code="not_a_partner")
    venue = business_id or campaign.business_id
    return Target(campaign, trigger, user, venue, partner, source_id=source_id, event_id=event_id)


def _manual_trigger(session: Session, campaign: Campaign, trigger_id: uuid.UUID | None) -> Trigger:
    query = select(Trigger).where(Trigger.campaign_id == campaign.id, Trigger.type == "manual")
    if trigger_id is not None:
        query = query.where(Trigger.id == trigger_id)
    found = session.scalars(query.order_by(Trigger.created_at, Trigger.id).limit(2)).all()
    if not found:
        raise Refused("the campaign has no manual trigger to claim through", code="no_manual_trigger")
    if len(found) > 1:
        raise PersError(
            "the campaign has several manual triggers: name one", code="trigger_required", status=422
        )
    return found[0]


def fire(session: Session, settings: Settings, caller: Principal, target: Target) -> Claim | int:
    """Counts the action toward the trigger and pays when it completes: the claim, or the progress
    toward the threshold while below it.
    Raises `Refused` (nothing written) when a rule says no."""
    now = utcnow()
    campaign, trigger = target.campaign, target.trigger
    _check_open(campaign, now)
    counter = _locked_counter(session, trigger.id, target.user.id)
    _check_limits(trigger, counter, now)
    counter.progress += 1
    if counter.progress < trigger.completion_threshold:
        session.flush()
        return counter.progress
    counter.progress = 0
    if target.partner is not None:
        engagements.take_share(session, target.partner, now)
    units = _take_budget(session, campaign)
    today = now.date()
    counter.day_claims = counter.day_claims + 1 if counter.day == today else 1
    counter.claims, counter.day, counter.last_claim_at = counter.claims + 1, today, now
    claim = Claim(
        id=uuid.uuid4(),
        tenant_id=campaign.tenant_id,
        environment=campaign.environment,
        campaign_id=campaign.id,
        trigger_id=trigger.id,
        trigger_source_id=target.source_id,
        event_id=target.event_id,
        user_id=target.user.id,
        business_id=target.business_id,
        claimed_by=caller.kind,
        claimed_by_id=caller.subject_id,
        status="pending",
        created_at=now,
    )
    session.add(claim)
    session.flush()
    ops = [
        submit_mint(
            session,
            settings,
            caller.tenant,
            business_id=campaign.business_id,
            token_id=unit.token_type_id,
            amount=unit.amount,
            user_id=target.user.id,
        )
        for unit in units
    ]
    claim.operation_ids = [str(op.id) for op in ops]
    session.execute(insert(ClaimOperation), [{"operation_id": op.id, "claim_id": claim.id} for op in ops])
    session.flush()
    return claim


def _check_open(campaign: Campaign, now: datetime) -> None:
    if campaign.status != "active":
        raise Refused(f"the campaign is {campaign.status}", code="campaign_not_active")
    if campaign.starts_at is not None and now < campaign.starts_at:
        raise Refused("the campaign has not started", code="campaign_not_started")
    if campaign.ends_at is not None and now >= campaign.ends_at:
        raise Refused("the campaign is over", code="campaign_over")


def _locked_counter(session: Session, trigger_id: uuid.UUID, user_id: uuid.UUID) -> TriggerCounter:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    values = {"trigger_id": trigger_id, "user_id": user_id, "claims": 0, "day_claims": 0, "progress": 0}
    session.execute(dialect.insert(TriggerCounter).values(values).on_conflict_do_nothing())
    query = select(TriggerCounter).where(
        TriggerCounter.trigger_id == trigger_id, TriggerCounter.user_id == user_id
    )
    counter = session.scalar(query.with_for_update().execution_options(populate_existing=True))
    assert counter is not None
    return counter


def _check_limits(trigger: Trigger, counter: TriggerCounter, now: datetime) -> None:
    if trigger.max_per_user is not None and counter.claims >= trigger.max_per_user:
        raise Refused("the user has claimed this as often as it allows", code="max_per_user_reached")
    today_claims = counter.day_claims if counter.day == now.date() else 0
    if trigger.max_per_day is not None and today_claims >= trigger.max_per_day:
        raise Refused("the user has claimed this as often as it allows today", code="max_per_day_reached")
    if trigger.min_cooldown_seconds is not None and counter.last_claim_at is not None:
        ready = counter.last_claim_at + timedelta(seconds=trigger.min_cooldown_seconds)
        if now < ready:
            wait = int((ready - now).total_seconds()) + 1
            raise Refused("too soon after the last claim", code="cooldown_active", retry_after_seconds=wait)


def _take_budget(session: Session, campaign: Campaign) -> list[TokenUnit]:
    """Each unit's amount taken from its budget, the units locked in id order (no deadlock between
    claims); all or nothing. The claim that leaves a budget short of one more claim announces it."""
    query = select(TokenUnit).where(TokenUnit.campaign_id == campaign.id).order_by(TokenUnit.id)
    units = session.scalars(query.with_for_update().execution_options(populate_existing=True)).all()
    if not units:
        raise Refused("the campaign pays nothing yet", code="campaign_has_no_tokens")
    for unit in units:
        if unit.issued + unit.amount > unit.max_amount:
            raise Refused(
                "the campaign's budget is spent", code="budget_exhausted", token_id=str(unit.token_type_id)
            )
    for unit in units:
        unit.issued += unit.amount
        if unit.issued + unit.amount > unit.max_amount:
            data = {
                "campaignId": str(campaign.id),
                "tokenUnitId": str(unit.id),
                "tokenId": str(unit.token_type_id),
            }
            webhooks.emit(
                session, _scope(campaign), "campaign.budget_exhausted", {**data, "issued": str(unit.issued)}
            )
    session.flush()
    return list(units)


def _scope(row: Campaign | Claim) -> TenantScope:
    return TenantScope(row.tenant_id, row.environment)


def listed(
    caller: Principal,
    *,
    campaign_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    business_id: uuid.UUID | None = None,
    status: str | None = None,
) -> Select[Claim]:
    """The claims the caller may read: all of the tenant's for its staff, a business's own (made at it
    or paid by its campaigns), a user's own."""
    query = scoped(Claim, caller.tenant, environment=True)
    if caller.kind == USER:
        query = query.where(Claim.user_id == caller.subject_id)
    elif caller.kind == BUSINESS:
        owned = select(Campaign.id).where(Campaign.business_id == caller.subject_id)
        query = query.where(or_(Claim.business_id == caller.subject_id, Claim.campaign_id.in_(owned)))
    for column, value in (
        (Claim.campaign_id, campaign_id),
        (Claim.user_id, user_id),
        (Claim.business_id, business_id),
        (Claim.status, status),
    ):
        if value is not None:
            query = query.where(column == value)
    return query.order_by(Claim.created_at.desc(), Claim.id)


def get_claim(session: Session, caller: Principal, claim_id: str) -> Claim:
    try:
        key = uuid.UUID(claim_id)
    except ValueError:
        raise NotFound("claim not found") from None
    claim = session.scalar(listed(caller).where(Claim.id == key))
    if claim is None:
        raise NotFound("claim not found")
    return claim
