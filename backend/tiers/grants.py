"""Granting and revoking a status: one operation through the relay's service layer, signed by the
tenant's signer, with a ref derived from (tier, user, the membership's operation number). The caller
holds the membership's row lock, so two evaluations cannot both submit; and the same ref can never
run twice on chain."""

import uuid
from datetime import timedelta

from eth_utils.crypto import keccak
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.auth.principal import TenantScope
from backend.businesses.models import Business
from backend.chain.typed_data import make_ref
from backend.kit.db import utcnow
from backend.kit.errors import PersError
from backend.relay import service as relay
from backend.settings import Settings
from backend.tiers.models import LifetimeEarning, StatusGrant, StatusTier

HELD = ("granting", "granted", "revoking")  # the user holds the status, or it is on its way
RETRY_AFTER = timedelta(minutes=1)  # a failed grant waits this long before it is tried again


def tenant_signer(session: Session, tenant_id: uuid.UUID) -> uuid.UUID | None:
    """The business whose custodial signer signs the tenant's own operations: its first active
    business with a platform-held key (an admin's mint names its business; a tier has none to name)."""
    query = (
        select(Business.id)
        .where(
            Business.tenant_id == tenant_id,
            Business.status == "active",
            Business.signer_key_sealed.is_not(None),
        )
        .order_by(Business.created_at, Business.id)
        .limit(1)
    )
    return session.scalar(query)


def status_ref(grant: StatusGrant) -> str:
    """(tier, user) name a 128-bit namespace; the membership's operation number is the sequence."""
    namespace = int.from_bytes(keccak(grant.tier_id.bytes + grant.user_id.bytes)[:16], "big")
    return "0x" + make_ref(namespace, grant.sequence).hex()


def _submit(
    session: Session, settings: Settings, tier: StatusTier, grant: StatusGrant, revoke: bool
) -> str | None:
    """Queues the grant's mint or burn and points the membership at it; answers the refusal's code
    instead (nothing queued)."""
    grant.sequence += 1
    grant.changed_at = utcnow()
    try:
        with session.begin_nested():  # a refusal undoes what the relay wrote, not the caller's work
            signer = tenant_signer(session, grant.tenant_id)
            if signer is None:
                raise PersError("the tenant has no business with a custodial signer", code="no_signer")
            op = relay.submit_status(
                session,
                settings,
                TenantScope(grant.tenant_id, grant.environment),
                business_id=signer,
                token_id=tier.status_token_id,
                user_id=grant.user_id,
                ref=status_ref(grant),
                revoke=revoke,
            )
    except PersError as exc:
        grant.error_code = exc.code[:32]
        return grant.error_code
    grant.operation_id, grant.error_code = op.id, None
    return None


def grant(session: Session, settings: Settings, tier: StatusTier, membership: StatusGrant) -> None:
    """Mints the status: `granting` until the mint is mined, or `failed` if it cannot be queued."""
    refused = _submit(session, settings, tier, membership, revoke=False)
    membership.state = "failed" if refused else "granting"
    membership.granted_at = membership.expires_at = membership.revoked_at = None


def revoke(session: Session, settings: Settings, tier: StatusTier, membership: StatusGrant) -> None:
    """Burns the status: `revoking` until the burn is mined; left `granted` (and tried again by the
    next pass) if it cannot be queued."""
    if _submit(session, settings, tier, membership, revoke=True) is None:
        membership.state = "revoking"


def lifetime(session: Session, tier: StatusTier, user_id: uuid.UUID) -> int:
    earned = session.get(LifetimeEarning, (tier.credit_token_id, user_id))
    return earned.amount if earned is not None else 0


def due(tier: StatusTier, membership: StatusGrant | None, earned: int) -> bool:
    """A user earns the tier's status with `threshold` credits earned since their last revoke."""
    if not tier.active or (membership is not None and membership.state in HELD):
        return False
    base = membership.earned_base if membership is not None else 0
    return earned - base >= tier.threshold
