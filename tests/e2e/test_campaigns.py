"""Campaigns, triggers, QR sources, claims and events through the HTTP API, on `pers up`'s embedded
stack and on the production processes: claims pay on chain and follow their mints; refused input
leaves nothing behind."""

import uuid
from typing import Any

import httpx
from eth_account import Account

from tests.e2e.test_relay import Shop, open_shop
from tests.platform import Platform, bearer, siwe_sign_in, wait_for

Json = dict[str, Any]


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url}: {response.text}"
    )
    return response.json()


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


def campaign_of(
    platform: Platform, shop: Shop, amount: str = "5", max_amount: str = "1000", **trigger: Any
) -> Json:
    """An active campaign of the shop paying `amount` credits a claim, with one trigger (manual unless
    told)."""
    client, admin = platform.client, shop.tenant.admin_headers
    body = {"name": "Welcome", "businessId": shop.business_id, "tags": ["welcome"]}
    campaign = ok(client.post("/v1/campaigns", json=body, headers=admin), 201)
    unit = {"tokenId": shop.credit_id, "amount": amount, "maxAmount": max_amount}
    ok(client.post(f"/v1/campaigns/{campaign['id']}/tokens", json=unit, headers=admin), 201)
    made = ok(
        client.post(
            f"/v1/campaigns/{campaign['id']}/triggers", json={"type": "manual", **trigger}, headers=admin
        ),
        201,
    )
    ok(client.post(f"/v1/campaigns/{campaign['id']}/activate", headers=admin))
    return {**campaign, "triggerId": made["id"]}


def member(platform: Platform, shop: Shop) -> Json:
    body = {"externalId": f"m-{uuid.uuid4().hex}"}
    created: Json = ok(platform.client.post("/v1/users", json=body, headers=shop.key), 201)
    return created


def settled_claim(platform: Platform, shop: Shop, claim_id: str) -> Json:
    found: Json = wait_for(
        lambda: ok(platform.client.get(f"/v1/campaigns/claims/{claim_id}", headers=shop.key)),
        lambda c: c["status"] != "pending",
        f"claim {claim_id} settling",
    )
    return found


def test_campaign_lifecycle_tags_and_public_listing(platform: Platform) -> None:
    shop = open_shop(platform, "Lifecycle")
    client, admin, public = platform.client, shop.tenant.admin_headers, shop.tenant.with_project()
    body = {"name": "Spring", "businessId": shop.business_id, "tags": ["spring", "promo"]}
    draft = ok(client.post("/v1/campaigns", json=body, headers=admin), 201)
    assert (draft["status"], draft["tags"]) == ("draft", ["promo", "spring"])
    # No token unit yet; a draft cannot pause.
    refused(
        client.post(f"/v1/campaigns/{draft['id']}/activate", headers=admin), 409, "campaign_has_no_tokens"
    )
    refused(client.post(f"/v1/campaigns/{draft['id']}/pause", headers=admin), 409, "invalid_transition")
    refused(client.get(f"/v1/campaigns/{draft['id']}", headers=public), 404, "not_found")
    active = campaign_of(platform, shop)
    listed = ok(client.get("/v1/campaigns", headers=public))["data"]
    assert [c["id"] for c in listed] == [active["id"]]  # the public sees active campaigns only
    assert listed[0]["tokenUnits"][0]["maxAmount"] == "1000"
    everything = ok(client.get("/v1/campaigns", params={"sortBy": "name", "sortOrder": "asc"}, headers=admin))
    assert [c["name"] for c in everything["data"]] == ["Spring", "Welcome"]
    tagged = ok(client.get("/v1/campaigns", params={"tag": "spring"}, headers=admin))["data"]
    assert [c["id"] for c in tagged] == [draft["id"]]
    ok(client.put(f"/v1/campaigns/{draft['id']}/tags", json={"tags": ["autumn"]}, headers=admin))
    assert ok(client.get("/v1/campaigns/tags", headers=admin)) == ["autumn", "welcome"]
    patched = ok(
        client.patch(
            f"/v1/campaigns/{draft['id']}", json={"imageUrl": "https://x.example/a.png"}, headers=admin
        )
    )
    assert patched["imageUrl"] == "https://x.example/a.png"
    ok(client.post(f"/v1/campaigns/{active['id']}/pause", headers=admin))
    assert ok(client.get("/v1/campaigns", headers=public))["data"] == []
    ok(client.post(f"/v1/campaigns/{active['id']}/end", headers=admin))
    refused(client.post(f"/v1/campaigns/{active['id']}/activate", headers=admin), 409, "invalid_transition")
    assert client.delete(f"/v1/campaigns/{draft['id']}", headers=admin).status_code == 204
    refused(client.get(f"/v1/campaigns/{draft['id']}", headers=admin), 404, "not_found")


