"""Signing in: SIWE (EIP-4361) for wallets, passwords for admins, API keys for businesses, and
rotating refresh tokens; every refusal with its own code."""

from datetime import UTC, datetime, timedelta

import pytest
from eth_account import Account

from tests.platform import Platform, TenantSession, bearer, create_tenant, sign, siwe_message, siwe_sign_in


@pytest.fixture
def tenant(platform: Platform) -> TenantSession:
    return create_tenant(platform)


def code(response: object) -> str:
    return str(response.json()["error"]["code"])  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "optional",
    [
        {},
        {"statement": None},
        {"expiration_time": None},
        {"not_before": datetime.now(UTC) - timedelta(minutes=1), "request_id": "req-42"},
        {
            "resources": (
                "ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/",
                "https://example.com/a",
            )
        },
    ],
    ids=["all-usual-fields", "no-statement", "no-expiry", "not-before-and-request-id", "resources"],
)
def test_siwe_sign_in_with_and_without_optional_fields(
    platform: Platform, tenant: TenantSession, optional: dict[str, object]
) -> None:
    wallet = Account.create()
    response = siwe_sign_in(platform, tenant, wallet, **optional)
    assert response.status_code == 200, response.text
    me = platform.client.get("/v1/auth/me", headers=bearer(response.json()["accessToken"])).json()
    assert me["kind"] == "user" and me["tenantId"] == tenant.id
    profile = platform.client.get("/v1/users/me", headers=bearer(response.json()["accessToken"])).json()
    assert profile["walletAddress"] == wallet.address
    # Users name themselves, but cannot claim an email: businesses find customers by it.
    own = bearer(response.json()["accessToken"])
    renamed = platform.client.patch("/v1/users/me", json={"name": "Ada"}, headers=own)
    assert renamed.status_code == 200 and renamed.json()["name"] == "Ada"
    claimed = platform.client.patch("/v1/users/me", json={"email": "victim@example.com"}, headers=own)
    assert claimed.status_code == 422 and code(claimed) == "unknown_field"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"domain": "evil.example"}, "siwe_domain_mismatch"),
        ({"chain_id": 1}, "siwe_chain_mismatch"),
        (
            {
                "issued_at": datetime.now(UTC) - timedelta(hours=2),
                "expiration_time": datetime.now(UTC) - timedelta(hours=1),
            },
            "siwe_expired",
        ),
        ({"not_before": datetime.now(UTC) + timedelta(hours=1)}, "siwe_not_yet_valid"),
        ({"nonce": "neverissued1"}, "siwe_nonce_unknown"),
    ],
    ids=["other-domain", "other-chain", "expired", "not-yet-valid", "unknown-nonce"],
)
def test_siwe_refusals(
    platform: Platform, tenant: TenantSession, changes: dict[str, object], expected: str
) -> None:
    users_before = _user_count(platform, tenant)
    response = siwe_sign_in(platform, tenant, Account.create(), **changes)
    assert response.status_code == 401 and code(response) == expected, response.text
    assert _user_count(platform, tenant) == users_before  # nothing was created


