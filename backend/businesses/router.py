from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from backend.auth.principal import ADMIN, AUDITOR, BUSINESS, AdminAuth, Auth, Forbidden, Principal
from backend.businesses import service
from backend.businesses.models import ApiKey, Business
from backend.businesses.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    BusinessCreate,
    BusinessOut,
    BusinessStatus,
    BusinessUpdate,
)
from backend.kit.api import Page, Paging, error_responses
from backend.kit.scope import scoped
from backend.kit.session import DbSession

router = APIRouter(
    prefix="/v1/businesses", tags=["businesses"], responses=error_responses(400, 401, 403, 422, 429)
)
Reader = Annotated[Principal, Depends(Auth(ADMIN, AUDITOR, BUSINESS))]
BusinessAuth = Annotated[Principal, Depends(Auth(BUSINESS))]


def _out(business: Business) -> BusinessOut:
    return BusinessOut(
        id=business.id,
        name=business.name,
        description=business.description,
        status=business.status,
        signer_address=business.signer_address,
        custodial_signer=business.signer_key_sealed is not None,
        created_at=business.created_at,
    )


def _visible(caller: Principal, business_id: str) -> None:
    """A business sees itself only; admins and auditors see every business of their tenant."""
    if caller.kind == BUSINESS and str(caller.subject_id) != business_id:
        raise Forbidden("a business can only read itself")


@router.post("", status_code=201, response_model=BusinessOut)
def create_business(
    body: BusinessCreate, request: Request, session: DbSession, caller: AdminAuth
) -> BusinessOut:
    """Create a business; without `signerAddress` the platform holds its minter key (encrypted)."""
    business = service.create_business(session, request.app.state.runtime.keystore, caller.tenant, body)
    return _out(business)


@router.get("", response_model=Page[BusinessOut])
def list_businesses(
    session: DbSession,
    caller: Annotated[Principal, Depends(Auth(ADMIN, AUDITOR))],
    paging: Annotated[Paging, Depends()],
    status: BusinessStatus | None = None,
) -> Page[BusinessOut]:
    query = scoped(Business, caller.tenant).order_by(Business.created_at, Business.id)
    if status is not None:
        query = query.where(Business.status == status)
    rows, meta = paging.apply(session, query)
    return Page(data=[_out(b) for b in rows], meta=meta)


@router.get("/me", response_model=BusinessOut)
def my_business(session: DbSession, caller: BusinessAuth) -> BusinessOut:
    return _out(service.get_business(session, caller.tenant, str(caller.subject_id)))


@router.get("/{business_id}", response_model=BusinessOut, responses=error_responses(404))
def get_business(business_id: str, session: DbSession, caller: Reader) -> BusinessOut:
    _visible(caller, business_id)
    return _out(service.get_business(session, caller.tenant, business_id))


@router.patch("/{business_id}", response_model=BusinessOut, responses=error_responses(404))
def update_business(
    business_id: str, body: BusinessUpdate, session: DbSession, caller: AdminAuth
) -> BusinessOut:
    return _out(service.update_business(session, caller.tenant, business_id, body))


@router.post(
    "/{business_id}/api-keys", status_code=201, response_model=ApiKeyCreated, responses=error_responses(404)
)
def create_api_key(
    business_id: str, body: ApiKeyCreate, session: DbSession, caller: AdminAuth
) -> ApiKeyCreated:
    """Issue a secret key (`sk_test_…`/`sk_live_…`): shown once, stored hashed."""
    business = service.get_business(session, caller.tenant, business_id)
    key, secret = service.create_api_key(session, caller.tenant, business, body)
    return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=secret)


@router.get("/{business_id}/api-keys", response_model=Page[ApiKeyOut], responses=error_responses(404))
def list_api_keys(
    business_id: str, session: DbSession, caller: Reader, paging: Annotated[Paging, Depends()]
) -> Page[ApiKeyOut]:
    _visible(caller, business_id)
    business = service.get_business(session, caller.tenant, business_id)
    query = scoped(ApiKey, caller.tenant, environment=True).where(ApiKey.business_id == business.id)
    rows, meta = paging.apply(session, query.order_by(ApiKey.created_at, ApiKey.id))
    return Page(data=[ApiKeyOut.model_validate(k) for k in rows], meta=meta)


@router.delete(
    "/{business_id}/api-keys/{key_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(404),
)
def revoke_api_key(business_id: str, key_id: str, session: DbSession, caller: AdminAuth) -> Response:
    business = service.get_business(session, caller.tenant, business_id)
    service.revoke_api_key(session, caller.tenant, business, key_id)
    return Response(status_code=204)
