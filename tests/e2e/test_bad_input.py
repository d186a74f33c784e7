"""Bad input is answered with a 4xx and a specific code, and changes nothing (on both stacks)."""

import json
import socket
from typing import Any

import pytest

from tests.platform import Platform, TenantSession, create_tenant, wait_for

CHECKSUMMED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
BAD_CHECKSUM = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"


@pytest.fixture
def tenant(platform: Platform) -> TenantSession:
    """A tenant whose background deployment has finished, so only the requests below could change it."""
    created = create_tenant(platform)
    wait_for(
        lambda: platform.client.get("/v1/tenants/me", headers=created.admin_headers).json()["environments"],
        lambda envs: all(e["status"] != "pending" for e in envs),
        "tenant deployment",
    )
    return created


def snapshot(platform: Platform, tenant: TenantSession) -> dict[str, Any]:
    """Everything a bad request could have touched, read back through the API."""
    get = platform.client.get
    h = tenant.admin_headers
    return {
        "tenant": get("/v1/tenants/me", headers=h).json(),
        "businesses": get("/v1/businesses", headers=h).json(),
        "users": get("/v1/users", headers=h).json(),
        "tokens": get("/v1/tokens", headers=h).json(),
        "admins": get("/v1/admins", headers=h).json(),
    }


