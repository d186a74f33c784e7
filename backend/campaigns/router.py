"""/v1/campaigns (with its tags, token units, triggers and claims), /v1/trigger-sources, /v1/events."""

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import ValidationError

from backend.auth.principal import ADMIN, AUDITOR, BUSINESS, PROJECT, USER, AdminAuth, Auth, Principal
from backend.campaigns import claims, engagements, events, service, triggers
from backend.campaigns.models import Campaign
from backend.campaigns.schemas import (
    MAX_EVENT_BATCH,
    CampaignCreate,
    CampaignOut,
    CampaignUpdate,
    ClaimCreate,
    ClaimOut,
    ClaimStatus,
    EngagementCreate,
    EngagementOut,
    EngagementUpdate,
    EventBatch,
    EventBatchItem,
    EventBatchOut,
    EventCreate,
    EventOut,
    QrPayload,
    TagsPut,
    TokenUnitCreate,
    TokenUnitOut,
    TriggerCreate,
    TriggerOut,
    TriggerSourceCreate,
    TriggerSourceOut,
)
from backend.kit.api import Page, Paging, app_settings, error_responses
from backend.kit.errors import PersError
from backend.kit.keystore import Keystore
from backend.kit.session import DbSession

ERRORS = error_responses(400, 401, 403, 422, 429)
router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"], responses=ERRORS)
sources_router = APIRouter(prefix="/v1/trigger-sources", tags=["campaigns"], responses=ERRORS)
engagements_router = APIRouter(prefix="/v1/campaign-engagements", tags=["campaigns"], responses=ERRORS)
events_router = APIRouter(prefix="/v1/events", tags=["events"], responses=ERRORS)

# Active campaigns are public with the project key; staff see every status.
Reader = Annotated[Principal, Depends(Auth(PROJECT, ADMIN, AUDITOR, BUSINESS, USER))]
Manager = Annotated[Principal, Depends(Auth(ADMIN, BUSINESS))]  # a business: its own campaigns
Staff = Annotated[Principal, Depends(Auth(ADMIN, AUDITOR, BUSINESS))]
Claimer = Annotated[Principal, Depends(Auth(ADMIN, BUSINESS, USER, scope="transactions:write"))]
ClaimReader = Annotated[Principal, Depends(Auth(ADMIN, AUDITOR, BUSINESS, USER))]
UserAuth = Annotated[Principal, Depends(Auth(USER))]
BusinessAuth = Annotated[Principal, Depends(Auth(BUSINESS))]
Reporter = Annotated[Principal, Depends(Auth(ADMIN, BUSINESS, scope="events:write"))]


def _keystore(request: Request) -> Keystore:
    keystore: Keystore = request.app.state.runtime.keystore
    return keystore


def _one(session: DbSession, campaign: Campaign) -> CampaignOut:
    return service.described(session, [campaign])[0]


# Fixed paths first: `/tags` and `/claims` are not campaign ids.


@router.get("/tags", response_model=list[str])
def list_tags(session: DbSession, caller: Staff) -> list[str]:
    """Every tag in use on the environment's campaigns."""
    return service.all_tags(session, caller)


@router.post("/claims", status_code=202, response_model=ClaimOut, responses=error_responses(404, 409))
def create_claim(body: ClaimCreate, request: Request, session: DbSession, caller: Claimer) -> ClaimOut:
    """Claim a campaign (through its manual trigger) or a QR source (with its payload): every rule is
    checked and the claim and its mints are queued together; the claim then follows its mints."""
    claim = claims.create_claim(session, app_settings(request), _keystore(request), caller, body)
    return ClaimOut.model_validate(claim)


@router.get("/claims/me", response_model=Page[ClaimOut])
def my_claims(session: DbSession, caller: UserAuth, paging: Annotated[Paging, Depends()]) -> Page[ClaimOut]:
    rows, meta = paging.apply(session, claims.listed(caller))
    return Page(data=[ClaimOut.model_validate(r) for r in rows], meta=meta)


@router.get("/claims", response_model=Page[ClaimOut])
def list_claims(
    session: DbSession,
    caller: Staff,
    paging: Annotated[Paging, Depends()],
    campaign_id: Annotated[uuid.UUID | None, Query(alias="campaignId")] = None,
    user_id: Annotated[uuid.UUID | None, Query(alias="userId")] = None,
    business_id: Annotated[uuid.UUID | None, Query(alias="businessId")] = None,
    status: ClaimStatus | None = None,
) -> Page[ClaimOut]:
    query = claims.listed(
        caller, campaign_id=campaign_id, user_id=user_id, business_id=business_id, status=status
    )
    rows, meta = paging.apply(session, query)
    return Page(data=[ClaimOut.model_validate(r) for r in rows], meta=meta)


