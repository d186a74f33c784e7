"""Status tiers through the HTTP API: the rules created, listed, changed and deleted by the tenant's
admin, and bad input refused with a code and no effect."""

from typing import Any

from tests.e2e.test_relay import Shop, open_shop
from tests.platform import Platform, create_tenant, wait_for


def status_token(platform: Platform, shop: Shop, symbol: str = "GOLD") -> str:
    body = {"kind": "status", "name": f"{symbol} member", "symbol": symbol}
    answer = platform.client.post("/v1/tokens", json=body, headers=shop.tenant.admin_headers)
    assert answer.status_code == 202, answer.text
    token_id: str = answer.json()["id"]
    wait_for(
        lambda: platform.client.get(f"/v1/tokens/{token_id}", headers=shop.tenant.with_project()).json(),
        lambda t: t["status"] == "active",
        "status token activation",
    )
    return token_id


def tier_body(shop: Shop, status_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": "Gold",
        "statusTokenId": status_id,
        "creditTokenId": shop.credit_id,
        "threshold": "500",
        **fields,
    }


def create_tier(platform: Platform, shop: Shop, status_id: str, **fields: Any) -> dict[str, Any]:
    answer = platform.client.post(
        "/v1/status-tiers", json=tier_body(shop, status_id, **fields), headers=shop.tenant.admin_headers
    )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def test_tiers_are_created_listed_changed_and_deleted(embedded_platform: Platform) -> None:
    platform, client = embedded_platform, embedded_platform.client
    shop = open_shop(platform, "Tiers")
    admin = shop.tenant.admin_headers
    gold = status_token(platform, shop)
    tier = create_tier(platform, shop, gold, validForDays=30)
    assert {k: tier[k] for k in ("name", "statusTokenId", "creditTokenId", "threshold", "validForDays")} == {
        "name": "Gold",
        "statusTokenId": gold,
        "creditTokenId": shop.credit_id,
        "threshold": "500",
        "validForDays": 30,
    }
    assert tier["active"] is True and tier["createdAt"]
    listed = client.get("/v1/status-tiers", headers=shop.key).json()  # a business reads the rules
    assert [t["id"] for t in listed["data"]] == [tier["id"]] and listed["meta"]["total"] == 1
    path = f"/v1/status-tiers/{tier['id']}"
    assert client.get(path, headers=admin).json() == tier
    changed = client.patch(path, json={"threshold": "600", "active": False}, headers=admin).json()
    assert (changed["threshold"], changed["active"], changed["validForDays"]) == ("600", False, 30)
    members = client.get(f"{path}/members", headers=admin).json()
    assert members == {"data": [], "meta": {"page": 1, "limit": 50, "total": 0}}
    assert client.delete(path, headers=admin).status_code == 204
    assert client.get(path, headers=admin).json()["error"]["code"] == "not_found"


def test_bad_tiers_are_refused_with_a_code_and_create_nothing(embedded_platform: Platform) -> None:
    platform, client = embedded_platform, embedded_platform.client
    shop = open_shop(platform, "BadTiers")
    admin = shop.tenant.admin_headers
    gold = status_token(platform, shop)
    other = open_shop(platform, "Foreign")
    foreign_status = status_token(platform, other, "FGOLD")
    cases = [
        (tier_body(shop, shop.credit_id), 422, "invalid_token_kind"),  # a credit as the status
        (tier_body(shop, gold, creditTokenId=shop.reward_id), 422, "invalid_token_kind"),
        (tier_body(shop, gold, creditTokenId=gold), 422, "invalid_token_kind"),
        (tier_body(shop, foreign_status), 404, "token_not_found"),  # another tenant's token
        (tier_body(shop, gold, creditTokenId=other.credit_id), 404, "token_not_found"),
        (tier_body(shop, gold, threshold="0"), 422, "invalid_amount"),
        (tier_body(shop, gold, threshold="-5"), 422, "invalid_amount"),
        (tier_body(shop, gold, threshold="lots"), 422, "invalid_amount"),
        (tier_body(shop, gold, threshold=500), 422, "amount_must_be_string"),
        (tier_body(shop, gold, threshold=str(2**256)), 422, "invalid_amount"),
        (tier_body(shop, gold, validForDays=0), 422, "invalid_value"),
        (tier_body(shop, gold, statusTokenId="not-a-uuid"), 422, "invalid_type"),
        (tier_body(shop, gold, level=3), 422, "unknown_field"),
        ({"name": "Gold", "statusTokenId": gold}, 422, "missing_field"),
    ]
    for body, status, code in cases:
        answer = client.post("/v1/status-tiers", json=body, headers=admin)
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), (body, answer.text)
    assert client.get("/v1/status-tiers", headers=admin).json()["meta"]["total"] == 0
    # Only the admin writes; unknown ids are not found.
    refused = client.post("/v1/status-tiers", json=tier_body(shop, gold), headers=shop.key)
    assert refused.status_code == 403
    tier = create_tier(platform, shop, gold)
    unknown = "/v1/status-tiers/00000000-0000-0000-0000-000000000000"
    for method in ("GET", "PATCH", "DELETE"):
        answer = client.request(method, unknown, json={} if method == "PATCH" else None, headers=admin)
        assert (answer.status_code, answer.json()["error"]["code"]) == (404, "not_found"), method
    assert client.get(f"{unknown}/members", headers=admin).status_code == 404
    assert client.get("/v1/status-tiers/nope", headers=admin).status_code == 404
    nulled = client.patch(f"/v1/status-tiers/{tier['id']}", json={"threshold": None}, headers=admin)
    assert (nulled.status_code, nulled.json()["error"]["code"]) == (422, "invalid_value")
    unknown_user = client.get("/v1/users/00000000-0000-0000-0000-000000000000/status", headers=admin)
    assert unknown_user.status_code == 404
    assert client.get(f"/v1/status-tiers/{tier['id']}", headers=admin).json()["threshold"] == "500"
    # Another tenant's admin does not see the tier.
    stranger = create_tenant(platform, "Stranger")
    assert client.get(f"/v1/status-tiers/{tier['id']}", headers=stranger.admin_headers).status_code == 404
