"""Logs an operator can debug with: errors with their type, message and traceback; a line per request."""

import json
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from backend.app import create_app
from backend.kit import jobs
from backend.kit.db import Base, make_sessionmaker
from backend.kit.logging import configure
from backend.kit.outbox import OutboxMessage
from backend.runtime import current
from tests.platform import Platform, create_tenant


@pytest.fixture
def info_logs() -> Iterator[None]:
    saved = structlog.get_config()
    configure("info")
    yield
    structlog.configure(**saved)


def lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


@pytest.mark.usefixtures("info_logs")
def test_a_failed_job_logs_its_error_and_keeps_it_in_the_outbox(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/jobs.db")
    Base.metadata.create_all(engine, tables=[OutboxMessage.__table__])  # type: ignore[list-item]
    runtime = SimpleNamespace(sessions=make_sessionmaker(engine))

    @jobs.job("test.explodes")
    def explodes(_: object) -> None:
        raise ValueError("the node said no")

    job_id = uuid.uuid4()
    with runtime.sessions.begin() as session:
        session.add(OutboxMessage(id=job_id, task="test.explodes", payload={}))
    with pytest.raises(ValueError):
        jobs.run(runtime, job_id)  # type: ignore[arg-type]

    failed = next(e for e in lines(capsys.readouterr().err) if e["event"] == "job.failed")
    assert failed["error_type"] == "ValueError" and failed["error_message"] == "the node said no"
    assert "Traceback" in str(failed["traceback"]) and "raise ValueError" in str(failed["traceback"])
    assert "exc_info" not in failed
    with runtime.sessions() as session:
        row = session.get(OutboxMessage, job_id)
        assert row is not None and row.attempts == 1
        assert row.last_error == "ValueError: the node said no"


@pytest.mark.usefixtures("info_logs")
def test_an_unexpected_error_is_logged_with_its_traceback_and_answers_500(
    embedded_platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(current())

    def boom() -> None:
        raise RuntimeError("disk on fire")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/boom", headers={"X-Request-ID": "rid-boom"})
    assert answer.status_code == 500 and answer.json()["error"]["code"] == "internal_error"
    assert "disk on fire" not in answer.text
    events = lines(capsys.readouterr().err)
    unhandled = next(e for e in events if e["event"] == "http.unhandled")
    assert unhandled["error_type"] == "RuntimeError" and unhandled["error_message"] == "disk on fire"
    assert "raise RuntimeError" in str(unhandled["traceback"]) and unhandled["request_id"] == "rid-boom"
    request = next(e for e in events if e["event"] == "http.request")
    assert (request["path"], request["status"], request["level"]) == ("/boom", 500, "info")


@pytest.mark.usefixtures("info_logs")
def test_every_request_is_logged_at_info_with_its_route_and_tenant(
    embedded_platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = create_tenant(embedded_platform)
    capsys.readouterr()
    missing = f"/v1/tokens/{uuid.uuid4()}"
    answer = embedded_platform.client.get(missing, headers=tenant.with_project({"X-Request-ID": "rid-1"}))
    assert answer.status_code == 404
    request = next(e for e in lines(capsys.readouterr().err) if e["event"] == "http.request")
    assert request["level"] == "info" and request["request_id"] == "rid-1"
    assert (request["method"], request["path"], request["status"]) == ("GET", "/v1/tokens/{token_id}", 404)
    assert request["tenant"] == tenant.id and request["environment"] == "test"
    assert isinstance(request["ms"], float)
