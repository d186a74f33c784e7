"""Status tiers through the HTTP API: the rules created, listed, changed and deleted by the tenant's
admin; a status granted once when a user's lifetime-earned credits (not their balance) cross the
threshold as the chain confirms their mints, and only once however often or concurrently it is
evaluated; burnt when it expires, and earned again; an exchange gated by it; bad input refused with a
code and no effect."""

import threading
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import update

from backend.kit.db import make_engine, make_sessionmaker, unit_of_work, utcnow
from backend.runtime import current
from backend.settings import Settings
from backend.tiers import earnings, grants, tasks
from backend.tiers.models import StatusGrant
from tests.e2e.test_confirmations import indexer
from tests.e2e.test_redemptions import offer, redeem, user_headers
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


def chain_id(platform: Platform, shop: Shop, token_id: str) -> int:
    token = platform.client.get(f"/v1/tokens/{token_id}", headers=shop.tenant.with_project()).json()
    return int(token["chainTokenId"])


def confirmed(
    platform: Platform, shop: Shop, headers: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    """An operation of the shop's credit, sent and waited for until the indexer confirms it."""
    answer = platform.client.post(
        "/v1/transactions", json={"tokenId": shop.credit_id, **body}, headers=headers
    )
    assert answer.status_code == 202, answer.text
    admin = shop.tenant.admin_headers
    found: dict[str, Any] = wait_for(
        lambda: platform.client.get(f"/v1/transactions/{answer.json()['id']}", headers=admin).json(),
        lambda op: op["status"] in ("confirmed", "failed"),
        f"{body['type']} confirmed",
    )
    assert found["status"] == "confirmed", found
    return found


def earn(platform: Platform, shop: Shop, user: dict[str, Any], amount: int) -> None:
    confirmed(platform, shop, shop.key, {"type": "mint", "userId": user["id"], "amount": str(amount)})


def status_of(platform: Platform, shop: Shop, user: dict[str, Any]) -> list[dict[str, Any]]:
    answer = platform.client.get(f"/v1/users/{user['id']}/status", headers=shop.tenant.admin_headers)
    assert answer.status_code == 200, answer.text
    data: list[dict[str, Any]] = answer.json()["data"]
    return data


def settled_status(platform: Platform, shop: Shop, user: dict[str, Any], state: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = wait_for(
        lambda: status_of(platform, shop, user),
        lambda ms: len(ms) == 1 and ms[0]["state"] == state,
        f"the status {state}",
    )
    return found[0]


def mints_of(platform: Platform, shop: Shop, token_id: str) -> list[dict[str, Any]]:
    answer = platform.client.get(
        "/v1/transactions", params={"tokenId": token_id, "limit": 200}, headers=shop.tenant.admin_headers
    )
    return [op for op in answer.json()["data"] if op["type"] == "mint"]


def test_lifetime_earnings_crossing_the_threshold_grant_the_status_once(
    production_platform: Platform,
) -> None:
    platform, client = production_platform, production_platform.client
    shop = open_shop(platform, "Lifetime")
    gold = status_token(platform, shop)
    tier = create_tier(platform, shop, gold)
    hook = {"url": "http://127.0.0.1:9/hooks", "eventTypes": ["status.granted"]}
    webhook = client.post("/v1/webhooks", json=hook, headers=shop.tenant.admin_headers).json()
    user = client.post("/v1/users", json={"externalId": "lifetime"}, headers=shop.key).json()
    session = user_headers(platform, shop, user["id"])
    lounge = offer(platform, shop, requiredStatusTokenId=gold, costAmount="10")
    gold_chain_id = chain_id(platform, shop, gold)
    with indexer(platform):
        earn(platform, shop, user, 300)
        earn(platform, shop, user, 199)
        # 499 earned; spending or giving credits away never lowers what was earned.
        away = {"type": "transfer", "to": shop.signer, "amount": "100"}
        confirmed(platform, shop, session, away)
        assert status_of(platform, shop, user) == []
        refused = redeem(platform, session, lounge["id"])
        assert (refused.status_code, refused.json()["error"]["code"]) == (409, "status_required")
        earn(platform, shop, user, 1)  # 500 earned, 400 held
        granted = settled_status(platform, shop, user, "granted")
        assert (granted["tierId"], granted["lifetimeEarned"], granted["expiresAt"]) == (
            tier["id"],
            "500",
            None,
        )
        assert shop.rewards.functions.balanceOf(user["walletAddress"], gold_chain_id).call() == 1
        # Burning credits, or earning more, changes nothing: one grant.
        confirmed(platform, shop, session, {"type": "burn", "amount": "50"})
        earn(platform, shop, user, 600)
        again = settled_status(platform, shop, user, "granted")
        assert again["lifetimeEarned"] == "1100" and again["operationId"] == granted["operationId"]
    assert shop.rewards.functions.balanceOf(user["walletAddress"], gold_chain_id).call() == 1
    assert len(mints_of(platform, shop, gold)) == 1
    members = client.get(f"/v1/status-tiers/{tier['id']}/members", headers=shop.tenant.admin_headers).json()
    assert [m["userId"] for m in members["data"]] == [user["id"]]
    mine = client.get("/v1/users/me/status", headers=session).json()["data"]
    assert [(m["name"], m["state"]) for m in mine] == [("Gold", "granted")]
    deliveries = client.get(f"/v1/webhooks/{webhook['id']}/deliveries", headers=shop.tenant.admin_headers)
    assert [d["eventType"] for d in deliveries.json()["data"]] == ["status.granted"]
    # The exchange gated by the status now goes through, on the balance the grant produced.
    done = redeem(platform, session, lounge["id"])
    assert done.status_code == 202, done.text
    assert (
        wait_for(
            lambda: client.get("/v1/redemptions/redeems/me", headers=session).json()["data"][0],
            lambda r: r["status"] in ("COMPLETED", "FAILED"),
            "the gated redeem",
        )["status"]
        == "COMPLETED"
    )
    assert (
        client.delete(f"/v1/status-tiers/{tier['id']}", headers=shop.tenant.admin_headers).json()["error"][
            "code"
        ]
        == "tier_has_members"
    )


def test_concurrent_evaluations_grant_once(production_platform: Platform) -> None:
    """A tier created after the user earned: two evaluations at once (two workers' confirmation
    batches) make one membership and one mint."""
    platform, client = production_platform, production_platform.client
    assert platform.env is not None
    shop = open_shop(platform, "Twice")
    silver = status_token(platform, shop, "SILVER")
    user = client.post("/v1/users", json={"externalId": "twice"}, headers=shop.key).json()
    with indexer(platform):
        earn(platform, shop, user, 150)
    tier = create_tier(platform, shop, silver, threshold="100")
    settings = Settings(data_dir=Path(platform.env["PERS_DATA_DIR"]), network="local")
    engine = make_engine(platform.env["PERS_DATABASE_URL"])
    sessions = make_sessionmaker(engine)
    start = threading.Barrier(2)
    totals = {(uuid.UUID(shop.credit_id), uuid.UUID(user["id"])): 150}

    def evaluate() -> None:
        start.wait()
        with unit_of_work(sessions) as session:
            earnings.evaluate(session, settings, totals)

    threads = [threading.Thread(target=evaluate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with unit_of_work(sessions) as session:  # a later evaluation, and the periodic pass, find it held
        earnings.evaluate(session, settings, totals)
        tasks.pass_once(session, settings)
    engine.dispose()
    granted = settled_status(platform, shop, user, "granted")
    assert granted["tierId"] == tier["id"]
    assert len(mints_of(platform, shop, silver)) == 1
    assert (
        shop.rewards.functions.balanceOf(user["walletAddress"], chain_id(platform, shop, silver)).call() == 1
    )


def test_an_expired_status_is_burnt_and_earned_again(embedded_platform: Platform) -> None:
    platform, client = embedded_platform, embedded_platform.client
    shop = open_shop(platform, "Expiry")
    gold = status_token(platform, shop)
    create_tier(platform, shop, gold, threshold="100", validForDays=30)
    hook = {"url": "http://127.0.0.1:9/hooks", "eventTypes": ["status.revoked"]}
    webhook = client.post("/v1/webhooks", json=hook, headers=shop.tenant.admin_headers).json()
    user = client.post("/v1/users", json={"externalId": "expiry"}, headers=shop.key).json()
    gold_chain_id = chain_id(platform, shop, gold)
    runtime = current()

    def expire_and_pass() -> None:
        with unit_of_work(runtime.sessions) as session:
            mine = StatusGrant.user_id == uuid.UUID(user["id"])
            session.execute(update(StatusGrant).where(mine).values(expires_at=utcnow()))
            tasks.pass_once(session, runtime.settings)

    with indexer(platform):
        earn(platform, shop, user, 100)
        granted = settled_status(platform, shop, user, "granted")
        assert granted["expiresAt"] is not None
        expire_and_pass()
        revoked = settled_status(platform, shop, user, "revoked")
        assert revoked["operationId"] != granted["operationId"]
        assert shop.rewards.functions.balanceOf(user["walletAddress"], gold_chain_id).call() == 0
        # Earned again with 100 more credits earned after the revoke.
        earn(platform, shop, user, 99)
        assert settled_status(platform, shop, user, "revoked")["lifetimeEarned"] == "199"
        earn(platform, shop, user, 1)
        settled_status(platform, shop, user, "granted")
    assert shop.rewards.functions.balanceOf(user["walletAddress"], gold_chain_id).call() == 1
    deliveries = client.get(f"/v1/webhooks/{webhook['id']}/deliveries", headers=shop.tenant.admin_headers)
    assert [d["eventType"] for d in deliveries.json()["data"]] == ["status.revoked"]


def test_a_tier_created_after_users_earned_grants_them_at_the_next_pass(embedded_platform: Platform) -> None:
    platform, client = embedded_platform, embedded_platform.client
    shop = open_shop(platform, "Later")
    gold = status_token(platform, shop)
    rich, poor = (client.post("/v1/users", json={"externalId": n}, headers=shop.key).json() for n in "rp")
    with indexer(platform):
        earn(platform, shop, rich, 120)
        earn(platform, shop, poor, 80)
    tier = create_tier(platform, shop, gold, threshold="100")
    runtime = current()
    with unit_of_work(runtime.sessions) as session:
        tasks.pass_once(session, runtime.settings)
    assert settled_status(platform, shop, rich, "granted")["lifetimeEarned"] == "120"
    assert status_of(platform, shop, poor) == []
    # A lowered threshold admits the other one at the next pass.
    lowered = {"threshold": "80"}
    assert client.patch(
        f"/v1/status-tiers/{tier['id']}", json=lowered, headers=shop.tenant.admin_headers
    ).is_success
    with unit_of_work(runtime.sessions) as session:
        tasks.pass_once(session, runtime.settings)
    settled_status(platform, shop, poor, "granted")
    assert len(mints_of(platform, shop, gold)) == 2


def test_a_grant_without_a_signer_fails_and_is_retried(embedded_platform: Platform) -> None:
    """The tenant's only business suspended: the grant is `failed` (`no_signer`), and the pass grants it
    once a signer is back."""
    platform, client = embedded_platform, embedded_platform.client
    shop = open_shop(platform, "Unsigned")
    admin = shop.tenant.admin_headers
    gold = status_token(platform, shop)
    user = client.post("/v1/users", json={"externalId": "unsigned"}, headers=shop.key).json()
    with indexer(platform):
        earn(platform, shop, user, 100)
    business = f"/v1/businesses/{shop.business_id}"
    assert client.patch(business, json={"status": "suspended"}, headers=admin).status_code == 200
    create_tier(platform, shop, gold, threshold="100")
    runtime = current()
    with unit_of_work(runtime.sessions) as session:
        tasks.pass_once(session, runtime.settings)
    failed = settled_status(platform, shop, user, "failed")
    assert (failed["errorCode"], failed["operationId"]) == ("no_signer", None)
    assert client.patch(business, json={"status": "active"}, headers=admin).status_code == 200
    role = shop.rewards.functions.MINTER_ROLE().call()
    wait_for(lambda: shop.rewards.functions.hasRole(role, shop.signer).call(), bool, "the minter role back")
    with unit_of_work(runtime.sessions) as session:
        mine = StatusGrant.user_id == uuid.UUID(user["id"])
        session.execute(update(StatusGrant).where(mine).values(changed_at=utcnow() - grants.RETRY_AFTER))
        tasks.pass_once(session, runtime.settings)
    assert settled_status(platform, shop, user, "granted")["errorCode"] is None
    assert shop.rewards.functions.balanceOf(user["walletAddress"], chain_id(platform, shop, gold)).call() == 1