CASES: list[tuple[str, str, Any, int, str]] = [
    # (method, path, body, status, code)
    ("POST", "/v1/businesses", b'{"name": "Shop"', 400, "malformed_json"),
    ("POST", "/v1/businesses", b"\xff\xfe not json", 400, "malformed_json"),
    ("POST", "/v1/businesses", {"name": 12}, 422, "invalid_type"),
    ("POST", "/v1/businesses", {"name": "Shop", "color": "red"}, 422, "unknown_field"),
    ("POST", "/v1/businesses", {}, 422, "missing_field"),
    ("POST", "/v1/businesses", {"name": "Shop", "signerAddress": "0x1234"}, 422, "invalid_address"),
    ("POST", "/v1/businesses", {"name": "Shop", "signerAddress": BAD_CHECKSUM}, 422, "invalid_address"),
    ("POST", "/v1/businesses", {"name": "Shop\x00"}, 422, "invalid_value"),
    ("POST", "/v1/users", {"walletAddress": "not an address"}, 422, "invalid_address"),
    ("POST", "/v1/users", {"walletAddress": BAD_CHECKSUM}, 422, "invalid_address"),
    ("POST", "/v1/users", {}, 422, "missing_identifier"),
    ("POST", "/v1/users", {"email": "not-an-email"}, 422, "invalid_value"),
    ("POST", "/v1/users", {"externalId": "x", "admin": True}, 422, "unknown_field"),
    (
        "POST",
        "/v1/tokens",
        {"kind": "credit", "name": "P", "symbol": "P", "maxSupply": "-1"},
        422,
        "invalid_amount",
    ),
    (
        "POST",
        "/v1/tokens",
        {"kind": "credit", "name": "P", "symbol": "P", "maxSupply": str(2**256)},
        422,
        "max_supply_out_of_range",
    ),
    (
        "POST",
        "/v1/tokens",
        {"kind": "credit", "name": "P", "symbol": "P", "maxSupply": "1.5"},
        422,
        "invalid_amount",
    ),
    (
        "POST",
        "/v1/tokens",
        {"kind": "credit", "name": "P", "symbol": "P", "maxSupply": 1.5},
        422,
        "amount_must_be_string",
    ),
    (
        "POST",
        "/v1/tokens",
        {"kind": "credit", "name": "P", "symbol": "P", "maxSupply": 1000},
        422,
        "amount_must_be_string",
    ),
    (
        "POST",
        "/v1/tokens",
        {"kind": "credit", "name": "P", "symbol": "P", "maxSupply": "1e3"},
        422,
        "invalid_amount",
    ),
    (
        "POST",
        "/v1/tokens",
        {"kind": "credit", "name": "P", "symbol": "P", "maxSupply": str(2**248)},
        422,
        "max_supply_out_of_range",
    ),
    (
        "POST",
        "/v1/tokens",
        {"kind": "credit", "name": "P", "symbol": "P", "maxSupply": "0"},
        422,
        "max_supply_out_of_range",
    ),
    (
        "POST",
        "/v1/tokens",
        {"kind": "reward", "name": "P", "symbol": "P", "maxSupply": "10"},
        422,
        "max_supply_not_supported",
    ),
    ("POST", "/v1/tokens", {"kind": "gem", "name": "P", "symbol": "P"}, 422, "invalid_value"),
    (
        "POST",
        "/v1/tokens",
        {"kind": "reward", "name": "P", "symbol": "P", "decimals": 2},
        422,
        "decimals_not_allowed",
    ),
    (
        "POST",
        "/v1/tokens",
        {"kind": "credit", "name": "P", "symbol": "P", "decimals": 19},
        422,
        "invalid_value",
    ),
    ("POST", "/v1/tokens", {"kind": "credit", "name": "P", "symbol": "no spaces"}, 422, "invalid_value"),
    ("PATCH", "/v1/tenants/me", {"name": ""}, 422, "invalid_value"),
    ("PATCH", "/v1/tenants/me", {"slug": "new"}, 422, "unknown_field"),
    ("GET", "/v1/tokens?limit=201", None, 422, "invalid_value"),
    ("GET", "/v1/tokens?page=0", None, 422, "invalid_value"),
    ("GET", "/v1/users?walletAddress=0x12", None, 422, "invalid_address"),
    ("GET", "/v1/users?q=%00", None, 400, "invalid_value"),
    ("GET", "/v1/tokens/not-a-uuid", None, 404, "not_found"),
    ("GET", "/v1/businesses/00000000-0000-0000-0000-000000000000", None, 404, "not_found"),
    ("DELETE", "/v1/businesses/00000000-0000-0000-0000-000000000000/api-keys/x", None, 404, "not_found"),
    ("PUT", "/v1/tokens", {}, 405, "method_not_allowed"),
    ("GET", "/v1/tokens?kind=gem", None, 422, "invalid_value"),
    ("GET", "/v1/tokens?knid=credit", None, 422, "unknown_parameter"),
    ("GET", "/v1/businesses?state=active", None, 422, "unknown_parameter"),
    ("GET", "/v1/users?query=alice", None, 422, "unknown_parameter"),
    ("GET", "/v1/tenants/me/contracts?environment=test", None, 422, "unknown_parameter"),
    ("POST", "/v1/businesses?dryRun=true", {"name": "Shop"}, 422, "unknown_parameter"),
    ("POST", "/v1/users", {"externalId": "big", "attributes": {"a": "x" * 16_400}}, 422, "field_too_large"),
]


def test_bad_requests_are_answered_and_change_nothing(platform: Platform, tenant: TenantSession) -> None:
    before = snapshot(platform, tenant)
    for method, path, body, status, code in CASES:
        kwargs: dict[str, Any] = {
            "content": body,
            "headers": {**tenant.admin_headers, "Content-Type": "application/json"},
        }
        if not isinstance(body, bytes):
            kwargs = (
                {"json": body, "headers": tenant.admin_headers}
                if body is not None
                else {"headers": tenant.admin_headers}
            )
        response = platform.client.request(method, path, **kwargs)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), (
            method,
            path,
            body,
            response.text,
        )
    assert snapshot(platform, tenant) == before


