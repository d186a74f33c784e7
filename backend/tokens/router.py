from typing import Annotated

from fastapi import APIRouter, Depends

from backend.auth.principal import ADMIN, AUDITOR, BUSINESS, PROJECT, USER, AdminAuth, Auth, Principal
from backend.balances import service as balances
from backend.balances.schemas import HoldersPage
from backend.kit.api import Page, Paging, error_responses
from backend.kit.scope import scoped
from backend.kit.session import DbSession
from backend.tokens import service
from backend.tokens.models import TokenType
from backend.tokens.schemas import TokenCreate, TokenDetail, TokenKind, TokenOut, TokenStatus, TokenUpdate

router = APIRouter(prefix="/v1/tokens", tags=["tokens"], responses=error_responses(400, 401, 403, 422, 429))
# Public with the project key, so any of the tenant's callers may read them, whatever its key's scopes.
Reader = Annotated[Principal, Depends(Auth(PROJECT, ADMIN, AUDITOR, BUSINESS, USER))]
# Who holds what, across the tenant's customers: the tenant's staff and its businesses.
HoldersReader = Annotated[Principal, Depends(Auth(ADMIN, AUDITOR, BUSINESS))]


@router.post("", status_code=202, response_model=TokenOut, responses=error_responses(409))
def create_token(body: TokenCreate, session: DbSession, caller: AdminAuth) -> TokenOut:
    """Create a token type: `pending` until its contract (credit) or id (reward, status) is on chain."""
    return service.described(session, [service.create_token(session, caller.tenant, body)])[0]


@router.get("", response_model=Page[TokenOut])
def list_tokens(
    session: DbSession,
    caller: Reader,
    paging: Annotated[Paging, Depends()],
    kind: TokenKind | None = None,
    status: TokenStatus | None = None,
) -> Page[TokenOut]:
    """The environment's token types, optionally of one kind or status; public with the project key."""
    query = scoped(TokenType, caller.tenant, environment=True).order_by(TokenType.created_at, TokenType.id)
    if kind is not None:
        query = query.where(TokenType.kind == kind)
    if status is not None:
        query = query.where(TokenType.status == status)
    rows, meta = paging.apply(session, query)
    return Page(data=service.described(session, rows), meta=meta)


@router.get("/{token_id}", response_model=TokenDetail, responses=error_responses(404))
def get_token(token_id: str, session: DbSession, caller: Reader) -> TokenDetail:
    """The token, with its supply and holder count from the chain mirror."""
    token = service.get_token(session, caller.tenant, token_id)
    found = balances.supply(session, caller.tenant, token)
    described = service.described(session, [token])[0]
    return TokenDetail.model_validate(
        {
            **described.model_dump(),
            "supply": found and found.supply,
            "holder_count": found and found.holders,
            "as_of_block": found and found.as_of_block,
        }
    )


@router.get("/{token_id}/holders", response_model=HoldersPage, responses=error_responses(404))
def token_holders(
    token_id: str, session: DbSession, caller: HoldersReader, paging: Annotated[Paging, Depends()]
) -> HoldersPage:
    """The token's holders with a non-zero balance, largest first, from the chain mirror."""
    token = service.get_token(session, caller.tenant, token_id)
    return balances.holders(session, caller.tenant, token, paging)


@router.patch("/{token_id}", response_model=TokenOut, responses=error_responses(404))
def update_token(token_id: str, body: TokenUpdate, session: DbSession, caller: AdminAuth) -> TokenOut:
    return service.described(session, [service.update_token(session, caller.tenant, token_id, body)])[0]
