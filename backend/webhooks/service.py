"""Webhook subscriptions and `emit`, which the relay (and later other domains) call inside their own
unit of work: the event, one delivery per matching subscription and its outbox job are written in
the caller's transaction, so an event is delivered if and only if its cause committed."""

import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from backend.auth.principal import TenantScope
from backend.kit import outbox
from backend.kit.errors import Conflict, PersError
from backend.kit.keystore import Keystore
from backend.kit.scope import get_scoped, scoped
from backend.tenants.models import TenantEnvironment
from backend.webhooks import receivers
from backend.webhooks.models import Webhook, WebhookDelivery, WebhookEvent
from backend.webhooks.schemas import (
    EVENT_TYPES,
    TEST_EVENT,
    DeliveryOut,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
)

DELIVER_JOB = "webhooks.deliver"
SECRET_PREFIX = "whsec_"
MAX_WEBHOOKS = 16  # per environment: each event fans out to every matching subscription


def secret_context(webhook_id: uuid.UUID) -> str:
    return f"webhook:{webhook_id}:secret"


def create_webhook(
    session: Session, keystore: Keystore, scope: TenantScope, data: WebhookCreate
) -> WebhookCreated:
    unknown = sorted(set(data.event_types) - set(EVENT_TYPES))
    if unknown:
        raise PersError(
            f"unknown event type(s): {', '.join(unknown)}",
            code="unknown_event_type",
            status=422,
            known=EVENT_TYPES,
        )
    if (session.scalar(select(func.count()).select_from(listed(scope).subquery())) or 0) >= MAX_WEBHOOKS:
        raise Conflict(f"at most {MAX_WEBHOOKS} webhooks per environment", code="webhook_limit_reached")
    if scope.environment == "live":
        receivers.check(data.url, "live")  # https, resolving to public addresses only
    else:
        receivers.parse(data.url, scope.environment)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    webhook_id = uuid.uuid4()
    webhook = Webhook(
        id=webhook_id,
        tenant_id=scope.tenant_id,
        environment=scope.environment,
        url=data.url,
        event_types=sorted(set(data.event_types)),
        description=data.description,
        secret_sealed=keystore.seal(secret.encode(), secret_context(webhook_id)),
    )
    session.add(webhook)
    session.flush()
    return WebhookCreated.model_validate(WebhookOut.model_validate(webhook).model_dump() | {"secret": secret})


def get_webhook(session: Session, scope: TenantScope, webhook_id: str) -> Webhook:
    return get_scoped(session, Webhook, scope, webhook_id, environment=True)


def _subscriptions(session: Session, scope: TenantScope) -> list[Webhook]:
    """The scope's subscriptions, read once per transaction: the relay emits for every operation."""
    cache: dict[TenantScope, list[Webhook]] = session.info.setdefault("pers_webhooks", {})
    if scope not in cache:
        cache[scope] = list(session.scalars(listed(scope)))
    return cache[scope]


def listed(scope: TenantScope) -> Select[Webhook]:
    return scoped(Webhook, scope, environment=True).order_by(Webhook.created_at, Webhook.id)


def delete_webhook(session: Session, scope: TenantScope, webhook_id: str) -> None:
    """Its pending deliveries go with it: their jobs find nothing left to send."""
    session.delete(get_webhook(session, scope, webhook_id))
    session.flush()


def deliveries(session: Session, scope: TenantScope, webhook_id: str) -> Select[WebhookDelivery]:
    webhook = get_webhook(session, scope, webhook_id)
    return (
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook.id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
    )


def described(session: Session, rows: Sequence[WebhookDelivery]) -> list[DeliveryOut]:
    """Deliveries as the log shows them, with their event's type."""
    ids = {row.event_id for row in rows}
    query = select(WebhookEvent.id, WebhookEvent.type).where(WebhookEvent.id.in_(ids))
    types = {event_id: event_type for event_id, event_type in session.execute(query)}
    return [DeliveryOut.of(row, types[row.event_id]) for row in rows]


def send_test(session: Session, scope: TenantScope, webhook_id: str) -> DeliveryOut:
    """A `webhook.test` event delivered to this subscription alone, signed and retried like any other."""
    webhook = get_webhook(session, scope, webhook_id)
    event = _event(session, scope, TEST_EVENT, {"webhookId": str(webhook.id)})
    delivery = _deliver(session, webhook, event)
    session.flush()
    return DeliveryOut.of(delivery, event.type)


def subscribed(session: Session, scope: TenantScope, event_type: str) -> bool:
    """Whether any subscription of the scope wants `event_type` (the relay builds events only then)."""
    return any(event_type in h.event_types for h in _subscriptions(session, scope))


def emit(session: Session, scope: TenantScope, event_type: str, data: dict[str, Any]) -> None:
    """Queues `event_type` for every subscription of the scope that wants it, in the caller's transaction.
    Nothing is written when none does (the relay emits at every status change of every operation)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"not an event type the platform emits: {event_type}")
    hooks = [h for h in _subscriptions(session, scope) if event_type in h.event_types]
    if not hooks:
        return
    event = _event(session, scope, event_type, data)
    for webhook in hooks:
        _deliver(session, webhook, event)
    session.flush()


def emit_network(session: Session, network: str, event_type: str, data: dict[str, Any]) -> None:
    """A platform-wide event (`relayer.low_balance`): to every tenant environment on that network."""
    envs = session.scalars(select(TenantEnvironment).where(TenantEnvironment.network == network))
    for env in envs:
        emit(session, TenantScope(env.tenant_id, env.environment), event_type, {"network": network, **data})


def _event(session: Session, scope: TenantScope, event_type: str, data: dict[str, Any]) -> WebhookEvent:
    event = WebhookEvent(
        id=uuid.uuid4(), tenant_id=scope.tenant_id, environment=scope.environment, type=event_type, data=data
    )
    session.add(event)
    session.flush()  # created_at is set: the body every attempt sends is the same
    return event


def _deliver(session: Session, webhook: Webhook, event: WebhookEvent) -> WebhookDelivery:
    delivery_id = uuid.uuid4()
    job = outbox.enqueue(session, DELIVER_JOB, delivery_id=str(delivery_id))
    delivery = WebhookDelivery(
        id=delivery_id,
        webhook_id=webhook.id,
        event_id=event.id,
        job_id=job.id,
        status="pending",
        attempts=0,
        history=[],
        next_attempt_at=event.created_at,
    )
    session.add(delivery)
    return delivery
