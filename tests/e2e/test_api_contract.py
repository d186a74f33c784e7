"""The API's conventions, on both stacks: bounded bodies, amounts as strings, credentials documented as
accepted, lists as {data, meta}, camelCase names in errors, `Allow` on a 405, filters, and unknown
query parameters refused."""

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account

from backend.kit.types import MAX_JSON_FIELD_BYTES
from tests.platform import Platform, TenantSession, bearer, create_tenant, siwe_sign_in, wait_for

MAX_BODY = 1024 * 1024  # the default of PERS_MAX_BODY_BYTES, which both stacks run with
Json = dict[str, Any]


@dataclass(frozen=True)
class Callers:
    tenant: TenantSession
    business_id: str
    api_key: str
    by_kind: dict[str, dict[str, str]]  # one credential of each kind, alone


@pytest.fixture
def callers(platform: Platform) -> Callers:
    client = platform.client
    tenant = create_tenant(platform, "Contract")
    admin = tenant.admin_headers
    business = client.post("/v1/businesses", json={"name": "Till"}, headers=admin).json()
    key = client.post(f"/v1/businesses/{business['id']}/api-keys", json={}, headers=admin).json()
    business_pair = client.post("/v1/auth/token", json={"authType": "business", "apiKey": key["key"]}).json()
    auditor = {"email": f"audit@{tenant.slug}.example", "role": "AUDITOR", "password": "auditor password 1"}
    assert client.post("/v1/admins", json=auditor, headers=admin).status_code == 201
    auditor_pair = client.post(
        "/v1/auth/token",
        json={"authType": "admin", "email": auditor["email"], "password": auditor["password"]},
        headers=tenant.with_project(),
    ).json()
    user_pair = siwe_sign_in(platform, tenant, Account.create()).json()
    by_kind = {
        "admin session": admin,
        "auditor session": bearer(auditor_pair["accessToken"]),
        "business session": bearer(business_pair["accessToken"]),
        "user session": bearer(user_pair["accessToken"]),
        "operator token": platform.operator(),
        "API key": {"X-API-Key": key["key"]},
        "project key": tenant.with_project(),
        "nothing": {},
    }
    return Callers(tenant, business["id"], key["key"], by_kind)


def scheme(kind: str) -> str | None:
    """The OpenAPI security scheme a credential is sent as (None: no credential)."""
    if kind == "nothing":
        return None
    return {"API key": "ApiKey", "project key": "ProjectKey"}.get(kind, "HTTPBearer")


def refused(response: Any) -> bool:
    """Turned away for who is calling (not for what it asked). Only errors are read as JSON: an answer
    may be text (`/metrics`)."""
    if response.status_code == 401:
        return True
    return response.status_code == 403 and response.json().get("error", {}).get("code") == "forbidden"


def test_openapi_lists_exactly_the_credentials_each_route_accepts(
    platform: Platform, callers: Callers
) -> None:
    """Every operation, called with each kind of credential alone: the schemes it accepts are the
    schemes its OpenAPI security lists; a route that needs none lists an empty requirement (or none)."""
    spec = platform.client.get("/openapi.json").json()
    mismatches, checked = [], 0
    for template, operations in spec["paths"].items():
        # The caller's own business (a business may read only itself); any other id is unknown.
        path = template.replace("{business_id}", callers.business_id)
        path = re.sub(r"{\w+}", str(uuid.uuid4()), path)
        for method, operation in operations.items():
            body = {} if method in ("post", "put", "patch") else None
            accepted = {
                kind
                for kind, headers in callers.by_kind.items()
                if not refused(platform.client.request(method, path, json=body, headers=headers))
            }
            security = operation.get("security", [])
            documented = {name for requirement in security for name in requirement}
            optional = not security or {} in security
            if "nothing" in accepted:
                ok = optional
            else:
                ok = not optional and documented == {scheme(k) for k in accepted}
            if not ok:
                mismatches.append(
                    f"{method.upper()} {template}: accepts {sorted(accepted)}, documents {security}"
                )
            checked += 1
    assert checked > 20 and not mismatches, "\n".join(mismatches)


def test_a_secret_key_can_do_what_the_public_key_can(platform: Platform, callers: Callers) -> None:
    client, admin = platform.client, callers.tenant.admin_headers
    token = client.post("/v1/tokens", json={"kind": "reward", "name": "Mug", "symbol": "MUG"}, headers=admin)
    narrow = client.post(
        f"/v1/businesses/{callers.business_id}/api-keys", json={"scopes": ["users:read"]}, headers=admin
    ).json()["key"]
    for headers in (callers.tenant.with_project(), {"X-API-Key": narrow}):
        listed = client.get("/v1/tokens", headers=headers)
        assert listed.status_code == 200 and listed.json()["meta"]["total"] == 1, listed.text
        assert client.get(f"/v1/tokens/{token.json()['id']}", headers=headers).status_code == 200
        assert client.post("/v1/auth/siwe/nonce", headers=headers).status_code == 201
    # Scopes still bound what only secret credentials may do.
    users = client.get("/v1/users", headers={"X-API-Key": narrow})
    assert users.status_code == 200, users.text
    write = client.post("/v1/users", json={"externalId": "x"}, headers={"X-API-Key": narrow})
    assert (write.status_code, write.json()["error"]["code"]) == (403, "insufficient_scope")


