"""The one door from the relay to webhooks: every status change of an operation passes here."""

import threading
from typing import Any

import structlog
from sqlalchemy.orm import Session

from backend.auth.principal import TenantScope

log = structlog.get_logger()
# Set when this process queues an operation: a pump in the same process (`pers up`) looks at once.
queued = threading.Event()


def notify(session: Session, scope: TenantScope, event_type: str, data: dict[str, Any]) -> None:
    """Called inside the unit of work that changed the operation (the lead points this at
    `backend.webhooks.service.emit` when the webhooks branch is merged)."""
    log.debug("relay.event", type=event_type, tenant=str(scope.tenant_id), id=data.get("id"))