@router.get("/claims/{claim_id}", response_model=ClaimOut, responses=error_responses(404))
def get_claim(claim_id: str, session: DbSession, caller: ClaimReader) -> ClaimOut:
    return ClaimOut.model_validate(claims.get_claim(session, caller, claim_id))


@router.post("", status_code=201, response_model=CampaignOut, responses=error_responses(404))
def create_campaign(body: CampaignCreate, session: DbSession, caller: Manager) -> CampaignOut:
    """A draft campaign owned by a business (whose signer pays its claims)."""
    return _one(session, service.create_campaign(session, caller, body))


@router.get("", response_model=Page[CampaignOut])
def list_campaigns(
    session: DbSession,
    caller: Reader,
    paging: Annotated[Paging, Depends()],
    active: bool | None = None,
    tag: str | None = None,
    business_id: Annotated[uuid.UUID | None, Query(alias="businessId")] = None,
    sort_by: Annotated[service.SortBy, Query(alias="sortBy")] = "createdAt",
    sort_order: Annotated[Literal["asc", "desc"], Query(alias="sortOrder")] = "desc",
) -> Page[CampaignOut]:
    """The environment's campaigns; with the project key or a user's session, the active ones only."""
    query = service.listed(
        caller, active=active, tag=tag, business_id=business_id, sort_by=sort_by, sort_order=sort_order
    )
    rows, meta = paging.apply(session, query)
    return Page(data=service.described(session, rows), meta=meta)


@router.get("/{campaign_id}", response_model=CampaignOut, responses=error_responses(404))
def get_campaign(campaign_id: str, session: DbSession, caller: Reader) -> CampaignOut:
    return _one(session, service.get_campaign(session, caller, campaign_id))


@router.patch("/{campaign_id}", response_model=CampaignOut, responses=error_responses(404))
def update_campaign(
    campaign_id: str, body: CampaignUpdate, session: DbSession, caller: Manager
) -> CampaignOut:
    return _one(session, service.update_campaign(session, caller, campaign_id, body))


@router.delete("/{campaign_id}", status_code=204, responses=error_responses(404, 409))
def delete_campaign(campaign_id: str, session: DbSession, caller: Manager) -> Response:
    service.delete_campaign(session, caller, campaign_id)
    return Response(status_code=204)


@router.post("/{campaign_id}/activate", response_model=CampaignOut, responses=error_responses(404, 409))
def activate(campaign_id: str, session: DbSession, caller: Manager) -> CampaignOut:
    return _one(session, service.transition(session, caller, campaign_id, "activate"))


@router.post("/{campaign_id}/pause", response_model=CampaignOut, responses=error_responses(404, 409))
def pause(campaign_id: str, session: DbSession, caller: Manager) -> CampaignOut:
    return _one(session, service.transition(session, caller, campaign_id, "pause"))


@router.post("/{campaign_id}/end", response_model=CampaignOut, responses=error_responses(404, 409))
def end(campaign_id: str, session: DbSession, caller: Manager) -> CampaignOut:
    return _one(session, service.transition(session, caller, campaign_id, "end"))


@router.put("/{campaign_id}/tags", response_model=CampaignOut, responses=error_responses(404))
def put_tags(campaign_id: str, body: TagsPut, session: DbSession, caller: AdminAuth) -> CampaignOut:
    return _one(session, service.put_tags(session, caller, campaign_id, body.tags))


@router.post(
    "/{campaign_id}/tokens", status_code=201, response_model=TokenUnitOut, responses=error_responses(404, 409)
)
def add_token_unit(
    campaign_id: str, body: TokenUnitCreate, session: DbSession, caller: AdminAuth
) -> TokenUnitOut:
    """What each claim pays in a token (`amount`) and the campaign's budget of it (`maxAmount`)."""
    return TokenUnitOut.model_validate(service.add_token_unit(session, caller, campaign_id, body))


@router.delete("/{campaign_id}/tokens/{unit_id}", status_code=204, responses=error_responses(404, 409))
def remove_token_unit(campaign_id: str, unit_id: str, session: DbSession, caller: AdminAuth) -> Response:
    service.remove_token_unit(session, caller, campaign_id, unit_id)
    return Response(status_code=204)


@router.post(
    "/{campaign_id}/triggers", status_code=201, response_model=TriggerOut, responses=error_responses(404)
)
def create_trigger(campaign_id: str, body: TriggerCreate, session: DbSession, caller: Manager) -> TriggerOut:
    return TriggerOut.model_validate(triggers.create_trigger(session, caller, campaign_id, body))


