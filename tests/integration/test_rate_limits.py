"""Rate limits per credential and per client address: `429` with `Retry-After`, one budget shared by
every API process through Redis."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from backend.app import create_app
from backend.kit import migrate
from backend.kit.db import unit_of_work
from backend.runtime import Runtime
from backend.settings import Settings
from backend.tenants import service
from backend.tenants.schemas import TenantCreate

LIMIT = 3


def api(data_dir: Path, redis_url: str | None, per_key: int, per_address: int) -> TestClient:
    settings = Settings(
        data_dir=data_dir,
        redis_url=redis_url,
        operator_token=SecretStr("op"),
        rate_limit_per_key=per_key,
        rate_limit_per_address=per_address,
        rate_limit_window=3600,
    )
    return TestClient(create_app(Runtime.from_settings(settings)))


@pytest.fixture
def project_keys(tmp_path: Path) -> Iterator[list[str]]:
    """Two tenants' test project keys, in a database the API processes below share."""
    settings = Settings(data_dir=tmp_path)
    migrate.upgrade(settings.sqlalchemy_url())
    runtime = Runtime.from_settings(settings)
    keys = []
    with unit_of_work(runtime.sessions) as session:
        for name in ("one", "two"):
            slug = f"{name}-{uuid.uuid4().hex[:6]}"
            tenant, _, _ = service.create_tenant(
                session,
                settings,
                runtime.keystore,
                TenantCreate(name=name, slug=slug, admin_email=f"a@{slug}.io"),
            )
            keys.append(
                next(
                    e.project_key for e in service.environments(session, tenant.id) if e.environment == "test"
                )
            )
    yield keys
    runtime.engine.dispose()


def test_per_key_budget_answers_429_with_retry_after(tmp_path: Path, project_keys: list[str]) -> None:
    client = api(tmp_path, None, per_key=LIMIT, per_address=1000)
    first, second = ({"X-Project-Key": k} for k in project_keys)
    for _ in range(LIMIT):
        assert client.get("/v1/tokens", headers=first).status_code == 200
    refused = client.get("/v1/tokens", headers=first)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["details"] == {"retryAfter": int(refused.headers["Retry-After"])}
    assert client.get("/v1/tokens", headers=second).status_code == 200  # another key has its own budget


def test_per_address_budget_covers_every_credential(tmp_path: Path, project_keys: list[str]) -> None:
    client = api(tmp_path, None, per_key=1000, per_address=LIMIT)
    for i in range(LIMIT):
        assert client.get("/v1/tokens", headers={"X-Project-Key": project_keys[i % 2]}).status_code == 200
    refused = client.get("/v1/tokens", headers={"X-Project-Key": project_keys[1]})
    assert refused.status_code == 429 and "Retry-After" in refused.headers


def test_api_processes_share_one_budget_through_redis(
    tmp_path: Path, project_keys: list[str], redis_url: str
) -> None:
    # Two API processes (two runtimes, two Redis clients) over the same database and Redis.
    processes = [api(tmp_path, redis_url, per_key=LIMIT, per_address=1000) for _ in range(2)]
    headers = {"X-Project-Key": project_keys[0]}
    statuses = [processes[i % 2].get("/v1/tokens", headers=headers).status_code for i in range(LIMIT + 1)]
    assert statuses == [200] * LIMIT + [429]  # the keys expire with their window
