"""A pending token whose activation keeps failing says why, and how often it was tried."""

import uuid

from sqlalchemy import select

from backend.kit.db import unit_of_work
from backend.kit.outbox import public_error
from backend.runtime import current
from backend.tenants.models import TenantEnvironment
from tests.platform import Platform, create_tenant, wait_for


def test_a_pending_token_shows_its_failed_job_and_attempts(embedded_platform: Platform) -> None:
    tenant = create_tenant(embedded_platform)
    with unit_of_work(current().sessions) as session:  # the admin key no longer opens: registering fails
        env = session.scalar(
            select(TenantEnvironment).where(
                TenantEnvironment.tenant_id == uuid.UUID(tenant.id), TenantEnvironment.environment == "test"
            )
        )
        assert env is not None
        env.admin_key_sealed = "v1.broken"
    client = embedded_platform.client
    created = client.post(
        "/v1/tokens",
        json={"kind": "reward", "name": "Free coffee", "symbol": "COF"},
        headers=tenant.admin_headers,
    )
    assert created.status_code == 202 and created.json()["attempts"] == 0
    assert created.json()["failureReason"] is None

    def token() -> dict[str, object]:
        return client.get(f"/v1/tokens/{created.json()['id']}", headers=tenant.with_project()).json()

    failed = wait_for(token, lambda t: t["attempts"] >= 1, "a failed activation")
    assert failed["status"] == "pending"
    reason = str(failed["failureReason"])
    assert reason.startswith(
        f"activation failed {failed['attempts']} time(s), retried; last error: KeystoreError"
    )
    listed = client.get("/v1/tokens", headers=tenant.with_project()).json()["data"]
    assert [t["failureReason"] is not None and t["attempts"] >= 1 for t in listed] == [True]


def test_a_job_error_is_shown_without_secrets() -> None:
    key = "ab" * 32
    error = f"ConnectionError: https://eth.example/v2/secret-api-key refused; key 0x{key}; sk_test_abc"
    shown = public_error(error)
    assert "secret-api-key" not in shown and key not in shown and "sk_test_abc" not in shown
    assert shown.startswith("ConnectionError: [redacted] refused") and len(public_error("x" * 1000)) == 300
