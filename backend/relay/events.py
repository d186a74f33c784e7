"""The one door from the relay to webhooks (every status change of an operation passes here), and
the pumps' wake-up when operations are queued."""

import threading
import time
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from backend.analytics import rollups
from backend.auth.principal import TenantScope
from backend.campaigns import progress as claims
from backend.relay.models import Operation
from backend.relay.schemas import record
from backend.tiers import progress as tiers
from backend.webhooks import service as webhooks

log = structlog.get_logger()
# Set when operations are queued, by this process (`pers up`) or, through Postgres NOTIFY, another one.
queued = threading.Event()
CHANNEL = "pers_relay_queued"
_NOTIFY = text(f"NOTIFY {CHANNEL}")
NOTIFY_EVERY = 0.15  # seconds: the pump's gathering time (`pump.GATHER`)
_notified = float("-inf")


def notify_changed(session: Session, ops: Sequence[Any], event_type: str) -> None:
    """Called inside the unit of work that changed the operations (rows with `id`, `tenant_id` and
    `environment`): the analytics rollups count the settled ones, the claims the operations pay and
    the statuses they grant or revoke follow them, and the tenants' webhooks get the event once it
    commits. Only the operations of a tenant that subscribes to the event are read back whole."""
    by_scope: dict[tuple[Any, str], list[Any]] = {}  # plain keys: a thousand scopes cost more to build
    for op in ops:
        by_scope.setdefault((op.tenant_id, op.environment), []).append(op.id)
    op_ids = [op.id for op in ops]
    rollups.operations_changed(session, op_ids, event_type)
    claims.operations_changed(session, op_ids, event_type)
    tiers.operations_changed(session, op_ids, event_type)
    for (tenant_id, environment), ids in by_scope.items():
        scope = TenantScope(tenant_id, environment)
        if not webhooks.subscribed(session, scope, event_type):
            continue
        query = select(Operation).where(Operation.id.in_(ids)).order_by(Operation.created_at, Operation.id)
        for op in session.scalars(query.execution_options(populate_existing=True)):
            webhooks.emit(session, scope, event_type, record(op))


def wake(session: Session) -> None:
    """Operations were queued in `session`'s transaction: this process's pump looks at once, the
    other processes' once it commits (Postgres delivers a NOTIFY at commit, and only then). A process
    notifies at most once per `NOTIFY_EVERY`: under load the pumps are busy or gathering for that long
    anyway, and each NOTIFY is a round trip and a wake-up of every listener; an operation whose
    notification was spared (or rolled back with another request) is found by the pumps' poll."""
    global _notified
    queued.set()
    now = time.monotonic()
    if session.get_bind().dialect.name == "postgresql" and now - _notified >= NOTIFY_EVERY:
        _notified = now
        session.execute(_NOTIFY)


def listen(engine: Engine, stop: threading.Event) -> None:
    """Sets `queued` at every NOTIFY of another process until `stop` (Postgres only; the pump's slow
    poll is the safety net for a notification lost while reconnecting)."""
    if engine.dialect.name != "postgresql":
        return
    while not stop.is_set():
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql(f"LISTEN {CHANNEL}")
                driver = connection.connection.driver_connection
                assert driver is not None
                while not stop.is_set():
                    # One call a second, each notification as it comes (one call per notification
                    # cost 4% of the worker while single requests each sent one).
                    for _ in driver.notifies(timeout=1):
                        queued.set()
        except Exception:  # the database restarted: listen again
            log.exception("relay.listen_failed")
            stop.wait(2)