def test_request_bodies_are_bounded(platform: Platform, callers: Callers) -> None:
    client, admin = platform.client, callers.tenant.admin_headers
    json_headers = {**admin, "Content-Type": "application/json"}
    # Declared too large: refused from the header, before authentication and before reading it.
    oversized = b'{"name": "' + b"x" * MAX_BODY + b'"}'
    for headers in (json_headers, {"Content-Type": "application/json"}):
        response = client.post("/v1/businesses", content=oversized, headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == (413, "payload_too_large")
        assert response.headers["x-request-id"]

    # No length declared (chunked): cut off where the count passes the limit.
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(MAX_BODY // 65536 + 1):
            yield b"x" * 65536
        yield b'"}'

    response = client.post("/v1/businesses", content=chunks(), headers=json_headers)
    assert (response.status_code, response.json()["error"]["code"]) == (413, "payload_too_large")
    # Within the limit, a free-form JSON field has its own, documented bound.
    attributes = {"notes": "x" * (MAX_BODY - 1000)}
    response = client.post("/v1/users", json={"externalId": "big", "attributes": attributes}, headers=admin)
    assert (response.status_code, response.json()["error"]["code"]) == (422, "field_too_large")
    spec = client.get("/openapi.json").json()["components"]["schemas"]["UserFind"]["properties"]
    assert str(MAX_JSON_FIELD_BYTES) in str(spec["attributes"])
    fits = {"notes": "x" * (MAX_JSON_FIELD_BYTES - 100)}
    response = client.post("/v1/users", json={"externalId": "fits", "attributes": fits}, headers=admin)
    assert response.status_code == 201 and response.json()["attributes"] == fits
    assert client.get("/v1/users", params={"q": "big"}, headers=admin).json()["meta"]["total"] == 0


def test_amounts_are_decimal_strings_with_one_range_per_field(platform: Platform, callers: Callers) -> None:
    client, admin = platform.client, callers.tenant.admin_headers
    credit = {"kind": "credit", "name": "Points", "symbol": "PTS"}
    for number in (1000, 2**60, 1.0):
        sent = client.post("/v1/tokens", json={**credit, "maxSupply": number}, headers=admin)
        error = sent.json()["error"]
        assert (sent.status_code, error["code"]) == (422, "amount_must_be_string"), sent.text
        assert error["details"]["errors"][0]["loc"] == ["body", "maxSupply"]
        assert "string" in error["details"]["errors"][0]["msg"]
    messages = set()
    for value in ("0", str(2**248), str(2**256), "9" * 100):
        sent = client.post("/v1/tokens", json={**credit, "maxSupply": value}, headers=admin)
        assert (sent.status_code, sent.json()["error"]["code"]) == (422, "max_supply_out_of_range"), value
        messages.add(sent.json()["error"]["details"]["errors"][0]["msg"])
    assert messages == {"must be 1 to 2^248-1"}
    created = client.post("/v1/tokens", json={**credit, "maxSupply": str(2**248 - 1)}, headers=admin)
    assert created.status_code == 202 and created.json()["maxSupply"] == str(2**248 - 1)


def test_errors_name_fields_as_the_api_does(platform: Platform, callers: Callers) -> None:
    client, admin = platform.client, callers.tenant.admin_headers
    ann = {"externalId": "ann", "email": "ann@example.com"}
    assert client.post("/v1/users", json=ann, headers=admin).status_code == 201
    clash = client.post("/v1/users", json={"email": "ann@example.com", "externalId": "bob"}, headers=admin)
    error = clash.json()["error"]
    assert (clash.status_code, error["code"], error["details"]) == (
        409,
        "identity_conflict",
        {"field": "externalId"},
    )
    assert "externalId" in error["message"] and "external_id" not in clash.text
    wrong = client.post("/v1/users", json={"externalId": 5, "walletAddress": "0x1"}, headers=admin)
    locs = [e["loc"] for e in wrong.json()["error"]["details"]["errors"]]
    assert sorted(locs) == [["body", "externalId"], ["body", "walletAddress"]], wrong.text
    query = client.get("/v1/users", params={"walletAddress": "0x1"}, headers=admin).json()["error"]
    assert query["details"]["errors"][0]["loc"] == ["query", "walletAddress"]
    unknown = client.get("/v1/users", params={"external_id": "ann"}, headers=admin).json()["error"]
    assert (unknown["code"], unknown["details"]) == ("unknown_parameter", {"parameters": ["external_id"]})


def test_a_405_allows_every_method_of_the_path(platform: Platform, callers: Callers) -> None:
    client, admin = platform.client, callers.tenant.admin_headers
    for method, path, allowed in (
        ("DELETE", "/v1/tokens", "GET, POST"),
        ("DELETE", "/v1/tenants/me", "GET, PATCH"),
        ("PUT", "/v1/tenants", "GET, POST"),
        ("POST", f"/v1/tokens/{uuid.uuid4()}", "GET, PATCH"),
    ):
        response = client.request(method, path, headers=admin)
        assert (response.status_code, response.json()["error"]["code"]) == (405, "method_not_allowed")
        assert response.headers["allow"] == allowed, (method, path)


def test_list_filters(platform: Platform, callers: Callers) -> None:
    client, admin = platform.client, callers.tenant.admin_headers
    for body in (
        {"kind": "credit", "name": "Points", "symbol": "PTS"},
        {"kind": "reward", "name": "Mug", "symbol": "MUG"},
        {"kind": "status", "name": "Gold", "symbol": "GOLD"},
    ):
        assert client.post("/v1/tokens", json=body, headers=admin).status_code == 202
    for kind, symbol in (("credit", "PTS"), ("reward", "MUG"), ("status", "GOLD")):
        listed = client.get("/v1/tokens", params={"kind": kind}, headers=admin).json()
        assert [t["symbol"] for t in listed["data"]] == [symbol] and listed["meta"]["total"] == 1
    tokens = wait_for(
        lambda: client.get("/v1/tokens", params={"status": "active"}, headers=admin).json(),
        lambda page: page["meta"]["total"] == 3,
        "token activation",
    )
    assert {t["status"] for t in tokens["data"]} == {"active"}
    assert client.get("/v1/tokens", params={"status": "failed"}, headers=admin).json()["data"] == []

    other = client.post("/v1/businesses", json={"name": "Closed"}, headers=admin).json()
    patched = client.patch(f"/v1/businesses/{other['id']}", json={"status": "suspended"}, headers=admin)
    assert patched.status_code == 200
    for status, ids in (("suspended", [other["id"]]), ("active", [callers.business_id])):
        listed = client.get("/v1/businesses", params={"status": status}, headers=admin).json()
        assert [b["id"] for b in listed["data"]] == ids and listed["meta"]["total"] == 1
    assert client.get("/v1/businesses", headers=admin).json()["meta"]["total"] == 2

    for external_id in ("carol", "dave"):
        assert client.post("/v1/users", json={"externalId": external_id}, headers=admin).status_code == 201
    found = client.get("/v1/users", params={"q": "car"}, headers=admin).json()
    assert [u["externalId"] for u in found["data"]] == ["carol"]


def test_every_list_is_a_page(platform: Platform, callers: Callers) -> None:
    client, admin = platform.client, callers.tenant.admin_headers
    contracts = client.get("/v1/tenants/me/contracts", headers=admin).json()
    assert contracts["meta"] == {"page": 1, "limit": 50, "total": 2}
    assert [c["environment"] for c in contracts["data"]] == ["test", "live"]
    second = client.get("/v1/tenants/me/contracts", params={"limit": 1, "page": 2}, headers=admin).json()
    assert [c["environment"] for c in second["data"]] == ["live"] and second["meta"]["total"] == 2


def stable(tenant: Json) -> Json:
    """A tenant without its environments' deployment status, which the worker moves on by itself."""
    return {**tenant, "environments": [{**e, "status": None} for e in tenant["environments"]]}


def test_operator_lists_tenants(platform: Platform, callers: Callers) -> None:
    client, operator = platform.client, platform.operator()
    other = create_tenant(platform, "Other")
    listed = client.get("/v1/tenants", params={"limit": 200}, headers=operator).json()
    assert listed["meta"]["total"] >= 2 and len(listed["data"]) == min(listed["meta"]["total"], 200)
    found = client.get("/v1/tenants", params={"slug": other.slug}, headers=operator).json()
    mine = client.get("/v1/tenants/me", headers=other.admin_headers).json()
    assert found["meta"]["total"] == 1 and stable(found["data"][0]) == stable(mine)
    first = client.get("/v1/tenants", params={"limit": 1}, headers=operator).json()
    assert len(first["data"]) == 1 and first["meta"]["total"] == listed["meta"]["total"]
    for kind in ("admin session", "API key", "project key", "nothing"):
        response = client.get("/v1/tenants", headers=callers.by_kind[kind])
        assert response.status_code in (401, 403), (kind, response.text)
