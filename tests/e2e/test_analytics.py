"""/v1/analytics on the embedded stack and on the production processes: the figures are what was
claimed and minted, a partner business sees its own share, bad ranges are refused."""

import uuid

from tests.e2e.test_campaigns import campaign_of, member, ok, refused, settled_claim
from tests.e2e.test_relay import open_shop
from tests.platform import Platform


def test_figures_match_the_claims_and_mints(platform: Platform) -> None:
    shop = open_shop(platform, "Analytics")
    client, admin = platform.client, shop.tenant.admin_headers
    campaign = campaign_of(platform, shop, amount="5", max_amount="1000")
    partner = ok(client.post("/v1/businesses", json={"name": "Cafe"}, headers=admin), 201)
    key = ok(client.post(f"/v1/businesses/{partner['id']}/api-keys", json={"name": "t"}, headers=admin), 201)
    cafe = {"X-API-Key": key["key"]}
    invite = ok(
        client.post(
            f"/v1/campaigns/{campaign['id']}/engagements",
            json={"businessIds": [partner["id"]]},
            headers=admin,
        ),
        201,
    )[0]
    ok(client.put(f"/v1/campaign-engagements/{invite['id']}", json={"status": "accepted"}, headers=cafe))
    users = [member(platform, shop) for _ in range(3)]
    claims = [
        ok(
            client.post(
                "/v1/campaigns/claims", json={"campaignId": campaign["id"], "userId": u["id"]}, headers=h
            ),
            202,
        )
        for u, h in zip(users, (shop.key, shop.key, cafe), strict=True)
    ]
    assert all(settled_claim(platform, shop, c["id"])["status"] == "completed" for c in claims)

    overview = ok(client.get("/v1/analytics/overview", headers=admin))
    totals = overview["totals"]
    assert (totals["claims"], totals["completed"], totals["failed"], totals["uniqueUsers"]) == (3, 3, 0, 3)
    assert totals["tokens"] == {"issued": "15", "burned": "0", "transferred": "0"}
    assert (totals["redeems"], totals["redemptionRate"]) == (0, 0.0)
    assert int(totals["gasUsed"]) > 0
    assert len(overview["series"]) == 31  # the last 30 days, by day, today included
    today = overview["series"][-1]
    assert (today["claims"], today["tokens"]["issued"]) == (3, "15")
    assert sum(b["claims"] for b in overview["series"]) == 3
    shares = {s["key"]: s["claims"] for s in overview["byBusiness"]}
    assert shares == {shop.business_id: 2, partner["id"]: 1}
    assert [(s["key"], s["claims"]) for s in overview["byTriggerType"]] == [("manual", 3)]

    by_campaign = ok(client.get(f"/v1/analytics/campaigns/{campaign['id']}", headers=shop.key))
    assert by_campaign["totals"]["claims"] == 3 and by_campaign["totals"]["tokens"]["issued"] == "15"
    assert [(b["tokenId"], b["issued"], b["maxAmount"], b["used"]) for b in by_campaign["budget"]] == [
        (shop.credit_id, "15", "1000", 0.015)
    ]
    by_token = ok(
        client.get(f"/v1/analytics/tokens/{shop.credit_id}", params={"interval": "month"}, headers=admin)
    )
    assert (by_token["totals"]["claims"], by_token["totals"]["tokens"]["issued"]) == (3, "15")
    assert ok(client.get(f"/v1/analytics/tokens/{shop.reward_id}", headers=admin))["totals"]["claims"] == 0

    # The partner sees the claim made at it, and none of the owner's operations.
    mine = ok(client.get("/v1/analytics/overview", headers=cafe))["totals"]
    assert (mine["claims"], mine["tokens"]["issued"]) == (1, "0")
    refused(client.get(f"/v1/analytics/campaigns/{uuid.uuid4()}", headers=admin), 404, "not_found")


def test_bad_ranges_are_refused(platform: Platform) -> None:
    shop = open_shop(platform, "Ranges")
    client, admin = platform.client, shop.tenant.admin_headers
    reversed_range = {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
    refused(client.get("/v1/analytics/overview", params=reversed_range, headers=admin), 422, "invalid_range")
    years = {"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
    refused(client.get("/v1/analytics/overview", params=years, headers=admin), 422, "too_many_buckets")
    by_month = ok(client.get("/v1/analytics/overview", params={**years, "interval": "month"}, headers=admin))
    assert len(by_month["series"]) == 73 and by_month["series"][0]["start"] == "2020-01-01"
    weekly = {"from": "2026-01-07T00:00:00Z", "to": "2026-01-20T00:00:00Z", "interval": "week"}
    assert [
        b["start"] for b in ok(client.get("/v1/analytics/overview", params=weekly, headers=admin))["series"]
    ] == [
        "2026-01-05",
        "2026-01-12",
        "2026-01-19",
    ]
    for wrong in ({"interval": "year"}, {"from": "yesterday"}):
        bad = client.get("/v1/analytics/overview", params=wrong, headers=admin)
        assert bad.status_code == 422 and bad.json()["error"]["code"], bad.text
