from typing import Annotated

from fastapi import APIRouter, Depends, Path

from backend.auth.principal import ADMIN, AUDITOR, BUSINESS, PROJECT, USER, Auth, Principal
from backend.balances import service
from backend.balances.schemas import BalancesOut
from backend.kit.api import error_responses
from backend.kit.errors import NotFound
from backend.kit.session import DbSession
from backend.kit.types import Address
from backend.users.models import User

router = APIRouter(tags=["balances"], responses=error_responses(400, 401, 403, 422, 429))
# Balances are public on chain: any of the tenant's callers may read them with the project key.
Reader = Annotated[Principal, Depends(Auth(PROJECT, ADMIN, AUDITOR, BUSINESS, USER))]
Me = Annotated[Principal, Depends(Auth(USER))]


@router.get("/v1/balances/accounts/{address}", response_model=BalancesOut)
def account_balances(
    address: Annotated[Address, Path(description="Any EVM address")], session: DbSession, caller: Reader
) -> BalancesOut:
    """The account's balances of the environment's tokens, from the mirror, as of `asOfBlock`."""
    return service.balances(session, caller.tenant, address)


@router.get("/v1/users/me/balances", response_model=BalancesOut, responses=error_responses(404))
def my_balances(session: DbSession, caller: Me) -> BalancesOut:
    """The signed-in user's balances."""
    user = session.get(User, caller.subject_id) if caller.subject_id else None
    if user is None:
        raise NotFound("user not found")
    return service.balances(session, caller.tenant, user.wallet_address)
