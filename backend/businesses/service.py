"""Businesses, their minter signers (custodial unless they bring their own) and their API keys."""

import uuid

from sqlalchemy.orm import Session

from backend.auth.credentials import new_secret, secret_hash
from backend.auth.principal import API_SCOPES, TenantScope
from backend.businesses.models import ApiKey, Business
from backend.businesses.schemas import ApiKeyCreate, BusinessCreate, BusinessUpdate
from backend.kit.db import utcnow
from backend.kit.errors import NotFound
from backend.kit.keystore import Keystore
from backend.kit.scope import get_scoped
from backend.tenants.onchain import enqueue_sync
from backend.tenants.service import ENVIRONMENTS

PREFIX_LENGTH = 12


def signer_context(business_id: uuid.UUID) -> str:
    return f"business:{business_id}:signer"


def _sync_roles(session: Session, tenant_id: uuid.UUID) -> None:
    for environment in ENVIRONMENTS:
        enqueue_sync(session, tenant_id, environment)


def create_business(
    session: Session, keystore: Keystore, scope: TenantScope, data: BusinessCreate
) -> Business:
    business = Business(
        id=uuid.uuid4(),
        tenant_id=scope.tenant_id,
        name=data.name,
        description=data.description,
        retired_signers=[],
    )
    if data.signer_address:
        business.signer_address = data.signer_address
    else:
        business.signer_address, business.signer_key_sealed = keystore.new_account(
            signer_context(business.id)
        )
    session.add(business)
    session.flush()
    _sync_roles(session, scope.tenant_id)
    return business


def get_business(session: Session, scope: TenantScope, business_id: str | uuid.UUID) -> Business:
    return get_scoped(session, Business, scope, business_id)


def update_business(session: Session, scope: TenantScope, business_id: str, data: BusinessUpdate) -> Business:
    business = get_business(session, scope, business_id)
    changed = data.model_fields_set
    if data.name is not None:
        business.name = data.name
    if "description" in changed:
        business.description = data.description
    roles_change = False
    if data.status is not None and data.status != business.status:
        business.status, roles_change = data.status, True
    if data.signer_address is not None and data.signer_address != business.signer_address:
        business.retired_signers = [*business.retired_signers, business.signer_address]
        business.signer_address, business.signer_key_sealed, roles_change = data.signer_address, None, True
    session.flush()
    if roles_change:
        _sync_roles(session, scope.tenant_id)
    return business


def create_api_key(
    session: Session, scope: TenantScope, business: Business, data: ApiKeyCreate
) -> tuple[ApiKey, str]:
    environment = scope.environment
    secret = new_secret(f"sk_{environment}")
    key = ApiKey(
        id=uuid.uuid4(),
        tenant_id=scope.tenant_id,
        business_id=business.id,
        environment=environment,
        name=data.name,
        prefix=secret[:PREFIX_LENGTH],
        key_hash=secret_hash(secret),
        scopes=sorted(set(data.scopes) if data.scopes is not None else set(API_SCOPES)),
    )
    session.add(key)
    session.flush()
    return key, secret


def revoke_api_key(session: Session, scope: TenantScope, business: Business, key_id: str) -> None:
    key = get_scoped(session, ApiKey, scope, key_id, environment=True)
    if key.business_id != business.id:
        raise NotFound("apikey not found")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    session.flush()
