"""Token types: a credit deploys its own ERC-20 clone; a reward or status registers an id in the
tenant's ERC-1155. Both become `active` when the chain confirms, through the `tokens.activate` job."""

import uuid

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.auth.principal import TenantScope
from backend.kit import outbox
from backend.kit.errors import Conflict, PersError
from backend.kit.scope import get_scoped
from backend.tenants.models import TenantEnvironment
from backend.tokens.models import TokenType
from backend.tokens.schemas import TokenCreate, TokenUpdate

ACTIVATE_JOB = "tokens.activate"


class EnvironmentNotConfigured(PersError):
    code = "environment_not_configured"
    status = 409


def create_token(session: Session, scope: TenantScope, data: TokenCreate) -> TokenType:
    env = session.scalar(
        select(TenantEnvironment).where(
            TenantEnvironment.tenant_id == scope.tenant_id, TenantEnvironment.environment == scope.environment
        )
    )
    if env is None or env.network is None:
        raise EnvironmentNotConfigured(f"the {scope.environment} environment has no network configured")
    # The ERC-1155 keeps no per-id cap yet, and a cap not enforced is a lie (the range is the field's).
    if data.max_supply is not None and data.kind != "credit":
        raise PersError("maxSupply applies to credits only", code="max_supply_not_supported", status=422)
    if data.kind != "credit" and data.decimals != 0:
        raise PersError(
            "rewards and statuses are counted in whole units", code="decimals_not_allowed", status=422
        )
    token = TokenType(
        id=uuid.uuid4(),
        tenant_id=scope.tenant_id,
        environment=scope.environment,
        kind=data.kind,
        name=data.name,
        symbol=data.symbol,
        decimals=data.decimals,
        metadata_uri=data.metadata_uri,
        max_supply=data.max_supply,
        status="pending",
    )
    if data.kind != "credit":
        token.chain_token_id = _next_id(session, scope)
    if _symbol_taken(session, scope, data.symbol):
        raise Conflict(f"the symbol {data.symbol!r} is taken", code="symbol_taken")
    session.add(token)
    try:
        session.flush()
    except IntegrityError as exc:  # the same symbol or the next id, taken by a concurrent request
        raise Conflict(
            "another token was created at the same moment; retry", code="concurrent_update"
        ) from exc
    outbox.enqueue(session, ACTIVATE_JOB, token_id=str(token.id))
    return token


def _symbol_taken(session: Session, scope: TenantScope, symbol: str) -> bool:
    query = select(TokenType.id).where(
        TokenType.tenant_id == scope.tenant_id,
        TokenType.environment == scope.environment,
        TokenType.symbol == symbol,
    )
    return session.scalar(query) is not None


def _next_id(session: Session, scope: TenantScope) -> int:
    count = session.scalar(
        select(func.count()).where(
            TokenType.tenant_id == scope.tenant_id,
            TokenType.environment == scope.environment,
            TokenType.chain_token_id.is_not(None),
        )
    )
    return (count or 0) + 1


def get_token(session: Session, scope: TenantScope, token_id: str) -> TokenType:
    return get_scoped(session, TokenType, scope, token_id, environment=True)


def update_token(session: Session, scope: TenantScope, token_id: str, data: TokenUpdate) -> TokenType:
    token = get_token(session, scope, token_id)
    if "metadata_uri" in data.model_fields_set:
        token.metadata_uri = data.metadata_uri
    session.flush()
    return token
