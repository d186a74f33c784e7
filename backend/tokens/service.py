"""Token types: a credit deploys its own ERC-20 clone; a reward or status registers an id in the
tenant's ERC-1155. Both become `active` when the chain confirms, through the `tokens.activate` job."""

import uuid
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.auth.principal import TenantScope
from backend.kit import outbox
from backend.kit.errors import Conflict, PersError
from backend.kit.scope import get_scoped
from backend.tenants.models import TenantEnvironment
from backend.tokens.models import TokenType
from backend.tokens.schemas import TokenCreate, TokenOut, TokenUpdate

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
        raise Conflict(f"the symbol {data.symbol!r} is taken (in any case)", code="symbol_taken")
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
        func.upper(TokenType.symbol) == symbol.upper(),  # PTS, pts and Pts are one symbol
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


def described(session: Session, tokens: Sequence[TokenType]) -> list[TokenOut]:
    """Token types as the API shows them: with the failed attempts of their activation job, and a pending
    one whose job failed says why (the job's last error, without secrets) instead of nothing."""
    ids = [str(t.id) for t in tokens]
    job_ids = outbox.OutboxMessage.payload["token_id"].as_string()
    jobs = session.scalars(
        select(outbox.OutboxMessage)
        .where(outbox.OutboxMessage.task == ACTIVATE_JOB, job_ids.in_(ids))
        .order_by(outbox.OutboxMessage.created_at)
    )
    attempts: dict[str, int] = defaultdict(int)
    errors: dict[str, str] = {}
    for job in jobs:
        token_id = str(job.payload["token_id"])
        attempts[token_id] += job.attempts
        if job.completed_at is None and job.last_error:
            errors[token_id] = outbox.public_error(job.last_error)
    shown = []
    for token in tokens:
        key = str(token.id)
        update: dict[str, object] = {"attempts": attempts[key]}
        if token.status == "pending" and key in errors:
            tries = attempts[key]
            retried = "no longer retried" if tries >= outbox.MAX_ATTEMPTS else "retried"
            update["failure_reason"] = (
                f"activation failed {tries} time(s), {retried}; last error: {errors[key]}"
            )
        shown.append(TokenOut.model_validate(token).model_copy(update=update))
    return shown
