"""Background jobs: named, idempotent handlers run from outbox rows.

A handler gets the process runtime and the job's payload and opens its own short units of work:
it never holds a database transaction open while it waits for the chain. A handler that cannot
proceed yet raises `RetryLater`; the job stays pending and runs again."""

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from backend.kit.db import unit_of_work, utcnow
from backend.kit.outbox import OutboxMessage

if TYPE_CHECKING:
    from backend.runtime import Runtime

Handler = Callable[..., None]
_handlers: dict[str, Handler] = {}
log = structlog.get_logger()


class RetryLater(Exception):
    def __init__(self, reason: str, countdown: float = 2.0) -> None:
        super().__init__(reason)
        self.countdown = countdown


def job(name: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        _handlers[name] = handler
        return handler

    return register


def run(runtime: "Runtime", job_id: uuid.UUID) -> None:
    """Runs one outbox job unless it already completed; marks it completed when the handler returns."""
    with unit_of_work(runtime.sessions) as session:
        message = session.get(OutboxMessage, job_id)
        if message is None or message.completed_at is not None:
            return
        message.dispatched_at = utcnow()  # taken: the sweeper leaves it alone for a while
        task, payload = message.task, dict(message.payload)
    log.info("job.start", task=task, job_id=str(job_id))
    try:
        _handlers[task](runtime, **payload)
    except RetryLater:
        raise
    except Exception as exc:
        with unit_of_work(runtime.sessions) as session:
            failed = session.get(OutboxMessage, job_id)
            if failed is not None:  # waiting (RetryLater) is not a failure; this is
                failed.attempts += 1
                failed.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        log.exception("job.failed", task=task, job_id=str(job_id))
        raise
    with unit_of_work(runtime.sessions) as session:
        done = session.get(OutboxMessage, job_id)
        if done is not None:
            done.completed_at = utcnow()
    log.info("job.done", task=task, job_id=str(job_id))
