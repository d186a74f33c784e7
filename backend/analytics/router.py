"""/v1/analytics: the tenant's figures over a range, in day, week or month buckets."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from backend.analytics import service
from backend.analytics.schemas import Analytics, Interval
from backend.auth.principal import ADMIN, AUDITOR, BUSINESS, Auth, Principal
from backend.campaigns.models import Campaign
from backend.kit.api import error_responses
from backend.kit.scope import get_scoped
from backend.kit.session import DbSession
from backend.tokens.service import get_token

router = APIRouter(
    prefix="/v1/analytics", tags=["analytics"], responses=error_responses(400, 401, 403, 422, 429)
)
# The tenant's staff see the whole environment; a business its own share.
Reader = Annotated[Principal, Depends(Auth(ADMIN, AUDITOR, BUSINESS))]


def _window(
    start: Annotated[
        datetime | None, Query(alias="from", description="ISO-8601; default: `to` - 30 days")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="ISO-8601; default: now")] = None,
    interval: Interval = "day",
) -> service.Window:
    return service.window(start, end, interval)


Window = Annotated[service.Window, Depends(_window)]


@router.get("/overview", response_model=Analytics)
def overview(session: DbSession, caller: Reader, win: Window) -> Analytics:
    """Claims, tokens moved, redeems and gas of the environment (a business: its share)."""
    return service.analytics(session, caller, service.Subject(), win)


@router.get("/campaigns/{campaign_id}", response_model=Analytics, responses=error_responses(404))
def campaign(campaign_id: str, session: DbSession, caller: Reader, win: Window) -> Analytics:
    """One campaign's figures, with the use of its budget per token unit."""
    found = get_scoped(session, Campaign, caller.tenant, campaign_id, environment=True)
    return service.analytics(session, caller, service.Subject(campaign_id=found.id), win)


@router.get("/tokens/{token_id}", response_model=Analytics, responses=error_responses(404))
def token(token_id: str, session: DbSession, caller: Reader, win: Window) -> Analytics:
    """One token's figures: its operations, the claims of campaigns paying it, redeems of offers using it."""
    found = get_token(session, caller.tenant, token_id)
    return service.analytics(session, caller, service.Subject(token_id=found.id), win)
