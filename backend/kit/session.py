"""The request's database session: committed by this dependency before the response is sent
(rolled back on error), then the outbox jobs of that transaction are dispatched.

Async, so opening the session (no I/O until its first statement) costs no trip through the thread
pool; the commit and the dispatch (database and broker I/O) take one.

At most `POOL_CAPACITY` requests hold a session at once; the others wait here, on the event loop.
Otherwise, with more requests than worker threads, every thread could be blocked waiting for a pooled
connection (or for a row lock) while the requests holding the connections (or the lock) wait for a
thread to run their next step or their commit: nothing moves until the pool's 30 s timeout (a 500)."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from backend.kit import outbox
from backend.kit.db import POOL_CAPACITY


async def _session(request: Request) -> AsyncIterator[Session]:
    runtime = request.app.state.runtime
    async with _gate(request):
        session = runtime.sessions()
        try:
            yield session
        except BaseException:
            await run_in_threadpool(_end, session, runtime.dispatch, commit=False)
            raise
        await run_in_threadpool(_end, session, runtime.dispatch, commit=True)


def _gate(request: Request) -> asyncio.Semaphore:
    state = request.app.state
    gate: asyncio.Semaphore | None = getattr(state, "db_gate", None)
    if gate is None:  # made on the event loop's thread: no other request runs between these lines
        gate = state.db_gate = asyncio.Semaphore(POOL_CAPACITY)
    return gate


def _end(session: Session, dispatch: Callable[[uuid.UUID], None], *, commit: bool) -> None:
    with session:  # closed, its connection back in the pool
        if not commit:
            session.rollback()
            return
        try:
            session.commit()
        except BaseException:
            session.rollback()
            raise
        jobs = outbox.on_commit(session)
    for job_id in jobs:
        dispatch(job_id)


# scope="function": the commit happens before the response goes out, so a failed commit is a 5xx
# rather than a 2xx for data that was never stored.
DbSession = Annotated[Session, Depends(_session, scope="function")]
