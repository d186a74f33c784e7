"""The mall scenario (backend/demo/mall.py, what `pers up --demo` seeds) on the production processes:
Postgres, the broker, anvil, `pers api`, `pers worker` and `pers indexer`; every figure read back from the
API is checked against the chain."""

import uuid
from typing import Any

from backend.chain.artifacts import abi
from backend.demo import mall
from tests.e2e.test_confirmations import indexer
from tests.platform import Platform


def test_the_mall_scenario_end_to_end(production_platform: Platform) -> None:
    platform = production_platform
    with indexer(platform):
        seeded = mall.run(platform.client, platform.operator_token, slug=f"mall-{uuid.uuid4().hex[:8]}")
    client, admin = platform.client, seeded.admin
    shoes, books = seeded.shops
    ada, bob = seeded.users["ada"], seeded.users["bob"]

    # The 5th purchase pays, not the 4th: five cards for Ada, one each for Bob and Cleo.
    card = [("progress", 1), ("progress", 2), ("progress", 3), ("progress", 4), ("claimed", None)]
    outcomes = {
        name: [(e["results"][0]["outcome"], e["results"][0]["progress"]) for e in events]
        for name, events in seeded.purchases.items()
    }
    assert outcomes == {"ada": card * 5, "bob": card, "cleo": card}
    # The engagement caps count: the Book Shop's share of 2 is used, so Bob's second card is refused.
    refused = seeded.over_cap["results"][0]
    assert (refused["outcome"], refused["code"]) == ("refused", "max_per_business_reached")
    path = f"/v1/campaigns/{seeded.campaign['id']}/engagements"
    shares = {e["businessId"]: e["claims"] for e in client.get(path, headers=admin).json()["data"]}
    assert shares == {shoes.id: 5, books.id: 2}

    # Gold at 500 credits earned, on chain.
    credit_token, voucher, gold = (seeded.tokens[s] for s in ("MALL", "VOUCHER", "GOLD"))
    credit = platform.w3.eth.contract(address=credit_token["contractAddress"], abi=abi("CreditToken"))
    rewards = platform.w3.eth.contract(address=gold["contractAddress"], abi=abi("RewardsToken"))
    granted = next(s for s in seeded.gold if s["tierId"] == seeded.tier["id"])
    assert (granted["state"], granted["lifetimeEarned"]) == ("granted", "500")
    assert rewards.functions.balanceOf(ada["walletAddress"], int(gold["chainTokenId"])).call() == 1
    assert rewards.functions.balanceOf(bob["walletAddress"], int(gold["chainTokenId"])).call() == 0

    # The gated exchange: refused without Gold; with it, the burn and the mint in one transaction.
    assert seeded.refused_exchange["error"]["code"] == "status_required"
    exchange = seeded.exchange
    burn, mint = (
        client.get(f"/v1/transactions/{exchange[leg]}", headers=admin).json()
        for leg in ("burnOperationId", "mintOperationId")
    )
    assert (burn["type"], mint["type"]) == ("burn", "mint")
    assert burn["txHash"] is not None and burn["txHash"] == mint["txHash"]
    assert rewards.functions.balanceOf(ada["walletAddress"], int(voucher["chainTokenId"])).call() == 1
    spent = mall.VOUCHER_COST + mall.TOTE_COST
    assert credit.functions.balanceOf(ada["walletAddress"]).call() == mall.GOLD_AT - spent
    # The catalog redeem: burnt, then handed over by the Book Shop.
    assert seeded.catalog["status"] == "COMPLETED" and seeded.catalog["fulfilledAt"] is not None

    # Analytics equal the chain and the books.
    overview: dict[str, Any] = seeded.overview
    completed = client.get(
        "/v1/campaigns/claims", params={"status": "completed", "limit": 200}, headers=admin
    ).json()
    assert overview["totals"]["claims"] == overview["totals"]["completed"] == completed["meta"]["total"] == 7
    figures = client.get(f"/v1/analytics/tokens/{credit_token['id']}", headers=admin).json()["totals"]
    issued, burned = int(figures["tokens"]["issued"]), int(figures["tokens"]["burned"])
    assert (issued, burned) == (7 * mall.REWARD, spent)
    assert issued - burned == credit.functions.totalSupply().call()
    by_business = {s["key"]: s["claims"] for s in overview["byBusiness"]}
    assert sum(by_business.values()) == overview["totals"]["claims"]
    assert by_business == {shoes.id: 5, books.id: 2}
    own = {shop.id: seeded.shares[shop.name]["totals"]["claims"] for shop in seeded.shops}
    assert own == by_business  # each shop sees its own share
