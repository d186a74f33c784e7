"""Background jobs: named, idempotent handlers run from outbox rows.

A handler gets the process runtime and the job's payload and opens its own short units of work:
it never holds a database transaction open while it waits for the chain. A handler that cannot
proceed yet raises `RetryLater`; the job stays pending and runs again.

The kit knows nothing above it: it takes any runtime with `sessions`, and the worker registers how a
job's message is sent (`use_dispatcher`)."""

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import structlog
from sqlalchemy.orm import Session, sessionmaker

from backend.kit.db import unit_of_work, utcnow
from backend.kit.outbox import OutboxMessage, on_commit


class JobRuntime(Protocol):
    """What `run` needs of the process runtime (`backend.runtime.Runtime` is one)."""

    @property
    def sessions(self) -> sessionmaker[Session]: ...


Handler = Callable[..., None]
Dispatcher = Callable[[uuid.UUID], None]
_handlers: dict[str, Handler] = {}
_dispatcher: list[Dispatcher] = []
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


def use_dispatcher(dispatcher: Dispatcher) -> None:
    """Sets how a committed job's message is sent (the worker module registers Celery's on import)."""
    _dispatcher[:] = [dispatcher]


def dispatch(job_id: uuid.UUID) -> None:
    if not _dispatcher:
        raise RuntimeError("no job dispatcher registered: import backend.worker first")
    _dispatcher[0](job_id)


@contextmanager
def committed(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A worker's unit of work whose outbox jobs are dispatched once it has committed (the API's
    request session does the same), so they need not wait for the sweeper."""
    with unit_of_work(factory) as session:
        yield session
    for job_id in on_commit(session):
        dispatch(job_id)


def run(runtime: JobRuntime, job_id: uuid.UUID) -> None:
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
