"""Driving the platform through its HTTP API, the same way on the embedded stack (TestClient) and
on the production processes (httpx over a socket)."""

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from web3 import Web3

from backend.auth.siwe import SiweMessage, format_message

PASSWORD = "correct horse battery staple"


@dataclass
class Platform:
    client: httpx.Client
    operator_token: str
    w3: Web3  # the test environment's chain
    siwe_domain: str
    env: dict[str, str] | None = None  # the production processes' environment (None: embedded)

    def operator(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.operator_token}"}


@dataclass
class TenantSession:
    """A tenant created through the API, with an admin signed in."""

    id: str
    slug: str
    project_key: str
    live_project_key: str
    admin_headers: dict[str, str]
    raw: dict[str, Any]

    def with_project(self, headers: dict[str, str] | None = None) -> dict[str, str]:
        return {"X-Project-Key": self.project_key, **(headers or {})}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_tenant(platform: Platform, name: str = "Acme") -> TenantSession:
    slug = f"{name.lower()}-{uuid.uuid4().hex[:8]}"
    email = f"owner@{slug}.example"
    created = platform.client.post(
        "/v1/tenants",
        json={"name": name, "slug": slug, "adminEmail": email, "adminPassword": PASSWORD},
        headers=platform.operator(),
    )
    assert created.status_code == 201, created.text
    body = created.json()
    keys = {e["environment"]: e["projectKey"] for e in body["environments"]}
    signed_in = platform.client.post(
        "/v1/auth/token",
        json={"authType": "admin", "email": email, "password": PASSWORD},
        headers={"X-Project-Key": keys["test"]},
    )
    assert signed_in.status_code == 200, signed_in.text
    return TenantSession(
        body["id"], slug, keys["test"], keys["live"], bearer(signed_in.json()["accessToken"]), body
    )


def wait_for(fetch: Any, done: Any, what: str, timeout: float = 120) -> Any:
    """Polls `fetch()` until `done(result)`; a bounded wait for background work, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if done(result):
            return result
        assert time.monotonic() < deadline, f"{what} did not happen: {result}"
        time.sleep(0.1)


def siwe_message(platform: Platform, account: LocalAccount, nonce: str, chain_id: int, **changes: Any) -> str:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "domain": platform.siwe_domain,
        "address": account.address,
        "statement": "Sign in to the loyalty program.",
        "uri": f"https://{platform.siwe_domain}/login",
        "version": "1",
        "chain_id": chain_id,
        "nonce": nonce,
        "issued_at": now,
        "expiration_time": now + timedelta(minutes=5),
        **changes,
    }
    return format_message(SiweMessage(**fields))


def sign(account: LocalAccount, message: str) -> str:
    return "0x" + bytes(Account.sign_message(encode_defunct(text=message), account.key).signature).hex()


def siwe_sign_in(
    platform: Platform, tenant: TenantSession, account: LocalAccount, **changes: Any
) -> httpx.Response:
    nonce = platform.client.post("/v1/auth/siwe/nonce", headers=tenant.with_project())
    assert nonce.status_code == 201, nonce.text
    issued = nonce.json()
    # The tenant's resource comes first; a test may add others or (with `resources`) replace it.
    changes = {"resources": (*issued["resources"], *changes.pop("resources", ())), **changes}
    message = siwe_message(
        platform, account, **{"nonce": issued["nonce"], "chain_id": issued["chainId"], **changes}
    )
    return platform.client.post(
        "/v1/auth/token",
        json={"authType": "user", "message": message, "signature": sign(account, message)},
        headers=tenant.with_project(),
    )
