"""Redemptions through the HTTP API: offers, a managed-wallet user's exchange (burn and mint in one
transaction through the exchange router), a catalog redeem fulfilled by its partner, the stock taken
exactly once under concurrency, a failed exchange that gives its stock back and moves nothing, and bad
input refused with a code and no effect."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from eth_account import Account

from backend.auth.credentials import AccessClaims, issue_access_token
from backend.runtime import current
from tests.e2e.test_relay import Shop, mint, open_shop, settled
from tests.platform import Platform, bearer, siwe_sign_in, wait_for


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


def add_token(platform: Platform, shop: Shop, body: dict[str, str]) -> dict[str, Any]:
    client = platform.client
    created = client.post("/v1/tokens", json=body, headers=shop.tenant.admin_headers)
    assert created.status_code == 202, created.text
    token: dict[str, Any] = wait_for(
        lambda: client.get(f"/v1/tokens/{created.json()['id']}", headers=shop.tenant.admin_headers).json(),
        lambda t: t["status"] == "active",
        "token activation",
    )
    return token


def test_a_failed_exchange_moves_nothing_and_gives_its_stock_back(embedded_platform: Platform) -> None:
    """The reward mint fails on chain (the capped credit's supply), so the burn is undone with it."""
    platform = embedded_platform
    shop = open_shop(platform, "Capped")
    capped = add_token(
        platform, shop, {"kind": "credit", "name": "Capped", "symbol": "CAP", "maxSupply": "10"}
    )
    wait_for(
        lambda: platform.client.post(
            "/v1/transactions",
            json={"type": "mint", "tokenId": capped["id"], "to": shop.signer, "amount": "1"},
            headers=shop.key,
        ),
        lambda answer: answer.status_code == 202,
        "the signer's role on the new token",
    )
    admin = shop.tenant.admin_headers
    hook = {"url": "http://127.0.0.1:9/hooks", "eventTypes": ["redeem.completed", "redeem.failed"]}
    webhook = platform.client.post("/v1/webhooks", json=hook, headers=admin).json()
    user = member(platform, shop, 100)
    headers = user_headers(platform, shop, user["id"])
    deal = offer(platform, shop, rewardTokenId=capped["id"], rewardAmount="6", costAmount="5", stock=2)
    first = finished(platform, headers, redeem(platform, headers, deal["id"]).json()["id"])
    assert first["status"] == "COMPLETED", first
    second = finished(platform, headers, redeem(platform, headers, deal["id"]).json()["id"])
    assert (second["status"], second["errorCode"]) == ("FAILED", "cap_exceeded"), second
    assert shop.credit.functions.balanceOf(user["walletAddress"]).call() == 95  # the second burn undone
    burn = platform.client.get(f"/v1/transactions/{second['burnOperationId']}", headers=admin).json()
    assert (burn["status"], burn["errorCode"]) == ("failed", "cap_exceeded")
    stock = platform.client.get(f"/v1/redemptions/{deal['id']}", headers=admin).json()
    assert stock["stockRemaining"] == 1
    log = platform.client.get(f"/v1/webhooks/{webhook['id']}/deliveries", headers=admin).json()["data"]
    assert sorted(d["eventType"] for d in log) == ["redeem.completed", "redeem.failed"]


def test_a_catalog_redeem_is_burnt_then_fulfilled_by_its_partner(embedded_platform: Platform) -> None:
    platform = embedded_platform
    shop = open_shop(platform, "Catalog")
    user = member(platform, shop, 50)
    headers = user_headers(platform, shop, user["id"])
    mug = offer(platform, shop, kind="catalog", rewardTokenId=None, rewardAmount=None, costAmount="20")
    done = finished(platform, headers, redeem(platform, headers, mug["id"]).json()["id"])
    assert (done["status"], done["mintOperationId"], done["fulfilledAt"]) == ("COMPLETED", None, None)
    assert shop.credit.functions.balanceOf(user["walletAddress"]).call() == 30
    client, admin = platform.client, shop.tenant.admin_headers
    other = client.post("/v1/businesses", json={"name": "Other"}, headers=admin).json()
    key = client.post(f"/v1/businesses/{other['id']}/api-keys", json={"name": "k"}, headers=admin).json()
    stranger = client.post(f"/v1/redemptions/redeems/{done['id']}/fulfil", headers={"X-API-Key": key["key"]})
    assert stranger.status_code == 404, stranger.text
    fulfilled = client.post(f"/v1/redemptions/redeems/{done['id']}/fulfil", headers=shop.key)
    assert fulfilled.status_code == 200 and fulfilled.json()["fulfilledAt"] is not None, fulfilled.text
    again = client.post(f"/v1/redemptions/redeems/{done['id']}/fulfil", headers=shop.key)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "already_fulfilled")


