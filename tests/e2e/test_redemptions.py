"""Redemptions through the HTTP API: offers, a managed-wallet user's exchange (burn and mint in one
transaction through the exchange router), a catalog redeem fulfilled by its partner, the stock taken
exactly once under concurrency, a failed exchange that gives its stock back and moves nothing, and bad
input refused with a code and no effect."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from backend.auth.credentials import AccessClaims, issue_access_token
from backend.runtime import current
from tests.e2e.test_relay import Shop, mint, open_shop, settled
from tests.platform import Platform, bearer, wait_for


def user_headers(platform: Platform, shop: Shop, user_id: str) -> dict[str, str]:
    """A managed-wallet user's session. (Sign-in exists for wallet holders only, by SIWE; an app that
    keeps its users' wallets signs them in its own way, so the test issues the session directly.)"""
    key = platform.env["PERS_JWT_SECRET"].encode() if platform.env else current().settings.secret_jwt_key()
    claims = AccessClaims(
        "user",
        uuid.UUID(user_id),
        uuid.UUID(shop.tenant.id),
        "test",
        (),
        datetime.now(UTC) + timedelta(minutes=15),
        uuid.uuid4(),
    )
    return bearer(issue_access_token(key, claims))


def member(platform: Platform, shop: Shop, credits: int) -> dict[str, Any]:
    """A managed-wallet user holding `credits` (mined)."""
    body = {"externalId": f"member-{uuid.uuid4().hex[:10]}"}
    user: dict[str, Any] = platform.client.post("/v1/users", json=body, headers=shop.key).json()
    if credits:
        assert (
            settled(platform, shop.key, mint(platform, shop, user["walletAddress"], str(credits))["id"])[
                "status"
            ]
            == "mined"
        )
    return user


def offer(platform: Platform, shop: Shop, **fields: Any) -> dict[str, Any]:
    body = {
        "kind": "exchange",
        "name": "Coffee for points",
        "businessId": shop.business_id,
        "costTokenId": shop.credit_id,
        "costAmount": "30",
        "rewardTokenId": shop.reward_id,
        "rewardAmount": "1",
        **fields,
    }
    answer = platform.client.post("/v1/redemptions", json=body, headers=shop.tenant.admin_headers)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def redeem(platform: Platform, headers: dict[str, str], redemption_id: str) -> Any:
    return platform.client.post(
        "/v1/redemptions/redeems", json={"redemptionId": redemption_id}, headers=headers
    )


def finished(platform: Platform, headers: dict[str, str], redeem_id: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(
        lambda: next(
            r
            for r in platform.client.get(
                "/v1/redemptions/redeems/me", headers=headers, params={"limit": 200}
            ).json()["data"]
            if r["id"] == redeem_id
        ),
        lambda r: r["status"] in ("COMPLETED", "FAILED"),
        f"redeem {redeem_id}",
    )
    return found


def reward_chain_id(platform: Platform, shop: Shop) -> int:
    token = platform.client.get(f"/v1/tokens/{shop.reward_id}", headers=shop.tenant.with_project()).json()
    return int(token["chainTokenId"])


def test_an_exchange_by_a_managed_wallet_user_burns_and_mints_in_one_transaction(platform: Platform) -> None:
    shop = open_shop(platform, "Redeem")
    user = member(platform, shop, 100)
    headers = user_headers(platform, shop, user["id"])
    coffee = offer(platform, shop, stock=3, perUserLimit=2)
    answer = redeem(platform, headers, coffee["id"])
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "PENDING"
    done = finished(platform, headers, answer.json()["id"])
    assert done["status"] == "COMPLETED", done
    wallet = user["walletAddress"]
    assert shop.credit.functions.balanceOf(wallet).call() == 70
    assert shop.rewards.functions.balanceOf(wallet, reward_chain_id(platform, shop)).call() == 1
    admin = shop.tenant.admin_headers
    burn = platform.client.get(f"/v1/transactions/{done['burnOperationId']}", headers=admin).json()
    minted = platform.client.get(f"/v1/transactions/{done['mintOperationId']}", headers=admin).json()
    assert (burn["type"], burn["status"], minted["type"], minted["status"]) == (
        "burn",
        "mined",
        "mint",
        "mined",
    )
    assert burn["txHash"] == minted["txHash"]  # one transaction
    listed = platform.client.get(f"/v1/redemptions/{coffee['id']}", headers=admin).json()
    assert listed["stockRemaining"] == 2
    # The admin and the signing business see the redeem; the limit of two per user holds.
    assert platform.client.get("/v1/redemptions/redeems", headers=shop.key).json()["meta"]["total"] == 1
    assert redeem(platform, headers, coffee["id"]).status_code == 202
    over = redeem(platform, headers, coffee["id"])
    assert (over.status_code, over.json()["error"]["code"]) == (409, "per_user_limit_reached")


def test_twenty_simultaneous_redeems_of_five_in_stock(production_platform: Platform) -> None:
    platform = production_platform
    shop = open_shop(platform, "Rush")
    users = [
        platform.client.post("/v1/users", json={"externalId": f"rush-{i}"}, headers=shop.key).json()
        for i in range(20)
    ]
    batch = [
        {"type": "mint", "tokenId": shop.credit_id, "to": u["walletAddress"], "amount": "50"} for u in users
    ]
    minted = platform.client.post("/v1/transactions/batch", json={"operations": batch}, headers=shop.key)
    assert minted.status_code == 202, minted.text
    for item in minted.json()["data"]:
        assert settled(platform, shop.key, item["transaction"]["id"])["status"] == "mined"
    coffee = offer(platform, shop, stock=5)
    sessions = [user_headers(platform, shop, u["id"]) for u in users]
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda h: redeem(platform, h, coffee["id"]), sessions))
    accepted = [(h, a.json()["id"]) for h, a in zip(sessions, answers, strict=True) if a.status_code == 202]
    refused = [a for a in answers if a.status_code != 202]
    assert len(accepted) == 5, [a.text for a in answers]
    assert {(a.status_code, a.json()["error"]["code"]) for a in refused} == {(409, "out_of_stock")}
    assert all(finished(platform, h, rid)["status"] == "COMPLETED" for h, rid in accepted)
    reward_id = reward_chain_id(platform, shop)
    held = sum(shop.rewards.functions.balanceOf(u["walletAddress"], reward_id).call() for u in users)
    spent = sum(50 - shop.credit.functions.balanceOf(u["walletAddress"]).call() for u in users)
    assert (held, spent) == (5, 5 * 30)
    stock = platform.client.get(f"/v1/redemptions/{coffee['id']}", headers=shop.tenant.admin_headers).json()
    assert stock["stockRemaining"] == 0
