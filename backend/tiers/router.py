from typing import Annotated

from fastapi import APIRouter, Depends, Response

from backend.auth.principal import ADMIN, AUDITOR, BUSINESS, USER, AdminAuth, Auth, Principal
from backend.kit.api import Page, Paging, error_responses
from backend.kit.session import DbSession
from backend.tiers import service
from backend.tiers.schemas import MemberStatus, TierCreate, TierOut, TierUpdate
from backend.users.service import get_linked_user, get_user

router = APIRouter(
    prefix="/v1/status-tiers", tags=["status tiers"], responses=error_responses(400, 401, 403, 422, 429)
)
users_router = APIRouter(prefix="/v1/users", tags=["status tiers"], responses=error_responses(401, 403, 429))
TierReader = Annotated[Principal, Depends(Auth(ADMIN, AUDITOR, BUSINESS))]
MemberReader = Annotated[Principal, Depends(Auth(ADMIN, AUDITOR))]
StatusReader = Annotated[Principal, Depends(Auth(ADMIN, BUSINESS, scope="users:read"))]
Me = Annotated[Principal, Depends(Auth(USER))]


@router.post("", status_code=201, response_model=TierOut, responses=error_responses(404))
def create_tier(body: TierCreate, session: DbSession, caller: AdminAuth) -> TierOut:
    """A tier granting its status token when a user's lifetime-earned credits reach the threshold."""
    return TierOut.model_validate(service.create_tier(session, caller.tenant, body))


@router.get("", response_model=Page[TierOut])
def list_tiers(session: DbSession, caller: TierReader, paging: Annotated[Paging, Depends()]) -> Page[TierOut]:
    rows, meta = paging.apply(session, service.listed(caller.tenant))
    return Page(data=[TierOut.model_validate(t) for t in rows], meta=meta)


@router.get("/{tier_id}", response_model=TierOut, responses=error_responses(404))
def get_tier(tier_id: str, session: DbSession, caller: AdminAuth) -> TierOut:
    return TierOut.model_validate(service.get_tier(session, caller.tenant, tier_id))


@router.patch("/{tier_id}", response_model=TierOut, responses=error_responses(404))
def update_tier(tier_id: str, body: TierUpdate, session: DbSession, caller: AdminAuth) -> TierOut:
    return TierOut.model_validate(service.update_tier(session, caller.tenant, tier_id, body))


@router.delete("/{tier_id}", status_code=204, responses=error_responses(404, 409))
def delete_tier(tier_id: str, session: DbSession, caller: AdminAuth) -> Response:
    """Only a tier nobody holds or held; deactivate one that has members."""
    service.delete_tier(session, caller.tenant, tier_id)
    return Response(status_code=204)


@router.get("/{tier_id}/members", response_model=Page[MemberStatus], responses=error_responses(404))
def tier_members(
    tier_id: str, session: DbSession, caller: MemberReader, paging: Annotated[Paging, Depends()]
) -> Page[MemberStatus]:
    tier = service.get_tier(session, caller.tenant, tier_id)
    rows, meta = paging.apply(session, service.members(tier))
    return Page(data=service.described(session, rows), meta=meta)


@users_router.get("/me/status", response_model=Page[MemberStatus])
def my_status(session: DbSession, caller: Me, paging: Annotated[Paging, Depends()]) -> Page[MemberStatus]:
    """The caller's statuses: every tier they hold, held or are being granted."""
    assert caller.subject_id is not None
    rows, meta = paging.apply(session, service.of_user(caller.tenant, caller.subject_id))
    return Page(data=service.described(session, rows), meta=meta)


@users_router.get("/{user_id}/status", response_model=Page[MemberStatus], responses=error_responses(404))
def user_status(
    user_id: str, session: DbSession, caller: StatusReader, paging: Annotated[Paging, Depends()]
) -> Page[MemberStatus]:
    """A user's statuses; a business sees only users it created or served."""
    if caller.kind == BUSINESS:
        assert caller.subject_id is not None
        user, _ = get_linked_user(session, caller.tenant, caller.subject_id, user_id)
    else:
        user = get_user(session, caller.tenant, user_id)
    rows, meta = paging.apply(session, service.of_user(caller.tenant, user.id))
    return Page(data=service.described(session, rows), meta=meta)
