"""`then_commit` runs a route's work on the event loop's thread only while no other request of the
process holds a session across an await (the work could wait on that request's locks, which it would
never release with the loop blocked); otherwise in the thread pool."""

import asyncio
import threading
from contextlib import suppress
from types import SimpleNamespace
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker
from starlette.datastructures import State

from backend.kit.session import _held, _session, then_commit


def _request() -> Any:
    runtime = SimpleNamespace(sessions=sessionmaker(create_engine("sqlite://")), dispatch=lambda job: None)
    return SimpleNamespace(app=SimpleNamespace(state=State({"runtime": runtime})))


def _work(session: Session) -> int:
    assert session.execute(text("SELECT 1")).scalar_one() == 1
    return threading.get_ident()


def test_the_work_runs_on_the_loops_thread_when_no_other_request_holds_a_session() -> None:
    request = _request()

    async def main() -> tuple[int, int]:
        return await then_commit(request, _work), threading.get_ident()

    worked_on, loop_thread = asyncio.run(main())
    assert worked_on == loop_thread


def test_the_work_goes_to_the_pool_while_another_request_holds_a_session() -> None:
    request = _request()

    async def main() -> tuple[int, int]:
        async with _held(request.app.state):
            return await then_commit(request, _work), threading.get_ident()

    worked_on, loop_thread = asyncio.run(main())
    assert worked_on != loop_thread
    assert request.app.state.sessions_held == 0


def test_the_session_dependency_counts_itself_while_open() -> None:
    request = _request()

    async def main() -> list[int]:
        seen = [getattr(request.app.state, "sessions_held", 0)]
        dependency = _session(request)
        await anext(dependency)
        seen.append(request.app.state.sessions_held)
        with suppress(StopAsyncIteration):
            await anext(dependency)  # the request's end: committed, closed
        seen.append(request.app.state.sessions_held)
        return seen

    assert asyncio.run(main()) == [0, 1, 0]