def test_conflicts_and_operator_only_calls(platform: Platform, tenant: TenantSession) -> None:
    client = platform.client
    before = snapshot(platform, tenant)
    taken = client.post(
        "/v1/tenants",
        json={"name": "Copy", "slug": tenant.slug, "adminEmail": "x@example.com"},
        headers=platform.operator(),
    )
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "slug_taken"
    as_admin = client.post(
        "/v1/tenants",
        json={"name": "Mine", "slug": "mine-x", "adminEmail": "x@example.com"},
        headers=tenant.admin_headers,
    )
    assert as_admin.status_code == 403 and as_admin.json()["error"]["code"] == "forbidden"
    for slug in ("Upper", "-dash", "a" * 65, "spa ce"):
        bad = client.post(
            "/v1/tenants",
            json={"name": "X", "slug": slug, "adminEmail": "x@example.com"},
            headers=platform.operator(),
        )
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_value", slug
    weak = client.post(
        "/v1/tenants",
        json={"name": "X", "slug": "weak-pw", "adminEmail": "x@example.com", "adminPassword": "short"},
        headers=platform.operator(),
    )
    assert weak.status_code == 422
    assert snapshot(platform, tenant) == before

    symbol = {"kind": "reward", "name": "Mug", "symbol": "MUG"}
    assert client.post("/v1/tokens", json=symbol, headers=tenant.admin_headers).status_code == 202
    again = client.post("/v1/tokens", json=symbol, headers=tenant.admin_headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "symbol_taken"
    assert client.get("/v1/tokens", headers=tenant.admin_headers).json()["meta"]["total"] == 1

    alice = client.post(
        "/v1/users", json={"externalId": "alice", "email": "alice@example.com"}, headers=tenant.admin_headers
    )
    bob = client.post("/v1/users", json={"externalId": "bob"}, headers=tenant.admin_headers)
    assert (alice.status_code, bob.status_code) == (201, 201)
    assert alice.json()["managedWallet"] is True and "walletKey" not in str(alice.json())
    clash = client.post(
        "/v1/users", json={"externalId": "bob", "email": "alice@example.com"}, headers=tenant.admin_headers
    )
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "identity_conflict"
    same = client.post("/v1/users", json={"email": "ALICE@example.com"}, headers=tenant.admin_headers)
    assert same.status_code == 200 and same.json()["id"] == alice.json()["id"]
    found = client.post(
        "/v1/users", json={"walletAddress": CHECKSUMMED.lower()}, headers=tenant.admin_headers
    )
    assert found.status_code == 201 and found.json()["walletAddress"] == CHECKSUMMED


def test_user_search_text_is_literal(platform: Platform, tenant: TenantSession) -> None:
    client, headers = platform.client, tenant.admin_headers
    for external_id in ("a_b%", "axbyz", "A_B%c"):
        assert client.post("/v1/users", json={"externalId": external_id}, headers=headers).status_code == 201
    found = client.get("/v1/users", params={"q": "a_b%"}, headers=headers).json()
    assert sorted(u["externalId"] for u in found["data"]) == ["A_B%c", "a_b%"]
    assert client.get("/v1/users", params={"q": "%"}, headers=headers).json()["meta"]["total"] == 2


def test_a_request_that_is_not_valid_http_is_answered_with_a_code(
    production_platform: Platform, tenant: TenantSession
) -> None:
    """The production server's parser refuses what HTTP forbids before the app sees it (a control
    character in a header value); its answer is the API's, a code in a JSON body, and nothing moves."""
    before = snapshot(production_platform, tenant)
    url = production_platform.client.base_url
    body = b'{"name": "Shop"}'
    request = (
        b"POST /v1/businesses HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
        b"Authorization: %s\r\nIdempotency-Key: bad\x01key\r\nContent-Length: %d\r\n\r\n%s"
        % (url.host.encode(), tenant.admin_headers["Authorization"].encode(), len(body), body)
    )
    with socket.create_connection((url.host, url.port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(4096):  # the server closes the connection after its answer
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/json" in head.lower()
    assert json.loads(payload)["error"]["code"] == "malformed_request"
    assert snapshot(production_platform, tenant) == before
