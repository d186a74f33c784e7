from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from backend.auth.principal import ADMIN, AUDITOR, BUSINESS, PROJECT, USER, AdminAuth, Auth, Principal
from backend.kit.api import Page, Paging, app_settings, error_responses
from backend.kit.errors import PersError
from backend.kit.session import DbSession
from backend.redemptions import service
from backend.redemptions.schemas import (
    PreparedRedeem,
    RedeemCreate,
    RedeemOut,
    RedeemPrepare,
    RedemptionCreate,
    RedemptionOut,
    RedemptionUpdate,
)
from backend.relay.router import IdempotencyKey, idempotent_answer

router = APIRouter(
    prefix="/v1/redemptions", tags=["redemptions"], responses=error_responses(400, 401, 403, 422, 429)
)
# Offers are public with the project key, like tokens: an app shows them before a user signs in.
OfferReader = Annotated[Principal, Depends(Auth(PROJECT, ADMIN, AUDITOR, BUSINESS, USER))]
Redeemer = Annotated[Principal, Depends(Auth(USER))]
RedeemLister = Annotated[Principal, Depends(Auth(ADMIN, AUDITOR, BUSINESS))]
Fulfiller = Annotated[Principal, Depends(Auth(BUSINESS))]


@router.post("", status_code=201, response_model=RedemptionOut, responses=error_responses(404))
def create_redemption(body: RedemptionCreate, session: DbSession, caller: AdminAuth) -> RedemptionOut:
    """Create an `exchange` or `catalog` offer."""
    return RedemptionOut.model_validate(service.create_redemption(session, caller.tenant, body))


@router.get("", response_model=Page[RedemptionOut])
def list_redemptions(
    session: DbSession, caller: OfferReader, paging: Annotated[Paging, Depends()], active: bool | None = None
) -> Page[RedemptionOut]:
    rows, meta = paging.apply(session, service.listed(caller.tenant, active))
    return Page(data=[RedemptionOut.model_validate(r) for r in rows], meta=meta)


@router.post("/redeems/prepare", response_model=PreparedRedeem, responses=error_responses(404, 409))
def prepare_redeem(
    body: RedeemPrepare, request: Request, session: DbSession, caller: Redeemer
) -> PreparedRedeem:
    """For a user who keeps their own wallet: the EIP-712 typed data of the burn to sign (an
    `ExchangeLeg` for an exchange, an `Operations` group for a catalog offer); post the redeem back
    with its `ref`, `deadline`, `exchangeRef` and the signature."""
    assert caller.subject_id is not None
    return service.prepare(session, app_settings(request), caller.tenant, caller.subject_id, body)


@router.post("/redeems", status_code=202, response_model=RedeemOut, responses=error_responses(404, 409))
async def create_redeem(
    body: RedeemCreate,
    request: Request,
    session: DbSession,
    caller: Redeemer,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Redeem an offer with a managed wallet: `PENDING`, then `PROCESSING` once sent, then `COMPLETED`
    or `FAILED` (the stock given back), following its operations."""
    settings = app_settings(request)
    assert caller.subject_id is not None

    def work(session: Session, principal: Principal) -> dict[str, Any]:
        made = service.redeem(session, settings, principal.tenant, principal.subject_id, body)  # type: ignore[arg-type]
        return RedeemOut.model_validate(made).model_dump(mode="json", by_alias=True)

    dumped = partial(body.model_dump, mode="json", by_alias=True)
    return await idempotent_answer(request, session, caller, idempotency_key, dumped, work)


@router.get("/redeems/me", response_model=Page[RedeemOut])
def my_redeems(session: DbSession, caller: Redeemer, paging: Annotated[Paging, Depends()]) -> Page[RedeemOut]:
    rows, meta = paging.apply(session, service.redeems_of(caller.tenant, caller.subject_id))
    return Page(data=[RedeemOut.model_validate(r) for r in rows], meta=meta)


@router.get("/redeems", response_model=Page[RedeemOut])
def list_redeems(
    session: DbSession, caller: RedeemLister, paging: Annotated[Paging, Depends()]
) -> Page[RedeemOut]:
    """Every redeem (admin, auditor); a business sees those of the offers it signs or fulfils."""
    if caller.kind == BUSINESS:
        assert caller.subject_id is not None
        query = service.business_redeems(caller.tenant, caller.subject_id)
    else:
        query = service.redeems_of(caller.tenant)
    rows, meta = paging.apply(session, query)
    return Page(data=[RedeemOut.model_validate(r) for r in rows], meta=meta)


@router.post("/redeems/{redeem_id}/fulfil", response_model=RedeemOut, responses=error_responses(404, 409))
def fulfil_redeem(redeem_id: str, session: DbSession, caller: Fulfiller) -> RedeemOut:
    """The partner business of a catalog offer records that it handed the item over."""
    if caller.subject_id is None:
        raise PersError("a business fulfils", code="forbidden", status=403)
    return RedeemOut.model_validate(service.fulfil(session, caller.tenant, caller.subject_id, redeem_id))


@router.get("/{redemption_id}", response_model=RedemptionOut, responses=error_responses(404))
def get_redemption(redemption_id: str, session: DbSession, caller: OfferReader) -> RedemptionOut:
    return RedemptionOut.model_validate(service.get_redemption(session, caller.tenant, redemption_id))


@router.patch("/{redemption_id}", response_model=RedemptionOut, responses=error_responses(404, 409))
def update_redemption(
    redemption_id: str, body: RedemptionUpdate, session: DbSession, caller: AdminAuth
) -> RedemptionOut:
    return RedemptionOut.model_validate(
        service.update_redemption(session, caller.tenant, redemption_id, body)
    )