def test_a_claim_pays_on_chain_and_completes(platform: Platform) -> None:
    shop = open_shop(platform, "Claims")
    client = platform.client
    campaign = campaign_of(platform, shop, amount="5", maxPerUser=1)
    wallet = Account.create()
    user = ok(siwe_sign_in(platform, shop.tenant, wallet))
    user_headers = bearer(user["accessToken"])
    claim = ok(
        client.post("/v1/campaigns/claims", json={"campaignId": campaign["id"]}, headers=user_headers), 202
    )
    assert (claim["status"], claim["claimedBy"], len(claim["operationIds"])) == ("pending", "user", 1)
    assert claim["businessId"] == shop.business_id and claim["triggerId"] == campaign["triggerId"]
    again = client.post("/v1/campaigns/claims", json={"campaignId": campaign["id"]}, headers=user_headers)
    refused(again, 409, "max_per_user_reached")
    done = settled_claim(platform, shop, claim["id"])
    assert done["status"] == "completed" and done["finishedAt"]
    assert shop.credit.functions.balanceOf(wallet.address).call() == 5
    mine = ok(client.get("/v1/campaigns/claims/me", headers=user_headers))
    assert [c["id"] for c in mine["data"]] == [claim["id"]]
    listed = ok(client.get("/v1/campaigns/claims", params={"campaignId": campaign["id"]}, headers=shop.key))
    assert listed["meta"]["total"] == 1
    unit = ok(client.get(f"/v1/campaigns/{campaign['id']}", headers=shop.tenant.admin_headers))["tokenUnits"][
        0
    ]
    assert unit["issued"] == "5"


def test_bad_claims_and_triggers_are_refused_with_nothing_written(platform: Platform) -> None:
    shop = open_shop(platform, "Refusals")
    client, admin = platform.client, shop.tenant.admin_headers
    campaign = campaign_of(platform, shop, amount="3", max_amount="4")
    someone = member(platform, shop)
    claim = {"campaignId": campaign["id"], "userId": someone["id"]}
    refused(
        client.post("/v1/campaigns/claims", json={"userId": someone["id"]}, headers=shop.key),
        422,
        "claim_target_required",
    )
    refused(
        client.post("/v1/campaigns/claims", json={"campaignId": campaign["id"]}, headers=shop.key),
        422,
        "user_required",
    )
    refused(
        client.post("/v1/campaigns/claims", json={**claim, "userId": str(uuid.uuid4())}, headers=shop.key),
        404,
        "user_not_found",
    )
    refused(
        client.post(
            "/v1/campaigns/claims", json={**claim, "campaignId": str(uuid.uuid4())}, headers=shop.key
        ),
        404,
        "not_found",
    )
    ok(client.post("/v1/campaigns/claims", json=claim, headers=shop.key), 202)
    # 3 of 4 issued: the next claim would overrun the budget.
    refused(client.post("/v1/campaigns/claims", json=claim, headers=shop.key), 409, "budget_exhausted")
    assert ok(client.get("/v1/campaigns/claims", headers=admin))["meta"]["total"] == 1
    assert ok(client.get("/v1/transactions", headers=admin))["meta"]["total"] == 1
    path = f"/v1/campaigns/{campaign['id']}/triggers"
    for bad in (
        {
            "type": "api_event",
            "eventName": "buy",
            "conditions": [{"property": "x", "operator": "between", "value": [5, 1]}],
        },
        {
            "type": "api_event",
            "eventName": "buy",
            "conditions": [{"property": "x", "operator": "in", "value": []}],
        },
        {
            "type": "api_event",
            "eventName": "buy",
            "conditions": [{"property": "x", "operator": "gte", "value": 1.5}],
        },
    ):
        refused(client.post(path, json=bad, headers=admin), 422, "invalid_condition")
    refused(client.post(path, json={"type": "api_event"}, headers=admin), 422, "missing_field")
    refused(
        client.post(path, json={"type": "manual", "completionThreshold": 2}, headers=admin),
        422,
        "invalid_value",
    )
    refused(client.post(path, json={"type": "lottery"}, headers=admin), 422, "invalid_value")
    assert ok(client.get(path, headers=admin))["meta"]["total"] == 1
    unit = {"tokenId": shop.credit_id, "amount": "5", "maxAmount": "4"}
    refused(
        client.post(f"/v1/campaigns/{campaign['id']}/tokens", json=unit, headers=admin),
        422,
        "amount_over_max",
    )


