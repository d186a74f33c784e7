from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from backend.auth.principal import ADMIN, AUDITOR, BUSINESS, USER, Auth, Principal
from backend.kit.api import Page, Paging, error_responses
from backend.kit.session import DbSession
from backend.kit.types import Address
from backend.users import service
from backend.users.models import User, UserLink
from backend.users.schemas import ProfileUpdate, UserFind, UserLinkOut, UserOut, UserUpdate

router = APIRouter(prefix="/v1/users", tags=["users"], responses=error_responses(400, 401, 403, 422, 429))
Writer = Annotated[Principal, Depends(Auth(ADMIN, BUSINESS, scope="users:write"))]
Reader = Annotated[Principal, Depends(Auth(ADMIN, AUDITOR, BUSINESS, scope="users:read"))]
Me = Annotated[Principal, Depends(Auth(USER))]


def _business(caller: Principal) -> Principal | None:
    return caller if caller.kind == BUSINESS else None


def _out(user: User, link: UserLink | None = None, links: list[UserLink] | None = None) -> UserOut:
    """A business sees its own record of the user (`link`); admins the tenant's and every business's
    (`links`); the user their own, with their profile."""
    record: User | UserLink = link if link is not None else user
    return UserOut(
        id=user.id,
        wallet_address=user.wallet_address,
        managed_wallet=user.wallet_key_sealed is not None,
        external_id=record.external_id,
        email=record.email,
        name=user.name,
        attributes=record.attributes,
        profile=None if link is not None else user.profile,
        businesses=None if links is None else [UserLinkOut.model_validate(x) for x in links],
        created_at=user.created_at,
    )


def _for(session: DbSession, caller: Principal, users: list[User]) -> list[UserOut]:
    if caller.kind == BUSINESS:
        assert caller.subject_id is not None
        links = service.links_of(session, [u.id for u in users])
        own = {x.user_id: x for x in links if x.business_id == caller.subject_id}
        return [_out(u, link=own[u.id]) for u in users]
    every = service.links_of(session, [u.id for u in users])
    return [_out(u, links=[x for x in every if x.user_id == u.id]) for u in users]


@router.post(
    "", response_model=UserOut, status_code=201, responses={200: {"model": UserOut}, **error_responses(409)}
)
def find_or_create_user(
    body: UserFind, request: Request, response: Response, session: DbSession, caller: Writer
) -> UserOut:
    """Find the user by wallet, externalId or email, or create one (201), with a managed wallet if needed.
    A business's externalId and email are its own: they find only users it created or served."""
    business = _business(caller)
    user, _, created = service.find_or_create(
        session,
        request.app.state.runtime.keystore,
        caller.tenant,
        body,
        business.subject_id if business else None,
    )
    response.status_code = 201 if created else 200
    return _for(session, caller, [user])[0]


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
    """Admins and auditors search every user; a business only those it created or served."""
    business = _business(caller)
    query = service.search(
        caller.tenant, wallet_address, external_id, email, q, business.subject_id if business else None
    )
    rows, meta = paging.apply(session, query)
    return Page(data=_for(session, caller, list(rows)), meta=meta)


@router.get("/me", response_model=UserOut)
def me(session: DbSession, caller: Me) -> UserOut:
    return _out(service.get_user(session, caller.tenant, str(caller.subject_id)))


@router.patch("/me", response_model=UserOut, responses=error_responses(409))
def update_me(body: ProfileUpdate, session: DbSession, caller: Me) -> UserOut:
    """Users change their name and their own `profile`; the program's attributes are not theirs."""
    user = service.get_user(session, caller.tenant, str(caller.subject_id))
    return _out(service.update_profile(session, user, body))


def _visible(session: DbSession, caller: Principal, user_id: str) -> tuple[User, UserLink | None]:
    if caller.kind == BUSINESS:
        assert caller.subject_id is not None
        return service.get_linked_user(session, caller.tenant, caller.subject_id, user_id)
    return service.get_user(session, caller.tenant, user_id), None


@router.get("/{user_id}", response_model=UserOut, responses=error_responses(404))
def get_user(user_id: str, session: DbSession, caller: Reader) -> UserOut:
    user, _ = _visible(session, caller, user_id)
    return _for(session, caller, [user])[0]


@router.patch("/{user_id}", response_model=UserOut, responses=error_responses(404, 409))
def update_user(user_id: str, body: UserUpdate, session: DbSession, caller: Writer) -> UserOut:
    """An admin changes the tenant's record (name, externalId, email, attributes); a business its own
    record of a user it created or served (externalId, email, attributes)."""
    user, link = _visible(session, caller, user_id)
    service.update_user(session, user, body, link)
    return _for(session, caller, [user])[0]
