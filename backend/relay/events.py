"""The one door from the relay to webhooks: every status change of an operation passes here."""

import threading
from typing import Any

from sqlalchemy.orm import Session

from backend.auth.principal import TenantScope
from backend.webhooks import service as webhooks

# Set when this process queues an operation: a pump in the same process (`pers up`) looks at once.
queued = threading.Event()


def notify(session: Session, scope: TenantScope, event_type: str, data: dict[str, Any]) -> None:
    """Called inside the unit of work that changed the operation: the tenant's webhooks get the event
    once that unit of work commits."""
    webhooks.emit(session, scope, event_type, data)