def test_siwe_nonce_is_single_use_and_signature_must_match(platform: Platform, tenant: TenantSession) -> None:
    client, wallet = platform.client, Account.create()
    issued = client.post("/v1/auth/siwe/nonce", headers=tenant.with_project()).json()
    message = siwe_message(
        platform, wallet, issued["nonce"], issued["chainId"], resources=tuple(issued["resources"])
    )
    body = {"authType": "user", "message": message, "signature": sign(wallet, message)}

    forged = {**body, "signature": sign(Account.create(), message)}
    refused = client.post("/v1/auth/token", json=forged, headers=tenant.with_project())
    assert refused.status_code == 401 and code(refused) == "siwe_bad_signature"

    assert client.post("/v1/auth/token", json=body, headers=tenant.with_project()).status_code == 200
    replay = client.post("/v1/auth/token", json=body, headers=tenant.with_project())
    assert replay.status_code == 401 and code(replay) == "siwe_nonce_used"

    # A nonce belongs to the tenant that issued it.
    other = create_tenant(platform, "Other")
    fresh = client.post("/v1/auth/siwe/nonce", headers=tenant.with_project()).json()
    message = siwe_message(
        platform, wallet, fresh["nonce"], fresh["chainId"], resources=tuple(fresh["resources"])
    )
    elsewhere = client.post(
        "/v1/auth/token",
        json={"authType": "user", "message": message, "signature": sign(wallet, message)},
        headers=other.with_project(),
    )
    assert elsewhere.status_code == 401 and code(elsewhere) == "siwe_nonce_unknown"

    malformed = client.post(
        "/v1/auth/token",
        json={"authType": "user", "message": "hello", "signature": body["signature"]},
        headers=tenant.with_project(),
    )
    assert malformed.status_code == 400 and code(malformed) == "siwe_malformed"


def test_refresh_tokens_rotate_and_reuse_revokes_the_family(
    platform: Platform, tenant: TenantSession
) -> None:
    client = platform.client
    first = siwe_sign_in(platform, tenant, Account.create()).json()
    second = client.post("/v1/auth/refresh", json={"refreshToken": first["refreshToken"]})
    assert second.status_code == 200 and second.json()["refreshToken"] != first["refreshToken"]
    assert client.get("/v1/auth/me", headers=bearer(second.json()["accessToken"])).status_code == 200

    reused = client.post("/v1/auth/refresh", json={"refreshToken": first["refreshToken"]})
    assert reused.status_code == 401 and code(reused) == "refresh_token_reused"
    # The thief's reuse ended the session: the legitimate holder's newer token no longer works.
    revoked = client.post("/v1/auth/refresh", json={"refreshToken": second.json()["refreshToken"]})
    assert revoked.status_code == 401 and code(revoked) == "refresh_token_revoked"
    unknown = client.post("/v1/auth/refresh", json={"refreshToken": "rt_nothing"})
    assert unknown.status_code == 401 and code(unknown) == "invalid_refresh_token"


def test_admin_and_business_credentials(platform: Platform, tenant: TenantSession) -> None:
    client = platform.client
    email = tenant.raw["admin"]["email"]
    wrong = client.post(
        "/v1/auth/token",
        json={"authType": "admin", "email": email, "password": "not the password"},
        headers=tenant.with_project(),
    )
    assert wrong.status_code == 401 and code(wrong) == "invalid_credentials"
    nobody = client.post(
        "/v1/auth/token",
        json={"authType": "admin", "email": "nobody@example.com", "password": "whatever"},
        headers=tenant.with_project(),
    )
    assert nobody.status_code == 401 and code(nobody) == "invalid_credentials"
    no_project = client.post("/v1/auth/token", json={"authType": "admin", "email": email, "password": "x"})
    assert no_project.status_code == 401 and code(no_project) == "project_key_required"

    business = client.post("/v1/businesses", json={"name": "Kiosk"}, headers=tenant.admin_headers).json()
    key = client.post(
        f"/v1/businesses/{business['id']}/api-keys",
        json={"scopes": ["users:read"]},
        headers=tenant.admin_headers,
    ).json()
    session = client.post("/v1/auth/token", json={"authType": "business", "apiKey": key["key"]})
    assert session.status_code == 200
    me = client.get("/v1/auth/me", headers=bearer(session.json()["accessToken"])).json()
    assert me["kind"] == "business" and me["scopes"] == ["users:read"]
    # Scopes are enforced: this key may read users but not create them.
    denied = client.post("/v1/users", json={"externalId": "c-1"}, headers={"X-API-Key": key["key"]})
    assert denied.status_code == 403 and code(denied) == "insufficient_scope"

    business_session = bearer(session.json()["accessToken"])
    assert client.get("/v1/users", headers=business_session).status_code == 200
    keys = f"/v1/businesses/{business['id']}/api-keys"
    used = client.get(keys, headers=tenant.admin_headers).json()["data"][0]["lastUsedAt"]
    assert used is not None  # written with a request it authenticated, then at most once a minute
    assert client.get("/v1/users", headers={"X-API-Key": key["key"]}).status_code == 200
    assert client.get(keys, headers=tenant.admin_headers).json()["data"][0]["lastUsedAt"] == used
    revoke = client.delete(
        f"/v1/businesses/{business['id']}/api-keys/{key['id']}", headers=tenant.admin_headers
    )
    assert revoke.status_code == 204
    # Sessions die with their key, not when their access token expires.
    ended = client.get("/v1/users", headers=business_session)
    assert ended.status_code == 401 and code(ended) == "api_key_revoked"
    after = client.get("/v1/users", headers={"X-API-Key": key["key"]})
    assert after.status_code == 401 and code(after) == "api_key_revoked"
    refreshed = client.post("/v1/auth/refresh", json={"refreshToken": session.json()["refreshToken"]})
    assert refreshed.status_code == 401 and code(refreshed) == "refresh_token_revoked"
    unknown = client.get("/v1/users", headers={"X-API-Key": "sk_test_unknown"})
    assert unknown.status_code == 401 and code(unknown) == "invalid_api_key"

    garbage = client.get("/v1/auth/me", headers={"Authorization": "Bearer not-a-jwt"})
    assert garbage.status_code == 401 and code(garbage) == "invalid_token"
    nothing = client.get("/v1/auth/me")
    assert nothing.status_code == 401 and code(nothing) == "unauthenticated"


