"""The request's database session: committed by this dependency before the response is sent
(rolled back on error), then the outbox jobs of that transaction are dispatched.

Async, so opening the session (no I/O until its first statement) costs no trip through the thread
pool; the commit and the dispatch (database and broker I/O) take one."""

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from backend.kit import outbox


async def _session(request: Request) -> AsyncIterator[Session]:
    runtime = request.app.state.runtime
    session = runtime.sessions()
    try:
        yield session
    except BaseException:
        await run_in_threadpool(_end, session, runtime.dispatch, commit=False)
        raise
    await run_in_threadpool(_end, session, runtime.dispatch, commit=True)


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