def test_qr_sources_sign_their_payloads(platform: Platform) -> None:
    shop = open_shop(platform, "Qr")
    client, admin = platform.client, shop.tenant.admin_headers
    campaign = campaign_of(platform, shop)
    qr = ok(
        client.post(
            f"/v1/campaigns/{campaign['id']}/triggers",
            json={"type": "qr_code", "maxPerDay": 1},
            headers=admin,
        ),
        201,
    )
    source = ok(
        client.post("/v1/trigger-sources", json={"triggerId": qr["id"], "name": "Till 1"}, headers=shop.key),
        201,
    )
    assert source["businessId"] == shop.business_id
    payload = ok(client.post(f"/v1/trigger-sources/{source['id']}/payload", headers=shop.key))["payload"]
    user = ok(siwe_sign_in(platform, shop.tenant, Account.create()))
    headers = bearer(user["accessToken"])
    body = {"triggerSourceId": source["id"], "payload": payload}
    forged = payload[:-1] + ("0" if payload[-1] != "0" else "1")
    refused(
        client.post("/v1/campaigns/claims", json={**body, "payload": forged}, headers=headers),
        422,
        "invalid_payload",
    )
    refused(
        client.post("/v1/campaigns/claims", json={"triggerSourceId": source["id"]}, headers=headers),
        422,
        "missing_field",
    )
    claim = ok(client.post("/v1/campaigns/claims", json=body, headers=headers), 202)
    assert (claim["triggerSourceId"], claim["triggerId"]) == (source["id"], qr["id"])
    refused(client.post("/v1/campaigns/claims", json=body, headers=headers), 409, "max_per_day_reached")
    assert ok(client.get("/v1/trigger-sources", headers=shop.key))["meta"]["total"] == 1


def test_events_fire_triggers_once_per_event_id(platform: Platform) -> None:
    shop = open_shop(platform, "Events")
    client, admin = platform.client, shop.tenant.admin_headers
    campaign = campaign_of(platform, shop, amount="100")
    trigger = {
        "type": "api_event",
        "eventName": "purchase",
        "conditions": [{"property": "total", "operator": "gte", "value": "10"}],
        "completionThreshold": 3,
    }
    made = ok(client.post(f"/v1/campaigns/{campaign['id']}/triggers", json=trigger, headers=admin), 201)
    shopper = member(platform, shop)

    def event(event_id: str, total: Any) -> Json:
        return {
            "id": event_id,
            "name": "purchase",
            "externalId": shopper["externalId"],
            "properties": {"total": total},
        }

    first = ok(client.post("/v1/events", json=event("e1", 25), headers=shop.key), 202)
    assert [(r["outcome"], r["progress"]) for r in first["results"]] == [("progress", 1)]
    assert (
        ok(client.post("/v1/events", json=event("e2", 5), headers=shop.key), 202)["results"] == []
    )  # too small
    assert ok(client.post("/v1/events", json=event("e1", 25), headers=shop.key), 202) == first  # a repeat
    refused(
        client.post("/v1/events", json=event("e1", 25), headers=admin), 409, "event_id_taken"
    )  # not its own
    batch = {
        "events": [event("e3", "12"), {"id": "bad", "name": "purchase"}, event("e4", 30), event("e3", 12)]
    }
    answered = ok(client.post("/v1/events/batch", json=batch, headers=shop.key), 202)
    assert [i["status"] for i in answered["data"]] == [202, 422, 202, 202]
    assert answered["data"][1]["error"]["code"] == "user_required"
    third = answered["data"][2]["event"]["results"]
    assert [(r["outcome"], r["triggerId"]) for r in third] == [("claimed", made["id"])]
    assert answered["data"][3]["event"] == answered["data"][0]["event"]  # the same id, answered once
    claim = settled_claim(platform, shop, third[0]["claimId"])
    assert claim["status"] == "completed" and claim["eventId"] == answered["data"][2]["event"]["eventId"]
    assert shop.credit.functions.balanceOf(shopper["walletAddress"]).call() == 100


