from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from backend.auth.principal import AdminAuth
from backend.kit.api import Page, Paging, error_responses
from backend.kit.session import DbSession
from backend.webhooks import service
from backend.webhooks.schemas import DeliveryOut, WebhookCreate, WebhookCreated, WebhookOut

# Admin only, as SPEC §5 has it: receiver URLs are the tenant's integration details and deliveries
# carry its data; auditors prove the ledger from the chain and the mirror, not from webhooks.
router = APIRouter(
    prefix="/v1/webhooks", tags=["webhooks"], responses=error_responses(400, 401, 403, 422, 429)
)


@router.post("", status_code=201, response_model=WebhookCreated, responses=error_responses(409))
def create_webhook(
    request: Request, body: WebhookCreate, session: DbSession, caller: AdminAuth
) -> WebhookCreated:
    """Subscribe a receiver to event types; the answer shows the signing secret, this once only."""
    return service.create_webhook(session, request.app.state.runtime.keystore, caller.tenant, body)


@router.get("", response_model=Page[WebhookOut])
def list_webhooks(
    session: DbSession, caller: AdminAuth, paging: Annotated[Paging, Depends()]
) -> Page[WebhookOut]:
    rows, meta = paging.apply(session, service.listed(caller.tenant))
    return Page(data=[WebhookOut.model_validate(row) for row in rows], meta=meta)


@router.delete("/{webhook_id}", status_code=204, responses=error_responses(404))
def delete_webhook(webhook_id: str, session: DbSession, caller: AdminAuth) -> Response:
    service.delete_webhook(session, caller.tenant, webhook_id)
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=Page[DeliveryOut], responses=error_responses(404))
def list_deliveries(
    webhook_id: str, session: DbSession, caller: AdminAuth, paging: Annotated[Paging, Depends()]
) -> Page[DeliveryOut]:
    """The subscription's deliveries, newest first: attempts, status codes, next attempt, last error."""
    rows, meta = paging.apply(session, service.deliveries(session, caller.tenant, webhook_id))
    return Page(data=service.described(session, rows), meta=meta)


@router.post(
    "/{webhook_id}/test", status_code=202, response_model=DeliveryOut, responses=error_responses(404)
)
def test_webhook(webhook_id: str, session: DbSession, caller: AdminAuth) -> DeliveryOut:
    """Send a signed `webhook.test` event to this receiver now; follow it in the delivery log."""
    return service.send_test(session, caller.tenant, webhook_id)
