"""The request's database session: committed by this dependency before the response is sent
(rolled back on error), then the outbox jobs of that transaction are dispatched."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from backend.kit import outbox


def _session(request: Request) -> Iterator[Session]:
    runtime = request.app.state.runtime
    with runtime.sessions() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        for job_id in outbox.on_commit(session):
            runtime.dispatch(job_id)


# scope="function": the commit happens before the response goes out, so a failed commit is a 5xx
# rather than a 2xx for data that was never stored.
DbSession = Annotated[Session, Depends(_session, scope="function")]
