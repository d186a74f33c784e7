"""The request's database session: committed by this dependency before the response is sent
(rolled back on error), then the outbox jobs of that transaction are dispatched.

Async, so opening the session (no I/O until its first statement) costs no trip through the thread
pool; the commit and the dispatch (database and broker I/O) take one. A route that runs its work
`then_commit` takes one for the work and the commit together, or none (see there).

At most `POOL_SIZE` requests hold a session at once; the others wait here, on the event loop.
Otherwise, with more requests than worker threads, every thread could be blocked waiting for a pooled
connection (or for a row lock) while the requests holding the connections (or the lock) wait for a
thread to run their next step or their commit: nothing moves until the pool's 30 s timeout (a 500).
`POOL_SIZE`, not the pool's whole capacity: the pool keeps that many connections open, and closes
each overflow connection when it is returned, so requests beyond it would open (and Postgres fork)
a connection each; the overflow is left to what runs beside the requests (`/readyz`, the outbox)."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State

from backend.kit import outbox
from backend.kit.db import POOL_SIZE

T = TypeVar("T")
_ENDED = "pers_request_ended"  # in `session.info`: committed or rolled back, and closed


async def _session(request: Request) -> AsyncIterator[Session]:
    runtime = request.app.state.runtime
    async with _gate(request), _held(request.app.state):
        session = runtime.sessions()
        try:
            yield session
        except BaseException:
            if not session.info.get(_ENDED):
                await run_in_threadpool(_end, session, runtime.dispatch, commit=False)
            raise
        if not session.info.get(_ENDED):
            await run_in_threadpool(_end, session, runtime.dispatch, commit=True)


@asynccontextmanager
async def _held(state: State) -> AsyncIterator[None]:
    """Counts the requests of this process that hold a session across an await (`then_commit`'s
    check); only the event loop's thread counts, so no lock."""
    state.sessions_held = getattr(state, "sessions_held", 0) + 1
    try:
        yield
    finally:
        state.sessions_held -= 1


def _gate(request: Request) -> asyncio.Semaphore:
    state = request.app.state
    gate: asyncio.Semaphore | None = getattr(state, "db_gate", None)
    if gate is None:  # made on the event loop's thread: no other request runs between these lines
        gate = state.db_gate = asyncio.Semaphore(POOL_SIZE)
    return gate


async def then_commit(request: Request, work: Callable[[Session], T], session: Session | None = None) -> T:
    """`work(session)` (sync, with I/O) and then the commit and dispatch, or the rollback if it raises,
    in one trip through the thread pool instead of two, or on the event loop's thread when that is
    safe: waking a pool thread is a good part of a short request's CPU. What the dependency would do
    at the end of the request, done here. `session` is the request's `DbSession`; a route that takes
    none (solving the generator dependency is a good part too) gets one of its own here, through the
    same gate."""
    if session is None:
        async with _gate(request):
            return await then_commit(request, work, request.app.state.runtime.sessions())
    dispatch = request.app.state.runtime.dispatch

    def run() -> T:
        try:
            result = work(session)
        except BaseException:
            _end(session, dispatch, commit=False)
            raise
        _end(session, dispatch, commit=True)
        return result

    if not getattr(request.app.state, "sessions_held", 0):
        # On the event loop's own thread: the trip through the pool, and the handing of the GIL between
        # the pool's thread and the loop's around each database round trip, cost a fifth of a short
        # request's CPU. Safe only while no request of this process holds a transaction open across an
        # await: the work could wait on its locks, and it would never commit with the loop blocked.
        # The process serves one such request at a time: run more API processes than cores.
        return run()
    return await run_in_threadpool(run)


def _end(session: Session, dispatch: Callable[[uuid.UUID], None], *, commit: bool) -> None:
    session.info[_ENDED] = True
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