def test_a_project_key_of_one_tenant_with_a_token_of_another(
    platform: Platform, tenant: TenantSession
) -> None:
    other = create_tenant(platform, "Other")
    mixed = platform.client.get(
        "/v1/tokens", headers={**tenant.admin_headers, "X-Project-Key": other.project_key}
    )
    assert mixed.status_code == 403 and code(mixed) == "tenant_mismatch"
    live = platform.client.get(
        "/v1/tokens", headers={**tenant.admin_headers, "X-Project-Key": tenant.live_project_key}
    )
    assert live.status_code == 403 and code(live) == "tenant_mismatch"
    unknown = platform.client.get("/v1/tokens", headers={"X-Project-Key": "pk_test_unknown"})
    assert unknown.status_code == 401 and code(unknown) == "invalid_project_key"


def test_auditors_read_but_do_not_write(platform: Platform, tenant: TenantSession) -> None:
    client = platform.client
    created = client.post(
        "/v1/admins",
        json={"email": "auditor@example.com", "role": "AUDITOR", "password": "a long auditor password"},
        headers=tenant.admin_headers,
    )
    assert created.status_code == 201 and created.json()["password"] is None
    signed_in = client.post(
        "/v1/auth/token",
        json={"authType": "admin", "email": "auditor@example.com", "password": "a long auditor password"},
        headers=tenant.with_project(),
    )
    auditor = bearer(signed_in.json()["accessToken"])
    assert client.get("/v1/auth/me", headers=auditor).json()["kind"] == "auditor"
    assert client.get("/v1/admins", headers=auditor).json()["meta"]["total"] == 2
    assert client.get("/v1/tenants/me/contracts", headers=auditor).status_code == 200
    for method, path, body in (
        ("POST", "/v1/businesses", {"name": "X"}),
        ("POST", "/v1/tokens", {"kind": "reward", "name": "Mug", "symbol": "MUG"}),
        ("PATCH", "/v1/tenants/me", {"name": "Renamed"}),
        ("POST", "/v1/admins", {"email": "x@example.com", "role": "AUDITOR"}),
    ):
        refused = client.request(method, path, json=body, headers=auditor)
        assert refused.status_code == 403 and code(refused) == "forbidden", (method, path)
    assert client.get("/v1/tenants/me", headers=auditor).json()["name"] == "Acme"
    duplicate = client.post(
        "/v1/admins", json={"email": "AUDITOR@example.com", "role": "AUDITOR"}, headers=tenant.admin_headers
    )
    assert duplicate.status_code == 409 and code(duplicate) == "email_taken"


