"""Status tiers: the rules (created, listed, changed, deleted by the tenant's admins) and the users'
statuses in them. Grants and revokes are made by `evaluation` and `expiry`."""

import uuid
from collections.abc import Sequence

from sqlalchemy import Select, and_, select
from sqlalchemy.orm import Session

from backend.auth.principal import TenantScope
from backend.kit.errors import Conflict, NotFound, PersError
from backend.kit.scope import get_scoped, scoped
from backend.tiers.models import LifetimeEarning, StatusGrant, StatusTier
from backend.tiers.schemas import MemberStatus, TierCreate, TierUpdate
from backend.tokens.models import TokenType


def _token(session: Session, scope: TenantScope, token_id: uuid.UUID, kind: str) -> TokenType:
    token = session.get(TokenType, token_id)
    if token is None or (token.tenant_id, token.environment) != (scope.tenant_id, scope.environment):
        raise NotFound(f"the {kind} token was not found", code="token_not_found")
    if token.kind != kind:
        raise PersError(f"the token is a {token.kind}, not a {kind}", code="invalid_token_kind", status=422)
    return token


def create_tier(session: Session, scope: TenantScope, body: TierCreate) -> StatusTier:
    _token(session, scope, body.status_token_id, "status")
    _token(session, scope, body.credit_token_id, "credit")
    tier = StatusTier(
        id=uuid.uuid4(),
        tenant_id=scope.tenant_id,
        environment=scope.environment,
        name=body.name,
        status_token_id=body.status_token_id,
        credit_token_id=body.credit_token_id,
        threshold=body.threshold,
        valid_for_days=body.valid_for_days,
        active=body.active,
    )
    session.add(tier)
    session.flush()
    return tier


def listed(scope: TenantScope) -> Select[StatusTier]:
    return scoped(StatusTier, scope, environment=True).order_by(StatusTier.created_at, StatusTier.id)


def get_tier(session: Session, scope: TenantScope, tier_id: str | uuid.UUID) -> StatusTier:
    return get_scoped(session, StatusTier, scope, tier_id, environment=True)


def update_tier(session: Session, scope: TenantScope, tier_id: str, body: TierUpdate) -> StatusTier:
    tier = get_tier(session, scope, tier_id)
    changes = {name: getattr(body, name) for name in body.model_fields_set}  # amounts as ints
    if any(changes.get(name, "") is None for name in ("name", "threshold", "active")):
        raise PersError("`name`, `threshold` and `active` cannot be null", code="invalid_value", status=422)
    for name, value in changes.items():
        setattr(tier, name, value)
    if changes.keys() & {"active", "threshold"}:
        tier.caught_up = False  # users it now admits are granted by the next pass
    session.flush()
    return tier


def delete_tier(session: Session, scope: TenantScope, tier_id: str) -> None:
    """Only a tier nobody holds or held: its memberships are the record of the statuses it granted."""
    tier = get_tier(session, scope, tier_id)
    if session.scalar(select(StatusGrant.id).where(StatusGrant.tier_id == tier.id).limit(1)) is not None:
        raise Conflict("the tier has members: deactivate it instead", code="tier_has_members")
    session.delete(tier)
    session.flush()


def members(tier: StatusTier) -> Select[StatusGrant]:
    return select(StatusGrant).where(StatusGrant.tier_id == tier.id).order_by(StatusGrant.created_at)


def of_user(scope: TenantScope, user_id: uuid.UUID) -> Select[StatusGrant]:
    query = scoped(StatusGrant, scope, environment=True).where(StatusGrant.user_id == user_id)
    return query.order_by(StatusGrant.created_at)


def described(session: Session, grants: Sequence[StatusGrant]) -> list[MemberStatus]:
    """Memberships as the API shows them, with their tier and the user's lifetime earned."""
    if not grants:
        return []
    tiers = {
        t.id: t
        for t in session.scalars(select(StatusTier).where(StatusTier.id.in_({g.tier_id for g in grants})))
    }
    pairs = [(tiers[g.tier_id].credit_token_id, g.user_id) for g in grants]
    earned = {
        (row.token_type_id, row.user_id): row.amount
        for row in session.execute(
            select(LifetimeEarning.token_type_id, LifetimeEarning.user_id, LifetimeEarning.amount).where(
                and_(
                    LifetimeEarning.token_type_id.in_({t for t, _ in pairs}),
                    LifetimeEarning.user_id.in_({u for _, u in pairs}),
                )
            )
        )
    }
    return [
        MemberStatus(
            tier_id=g.tier_id,
            user_id=g.user_id,
            name=tiers[g.tier_id].name,
            status_token_id=tiers[g.tier_id].status_token_id,
            state=g.state,  # type: ignore[arg-type]
            lifetime_earned=earned.get(pair, 0),
            granted_at=g.granted_at,
            expires_at=g.expires_at,
            operation_id=g.operation_id,
            error_code=g.error_code,
        )
        for g, pair in zip(grants, pairs, strict=True)
    ]
