"""Claims under concurrency (issue 11's must-show), on the production processes (Postgres under READ
COMMITTED, the broker, anvil): simultaneous requests cannot pass a per-user limit or a budget twice,
and every accepted claim ends `completed` with its tokens on chain."""

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.e2e.test_campaigns import campaign_of, member, ok
from tests.e2e.test_relay import Shop, open_shop
from tests.platform import Platform, wait_for


def simultaneously(platform: Platform, shop: Shop, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """POSTs every claim at once: each thread waits at a barrier, then sends."""
    barrier = threading.Barrier(len(bodies))
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    base = str(platform.client.base_url)
    with httpx.Client(base_url=base, timeout=120, limits=limits) as client:

        def claim(body: dict[str, Any]) -> httpx.Response:
            barrier.wait()
            return client.post("/v1/campaigns/claims", json=body, headers=shop.key)

        with ThreadPoolExecutor(len(bodies)) as pool:
            return list(pool.map(claim, bodies))


def all_completed(platform: Platform, shop: Shop, campaign_id: str, count: int) -> list[dict[str, Any]]:
    params = {"campaignId": campaign_id, "limit": 200}
    found: list[dict[str, Any]] = wait_for(
        lambda: ok(platform.client.get("/v1/campaigns/claims", params=params, headers=shop.key))["data"],
        lambda claims: len(claims) == count and all(c["status"] != "pending" for c in claims),
        "the claims completing",
    )
    return found


def test_fifty_simultaneous_claims_of_one_user_make_one_claim(production_platform: Platform) -> None:
    platform = production_platform
    shop = open_shop(platform, "OncePerUser")
    campaign = campaign_of(platform, shop, amount="7", maxPerUser=1)
    user = member(platform, shop)
    answers = simultaneously(platform, shop, [{"campaignId": campaign["id"], "userId": user["id"]}] * 50)
    statuses = Counter(r.status_code for r in answers)
    assert statuses == {202: 1, 409: 49}, statuses
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 409} == {"max_per_user_reached"}
    [claim] = all_completed(platform, shop, campaign["id"], 1)
    assert claim["status"] == "completed" and len(claim["operationIds"]) == 1
    operations = ok(platform.client.get("/v1/transactions", headers=shop.tenant.admin_headers))
    assert operations["meta"]["total"] == 1
    assert shop.credit.functions.balanceOf(user["walletAddress"]).call() == 7


def test_two_hundred_simultaneous_claims_on_a_budget_of_one_hundred(production_platform: Platform) -> None:
    platform = production_platform
    shop = open_shop(platform, "Budget")
    client, admin = platform.client, shop.tenant.admin_headers
    hook = {"url": "http://127.0.0.1:9/hooks", "eventTypes": ["campaign.budget_exhausted"]}
    webhook = ok(client.post("/v1/webhooks", json=hook, headers=admin), 201)
    campaign = campaign_of(platform, shop, amount="1", max_amount="100")
    users = [member(platform, shop) for _ in range(200)]
    answers = simultaneously(
        platform, shop, [{"campaignId": campaign["id"], "userId": u["id"]} for u in users]
    )
    statuses = Counter(r.status_code for r in answers)
    assert statuses == {202: 100, 409: 100}, statuses
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 409} == {"budget_exhausted"}
    claims = all_completed(platform, shop, campaign["id"], 100)
    assert {c["status"] for c in claims} == {"completed"}
    unit = ok(client.get(f"/v1/campaigns/{campaign['id']}", headers=admin))["tokenUnits"][0]
    assert unit["issued"] == "100"
    paid = {c["userId"] for c in claims}
    for user in users:
        expected = 1 if user["id"] in paid else 0
        assert shop.credit.functions.balanceOf(user["walletAddress"]).call() == expected, user
    deliveries = ok(client.get(f"/v1/webhooks/{webhook['id']}/deliveries", headers=admin))["data"]
    assert [d["eventType"] for d in deliveries] == ["campaign.budget_exhausted"]  # announced once
    assert uuid.UUID(deliveries[0]["eventId"])