def test_partners_claim_within_their_caps_and_the_owner_pays(platform: Platform) -> None:
    shop = open_shop(platform, "Mall")
    client, admin = platform.client, shop.tenant.admin_headers
    campaign = campaign_of(platform, shop, amount="10")
    keys = []
    partner_ids = []
    for name in ("Cafe", "Kiosk"):
        partner = ok(client.post("/v1/businesses", json={"name": name}, headers=admin), 201)
        key = ok(
            client.post(f"/v1/businesses/{partner['id']}/api-keys", json={"name": "till"}, headers=admin), 201
        )
        partner_ids.append(partner["id"])
        keys.append({"X-API-Key": key["key"]})
    cafe, kiosk = keys
    path = f"/v1/campaigns/{campaign['id']}/engagements"
    invited = ok(
        client.post(path, json={"businessIds": partner_ids, "maxPerBusiness": 2}, headers=shop.key), 201
    )
    assert [e["status"] for e in invited] == ["invited", "invited"]
    refused(client.post(path, json={"businessIds": partner_ids[:1]}, headers=admin), 409, "engagement_exists")
    users = [member(platform, shop) for _ in range(3)]
    claim = {"campaignId": campaign["id"]}
    # Not a partner until it accepts: the campaign is not there for it.
    refused(
        client.post("/v1/campaigns/claims", json={**claim, "userId": users[0]["id"]}, headers=cafe),
        404,
        "not_found",
    )
    cafe_invite, kiosk_invite = (f"/v1/campaign-engagements/{e['id']}" for e in invited)
    refused(
        client.put(cafe_invite, json={"status": "accepted"}, headers=kiosk), 404, "not_found"
    )  # not its own
    ok(client.put(cafe_invite, json={"status": "accepted"}, headers=cafe))
    ok(client.put(kiosk_invite, json={"status": "rejected"}, headers=kiosk))
    refused(client.put(kiosk_invite, json={"status": "accepted"}, headers=kiosk), 409, "engagement_rejected")
    made = [
        ok(client.post("/v1/campaigns/claims", json={**claim, "userId": u["id"]}, headers=cafe), 202)
        for u in users[:2]
    ]
    assert {c["businessId"] for c in made} == {partner_ids[0]}
    third = client.post("/v1/campaigns/claims", json={**claim, "userId": users[2]["id"]}, headers=cafe)
    refused(third, 409, "max_per_business_reached")
    refused(
        client.post("/v1/campaigns/claims", json={**claim, "userId": users[2]["id"]}, headers=kiosk),
        404,
        "not_found",
    )
    share = ok(client.get(path, headers=cafe))["data"]
    assert [(e["businessId"], e["claims"]) for e in share] == [(partner_ids[0], 2)]  # its own share only
    assert ok(client.get("/v1/campaigns/claims", headers=cafe))["meta"]["total"] == 2
    done = settled_claim(platform, shop, made[0]["id"])
    assert done["status"] == "completed"
    operation = ok(client.get(f"/v1/transactions/{done['operationIds'][0]}", headers=admin))
    assert operation["businessId"] == shop.business_id  # the owner's signer pays
    assert shop.credit.functions.balanceOf(users[0]["walletAddress"]).call() == 10