def test_bad_input_is_refused_with_a_code_and_no_effect(embedded_platform: Platform) -> None:
    platform = embedded_platform
    client = platform.client
    shop = open_shop(platform, "Strict")
    admin = shop.tenant.admin_headers
    level = add_token(platform, shop, {"kind": "status", "name": "Gold", "symbol": "GOLD"})
    base = {
        "kind": "exchange",
        "name": "Coffee",
        "businessId": shop.business_id,
        "costTokenId": shop.credit_id,
        "costAmount": "30",
        "rewardTokenId": shop.reward_id,
        "rewardAmount": "1",
    }
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"rewardTokenId": None}, 422, "missing_field"),
        ({"kind": "catalog"}, 422, "invalid_value"),
        ({"costTokenId": str(uuid.uuid4())}, 404, "token_not_found"),
        ({"businessId": str(uuid.uuid4())}, 404, "business_not_found"),
        ({"costTokenId": level["id"]}, 422, "token_locked"),
        ({"requiredStatusTokenId": shop.reward_id}, 422, "invalid_value"),
        ({"validFrom": "2030-01-02T00:00:00Z", "validUntil": "2030-01-01T00:00:00Z"}, 422, "invalid_window"),
        ({"costAmount": "0"}, 422, "amount_out_of_range"),
        ({"surprise": 1}, 422, "unknown_field"),
    ]
    for change, status, code in cases:
        answer = client.post("/v1/redemptions", json={**base, **change}, headers=admin)
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), (change, answer.text)
    assert client.post("/v1/redemptions", json=base, headers=shop.key).status_code == 403
    assert client.get("/v1/redemptions", headers=admin).json()["meta"]["total"] == 0

    user = member(platform, shop, 40)
    headers = user_headers(platform, shop, user["id"])
    coffee = offer(platform, shop, stock=5)
    gated = offer(platform, shop, requiredStatusTokenId=level["id"])
    dear = offer(platform, shop, costAmount="41")
    later = offer(platform, shop, validFrom="2099-01-01T00:00:00Z")
    ended = offer(platform, shop, validUntil="2000-01-01T00:00:00Z")
    off = offer(platform, shop)
    assert (
        client.patch(f"/v1/redemptions/{off['id']}", json={"active": False}, headers=admin).status_code == 200
    )
    refusals = [
        (str(uuid.uuid4()), 404, "not_found"),
        (gated["id"], 409, "status_required"),
        (dear["id"], 409, "insufficient_balance"),
        (later["id"], 409, "redemption_not_started"),
        (ended["id"], 409, "redemption_ended"),
        (off["id"], 409, "redemption_inactive"),
    ]
    for redemption_id, status, code in refusals:
        answer = redeem(platform, headers, redemption_id)
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), answer.text
    assert redeem(platform, shop.key, coffee["id"]).status_code == 403  # a business redeems for nobody
    answer = client.post("/v1/redemptions/redeems", json={"redemptionId": "nope"}, headers=headers)
    assert answer.status_code == 422
    # Nothing was taken or queued by any of them.
    assert client.get(f"/v1/redemptions/{coffee['id']}", headers=admin).json()["stockRemaining"] == 5
    assert client.get("/v1/redemptions/redeems", headers=admin).json()["meta"]["total"] == 0
    burns = client.get("/v1/transactions", headers=admin, params={"type": "burn"}).json()
    assert burns["meta"]["total"] == 0
    # Stock cannot go below what was taken.
    assert redeem(platform, headers, coffee["id"]).status_code == 202
    shrink = client.patch(f"/v1/redemptions/{coffee['id']}", json={"stock": 0}, headers=admin)
    assert (shrink.status_code, shrink.json()["error"]["code"]) == (409, "stock_below_taken")
    # Holding the status opens the gated offer.
    gold = {"type": "mint", "tokenId": level["id"], "userId": user["id"], "amount": "1"}
    granted = client.post("/v1/transactions", json=gold, headers=shop.key).json()
    assert settled(platform, shop.key, granted["id"])["status"] == "mined"
    cheap = offer(platform, shop, requiredStatusTokenId=level["id"], costAmount="5")
    assert redeem(platform, headers, cheap["id"]).status_code == 202


def test_an_own_wallet_user_signs_the_prepared_burn_leg(embedded_platform: Platform) -> None:
    platform = embedded_platform
    client = platform.client
    shop = open_shop(platform, "Own")
    wallet = Account.create()
    pair = siwe_sign_in(platform, shop.tenant, wallet).json()
    headers = bearer(pair["accessToken"])
    assert settled(platform, shop.key, mint(platform, shop, wallet.address, "100")["id"])["status"] == "mined"
    coffee = offer(platform, shop, stock=2)
    unsigned = redeem(platform, headers, coffee["id"])
    assert (unsigned.status_code, unsigned.json()["error"]["code"]) == (422, "signature_required")
    prepared = client.post(
        "/v1/redemptions/redeems/prepare", json={"redemptionId": coffee["id"]}, headers=headers
    )
    assert prepared.status_code == 200, prepared.text
    leg = prepared.json()
    assert leg["typedData"]["primaryType"] == "ExchangeLeg" and leg["signer"] == wallet.address
    signature = Account.sign_typed_data(wallet.key, full_message=leg["typedData"]).signature.hex()
    body = {
        "redemptionId": coffee["id"],
        "ref": leg["ref"],
        "deadline": str(leg["deadline"]),
        "exchangeRef": leg["exchangeRef"],
    }
    # Someone else's signature over the same leg is refused, and takes nothing.
    forged = Account.sign_typed_data(Account.create().key, full_message=leg["typedData"]).signature.hex()
    answer = client.post(
        "/v1/redemptions/redeems", json={**body, "signature": "0x" + forged}, headers=headers
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (422, "invalid_signature")
    answer = client.post(
        "/v1/redemptions/redeems", json={**body, "signature": "0x" + signature}, headers=headers
    )
    assert answer.status_code == 202, answer.text
    done = finished(platform, headers, answer.json()["id"])
    assert done["status"] == "COMPLETED", done
    assert shop.credit.functions.balanceOf(wallet.address).call() == 70
    assert shop.rewards.functions.balanceOf(wallet.address, reward_chain_id(platform, shop)).call() == 1
    again = client.post(
        "/v1/redemptions/redeems", json={**body, "signature": "0x" + signature}, headers=headers
    )
    assert (again.status_code, again.json()["error"]["code"]) == (409, "ref_used")
    assert client.get(f"/v1/redemptions/{coffee['id']}", headers=headers).json()["stockRemaining"] == 1
