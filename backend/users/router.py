from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from backend.auth.principal import ADMIN, AUDITOR, BUSINESS, USER, Auth, Principal
from backend.kit.api import Page, Paging, error_responses
from backend.kit.session import DbSession
from backend.kit.types import Address
from backend.users import service
from backend.users.models import User
from backend.users.schemas import UserFind, UserOut, UserUpdate

router = APIRouter(prefix="/v1/users", tags=["users"], responses=error_responses(400, 401, 403, 422, 429))
Writer = Annotated[Principal, Depends(Auth(ADMIN, BUSINESS, scope="users:write"))]
Reader = Annotated[Principal, Depends(Auth(ADMIN, AUDITOR, BUSINESS, scope="users:read"))]
Me = Annotated[Principal, Depends(Auth(USER))]


def _out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        wallet_address=user.wallet_address,
        managed_wallet=user.wallet_key_sealed is not None,
        external_id=user.external_id,
        email=user.email,
        name=user.name,
        attributes=user.attributes,
        created_at=user.created_at,
    )


@router.post(
    "", response_model=UserOut, status_code=201, responses={200: {"model": UserOut}, **error_responses(409)}
)
def find_or_create_user(
    body: UserFind, request: Request, response: Response, session: DbSession, caller: Writer
) -> UserOut:
    """Find the user by wallet, externalId or email, or create one (201), with a managed wallet if needed."""
    user, created = service.find_or_create(session, request.app.state.runtime.keystore, caller.tenant, body)
    response.status_code = 201 if created else 200
    return _out(user)


@router.get("", response_model=Page[UserOut])
def search_users(
    session: DbSession,
    caller: Reader,
    paging: Annotated[Paging, Depends()],
    wallet_address: Annotated[Address | None, Query(alias="walletAddress")] = None,
    external_id: Annotated[str | None, Query(alias="externalId", max_length=128)] = None,
    email: Annotated[str | None, Query(max_length=254)] = None,
    q: Annotated[str | None, Query(max_length=120)] = None,
) -> Page[UserOut]:
    rows, meta = paging.apply(session, service.search(caller.tenant, wallet_address, external_id, email, q))
    return Page(data=[_out(u) for u in rows], meta=meta)


@router.get("/me", response_model=UserOut)
def me(session: DbSession, caller: Me) -> UserOut:
    return _out(service.get_user(session, caller.tenant, str(caller.subject_id)))


@router.patch("/me", response_model=UserOut, responses=error_responses(409))
def update_me(body: UserUpdate, session: DbSession, caller: Me) -> UserOut:
    user = service.get_user(session, caller.tenant, str(caller.subject_id))
    return _out(service.update_user(session, user, body))


@router.get("/{user_id}", response_model=UserOut, responses=error_responses(404))
def get_user(user_id: str, session: DbSession, caller: Reader) -> UserOut:
    return _out(service.get_user(session, caller.tenant, user_id))