@router.get("/{campaign_id}/triggers", response_model=Page[TriggerOut], responses=error_responses(404))
def list_triggers(
    campaign_id: str, session: DbSession, caller: Manager, paging: Annotated[Paging, Depends()]
) -> Page[TriggerOut]:
    rows, meta = paging.apply(session, triggers.campaign_triggers(session, caller, campaign_id))
    return Page(data=[TriggerOut.model_validate(r) for r in rows], meta=meta)


@router.post(
    "/{campaign_id}/engagements",
    status_code=201,
    response_model=list[EngagementOut],
    responses=error_responses(404, 409),
)
def invite_partners(
    campaign_id: str, body: EngagementCreate, session: DbSession, caller: Manager
) -> list[EngagementOut]:
    """Invite partner businesses (`invited` until each accepts); claims at a partner count against its
    caps and are paid by the owner."""
    invited = engagements.invite(session, caller, campaign_id, body)
    return [EngagementOut.model_validate(e) for e in invited]


@router.get("/{campaign_id}/engagements", response_model=Page[EngagementOut], responses=error_responses(404))
def list_engagements(
    campaign_id: str, session: DbSession, caller: Manager, paging: Annotated[Paging, Depends()]
) -> Page[EngagementOut]:
    """All of them for the admin and the owner; its own for an invited business (its share so far)."""
    rows, meta = paging.apply(session, engagements.campaign_engagements(session, caller, campaign_id))
    return Page(data=[EngagementOut.model_validate(r) for r in rows], meta=meta)


@engagements_router.put("/{engagement_id}", response_model=EngagementOut, responses=error_responses(404, 409))
def respond(
    engagement_id: str, body: EngagementUpdate, session: DbSession, caller: BusinessAuth
) -> EngagementOut:
    """The invited business accepts or rejects the invitation."""
    return EngagementOut.model_validate(engagements.respond(session, caller, engagement_id, body.status))


@sources_router.post("", status_code=201, response_model=TriggerSourceOut, responses=error_responses(404))
def create_source(
    body: TriggerSourceCreate, request: Request, session: DbSession, caller: Manager
) -> TriggerSourceOut:
    """A QR code source of a `qr_code` trigger, with a secret of its own that signs its payloads."""
    return TriggerSourceOut.model_validate(triggers.create_source(session, _keystore(request), caller, body))


@sources_router.get("", response_model=Page[TriggerSourceOut])
def list_sources(
    session: DbSession, caller: Manager, paging: Annotated[Paging, Depends()]
) -> Page[TriggerSourceOut]:
    rows, meta = paging.apply(session, triggers.listed_sources(caller))
    return Page(data=[TriggerSourceOut.model_validate(r) for r in rows], meta=meta)


@sources_router.post("/{source_id}/payload", response_model=QrPayload, responses=error_responses(404))
def issue_payload(source_id: str, request: Request, session: DbSession, caller: Manager) -> QrPayload:
    """A signed payload for the source's QR code, valid for the source's `payloadSeconds`."""
    return triggers.issue_payload(session, _keystore(request), caller, source_id)


@events_router.post("", status_code=202, response_model=EventOut, responses=error_responses(404, 409))
def report_event(body: EventCreate, request: Request, session: DbSession, caller: Reporter) -> EventOut:
    """A user's action: fires the matching active `api_event` triggers; a repeated `id` gets the first
    answer."""
    return events.process(session, app_settings(request), caller, body)


@events_router.post("/batch", status_code=202, response_model=EventBatchOut)
def report_events(body: EventBatch, request: Request, session: DbSession, caller: Reporter) -> EventBatchOut:
    """Up to 1,000 events, each processed or refused on its own (`status` per item)."""
    if len(body.events) > MAX_EVENT_BATCH:
        raise PersError(f"a batch holds at most {MAX_EVENT_BATCH} events", code="batch_too_large", status=422)
    settings, items = app_settings(request), []
    for index, raw in enumerate(body.events):
        try:
            with session.begin_nested():
                event = events.process(session, settings, caller, EventCreate.model_validate(raw))
            items.append(EventBatchItem(index=index, status=202, event=event))
        except ValidationError as exc:
            items.append(EventBatchItem(index=index, status=422, event=None, error=_invalid(exc)))
        except PersError as exc:
            error = {"code": exc.code, "message": exc.message, "details": exc.details}
            items.append(EventBatchItem(index=index, status=exc.status, event=None, error=error))
    accepted = sum(1 for item in items if item.status == 202)
    return EventBatchOut(accepted=accepted, refused=len(items) - accepted, data=items)


def _invalid(exc: ValidationError) -> dict[str, Any]:
    from backend.app import validation_code  # the app's handler names the codes (imported late: no cycle)

    first = exc.errors()[0]
    return {
        "code": validation_code(dict(first)),
        "message": first["msg"],
        "details": {"loc": list(first["loc"])},
    }