def _user_count(platform: Platform, tenant: TenantSession) -> int:
    total: int = platform.client.get("/v1/users", headers=tenant.admin_headers).json()["meta"]["total"]
    return total


def test_a_business_opens_a_session_for_a_managed_wallet_user_it_serves(embedded_platform: Platform) -> None:
    """`authType: managed_user`: a user without a wallet to sign with gets a short session from a business
    that serves them; refused for own-wallet users, users it does not serve, and other tenants' users."""
    platform, client = embedded_platform, embedded_platform.client
    tenant, other = create_tenant(platform), create_tenant(platform, "Other")

    def shop(on: TenantSession, scopes: list[str] | None = None) -> dict[str, str]:
        business = client.post("/v1/businesses", json={"name": "Shop"}, headers=on.admin_headers).json()
        key = client.post(
            f"/v1/businesses/{business['id']}/api-keys", json={"scopes": scopes}, headers=on.admin_headers
        )
        return {"X-API-Key": key.json()["key"]}

    mall, neighbour, foreign = shop(tenant), shop(tenant), shop(other)
    ada = client.post("/v1/users", json={"externalId": "ada"}, headers=mall).json()
    stranger = client.post("/v1/users", json={"externalId": "eve"}, headers=foreign).json()
    wallet = Account.create()
    owner = bearer(siwe_sign_in(platform, tenant, wallet).json()["accessToken"])
    own = client.get("/v1/users/me", headers=owner).json()
    client.post("/v1/users", json={"walletAddress": wallet.address}, headers=mall)  # served, own wallet

    def open_for(user_id: str, headers: dict[str, str]) -> object:
        return client.post(
            "/v1/auth/token", json={"authType": "managed_user", "userId": user_id}, headers=headers
        )

    opened = open_for(ada["id"], mall)
    assert opened.status_code == 200, opened.text  # type: ignore[attr-defined]
    session = opened.json()  # type: ignore[attr-defined]
    assert (session["subjectKind"], session["subjectId"]) == ("user", ada["id"])
    assert 0 < session["expiresIn"] <= 900
    me = client.get("/v1/users/me", headers=bearer(session["accessToken"])).json()
    assert (me["id"], me["managedWallet"]) == (ada["id"], True)
    # A business session opens one too; the session ends with its access token (no long refresh).
    exchanged = client.post("/v1/auth/token", json={"authType": "business", "apiKey": mall["X-API-Key"]})
    assert open_for(ada["id"], bearer(exchanged.json()["accessToken"])).status_code == 200  # type: ignore[attr-defined]
    refused = [
        (open_for(own["id"], mall), 403, "user_not_managed"),
        (open_for(ada["id"], neighbour), 403, "user_not_served"),
        (open_for(stranger["id"], mall), 403, "user_not_served"),
        (open_for(ada["id"], shop(tenant, ["users:read"])), 403, "insufficient_scope"),
        (open_for(ada["id"], tenant.admin_headers), 403, "business_credential_required"),
        (open_for(ada["id"], {}), 401, "unauthenticated"),
        (open_for(ada["id"], {"X-API-Key": "sk_test_nope"}), 401, "invalid_api_key"),
        (open_for(ada["id"], {**mall, "X-Project-Key": other.project_key}), 403, "tenant_mismatch"),
        (open_for("not-a-uuid", mall), 422, "invalid_type"),
    ]
    for answer, status, expected in refused:
        assert (answer.status_code, code(answer)) == (status, expected), answer.text  # type: ignore[attr-defined]
