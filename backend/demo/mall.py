"""The mall scenario, driven through the HTTP API alone (an httpx client and the operator token), so the
same code seeds `pers up --demo` and runs in tests/e2e/test_mall_scenario.py on the production processes.

A mall tenant whose office owns a purchase campaign (every 5th purchase pays 100 Mall Credits) that two
partner shops accept; the shops report purchases of two managed-wallet users and one who signs in with
their own wallet; Gold is granted at 500 credits earned; a Voucher costs 100 credits and needs Gold; a
tote bag from the catalog is handed over by a shop; and the analytics are read back. Each step checks the
answer it expects and records what the tests assert on."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct

from backend.auth.siwe import SiweMessage, format_message

SLUG = "mall"
ADMIN_EMAIL = "admin@mall.example"
THRESHOLD = 5  # the 5th purchase pays
REWARD = 100  # Mall Credits a completed purchase card pays
GOLD_AT = 500  # lifetime-earned Mall Credits
VOUCHER_COST, TOTE_COST = 100, 50
BOOK_SHOP_CAP = 2  # the Book Shop's share of the campaign: claims at it, in all


class ScenarioError(RuntimeError):
    """An answer the scenario did not expect."""


@dataclass
class Shop:
    name: str
    id: str
    key: str  # its secret key, shown once

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


@dataclass
class Mall:
    """What the scenario made and saw."""

    tenant_id: str
    project_key: str
    admin_password: str  # generated, shown once
    admin: dict[str, str]  # the admin session's header
    office: Shop  # owns the campaign, signs its mints and the exchange
    shops: list[Shop]  # the partners
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)  # by symbol
    campaign: dict[str, Any] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # by first name
    purchases: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # event answers, by user
    over_cap: dict[str, Any] = field(default_factory=dict)  # the purchase refused at the Book Shop's cap
    tier: dict[str, Any] = field(default_factory=dict)
    gold: dict[str, Any] = field(default_factory=dict)  # Ada's status once granted
    refused_exchange: dict[str, Any] = field(default_factory=dict)  # Bob's, without Gold
    exchange: dict[str, Any] = field(default_factory=dict)  # Ada's redeem, completed
    catalog: dict[str, Any] = field(default_factory=dict)  # Ada's tote bag, fulfilled
    overview: dict[str, Any] = field(default_factory=dict)
    shares: dict[str, dict[str, Any]] = field(default_factory=dict)  # each shop's own overview


class Api:
    """Calls that raise `ScenarioError` on any answer but the expected one."""

    def __init__(self, client: httpx.Client, timeout: float = 300) -> None:
        self.client, self.timeout = client, timeout

    def answer(self, method: str, path: str, expect: int, **kwargs: Any) -> httpx.Response:
        deadline = time.monotonic() + self.timeout
        # Over a rate limit (`pers up` keeps the defaults: 120 requests a minute per address), wait as told.
        while (response := self.client.request(method, path, **kwargs)).status_code == 429:
            if time.monotonic() > deadline:
                break
            time.sleep(float(response.headers.get("Retry-After", "1")))
        if response.status_code != expect:
            raise ScenarioError(
                f"{method} {path}: {response.status_code} {response.text} (expected {expect})"
            )
        return response

    def __call__(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = self.answer(method, path, expect, **kwargs)
        return response.json() if response.content else None

    def wait(self, fetch: Callable[[], Any], done: Callable[[Any], bool], what: str) -> Any:
        """Polls until `done`: background work (deployments, mints, the mirror) takes its time."""
        deadline = time.monotonic() + self.timeout
        while not done(found := fetch()):
            if time.monotonic() > deadline:
                raise ScenarioError(f"{what} did not happen: {found}")
            time.sleep(0.5)
        return found


def existing(client: httpx.Client, operator_token: str, slug: str = SLUG) -> dict[str, Any] | None:
    """The tenant a previous run made, if any."""
    found = Api(client)("GET", "/v1/tenants", params={"slug": slug}, headers=_bearer(operator_token))["data"]
    return found[0] if found else None


def run(client: httpx.Client, operator_token: str, slug: str = SLUG) -> Mall:
    """The whole scenario on a new tenant `slug`."""
    api = Api(client)
    mall = _open_mall(api, operator_token, slug)
    _tokens(api, mall)
    _campaign(api, mall)
    _tier(api, mall)
    _users(api, mall)
    _shopping(api, mall)
    _gold(api, mall)
    _redeems(api, mall)
    mall.overview = api("GET", "/v1/analytics/overview", headers=mall.admin)
    mall.shares = {s.name: api("GET", "/v1/analytics/overview", headers=s.headers) for s in mall.shops}
    return mall


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _open_mall(api: Api, operator_token: str, slug: str) -> Mall:
    """The tenant (its admin password generated), and its businesses: the office first, which makes it
    the tenant's signer for what no business pays, such as status grants (docs/adr, status tiers)."""
    body = {"name": "Riverside Mall", "slug": slug, "adminEmail": ADMIN_EMAIL}
    tenant = api("POST", "/v1/tenants", 201, json=body, headers=_bearer(operator_token))
    password = tenant["admin"]["password"]
    project_key = next(e["projectKey"] for e in tenant["environments"] if e["environment"] == "test")
    login = {"authType": "admin", "email": ADMIN_EMAIL, "password": password}
    session = api("POST", "/v1/auth/token", json=login, headers={"X-Project-Key": project_key})
    admin = _bearer(session["accessToken"])
    api.wait(
        lambda: api("GET", "/v1/tenants/me/contracts", headers=admin)["data"][0],
        lambda contracts: contracts["status"] == "active",
        "the mall's contracts",
    )

    def business(name: str) -> Shop:
        created = api("POST", "/v1/businesses", 201, json={"name": name}, headers=admin)
        key = api(
            "POST", f"/v1/businesses/{created['id']}/api-keys", 201, json={"name": "till"}, headers=admin
        )
        return Shop(name, created["id"], key["key"])

    office = business("Mall Office")
    return Mall(
        tenant["id"], project_key, password, admin, office, [business("Shoe Shop"), business("Book Shop")]
    )


def _tokens(api: Api, mall: Mall) -> None:
    for body in (
        {"kind": "credit", "name": "Mall Credits", "symbol": "MALL"},
        {"kind": "reward", "name": "Voucher", "symbol": "VOUCHER"},
        {"kind": "status", "name": "Gold", "symbol": "GOLD"},
    ):
        api("POST", "/v1/tokens", 202, json=body, headers=mall.admin)
    listed = api.wait(
        lambda: api("GET", "/v1/tokens", headers=mall.admin)["data"],
        lambda tokens: all(t["status"] == "active" for t in tokens),
        "the tokens' activation",
    )
    mall.tokens = {t["symbol"]: t for t in listed}


def _campaign(api: Api, mall: Mall) -> None:
    office, (shoes, books) = mall.office.headers, mall.shops
    body = {"name": "Every 5th purchase pays 100 credits", "tags": ["purchase"]}
    campaign = api("POST", "/v1/campaigns", 201, json=body, headers=office)
    path = f"/v1/campaigns/{campaign['id']}"
    unit = {"tokenId": mall.tokens["MALL"]["id"], "amount": str(REWARD), "maxAmount": "1000000"}
    api("POST", f"{path}/tokens", 201, json=unit, headers=mall.admin)
    trigger = {"type": "api_event", "eventName": "purchase", "completionThreshold": THRESHOLD}
    api("POST", f"{path}/triggers", 201, json=trigger, headers=office)
    for shop, cap in ((shoes, 10), (books, BOOK_SHOP_CAP)):
        invite = {"businessIds": [shop.id], "maxPerBusiness": cap, "maxPerDay": 10}
        engagement = api("POST", f"{path}/engagements", 201, json=invite, headers=office)[0]
        accept = {"status": "accepted"}
        api("PUT", f"/v1/campaign-engagements/{engagement['id']}", json=accept, headers=shop.headers)
    mall.campaign = api("POST", f"{path}/activate", headers=office)


def _users(api: Api, mall: Mall) -> None:
    """Ada (Shoe Shop) and Bob (Book Shop) get managed wallets; Cleo signs in with her own."""
    shoes, books = mall.shops
    mall.users["ada"] = api(
        "POST", "/v1/users", 201, json={"externalId": "ada", "name": "Ada"}, headers=shoes.headers
    )
    mall.users["bob"] = api(
        "POST", "/v1/users", 201, json={"externalId": "bob", "name": "Bob"}, headers=books.headers
    )
    wallet = Account.create()
    session = _siwe(api, mall.project_key, wallet)
    mall.users["cleo"] = api("GET", "/v1/users/me", headers=_bearer(session["accessToken"]))
    api("POST", "/v1/users", json={"walletAddress": wallet.address}, headers=books.headers)  # served by it


def _siwe(api: Api, project_key: str, wallet: Any) -> Any:
    """Sign-In with Ethereum, as a wallet app does it."""
    project = {"X-Project-Key": project_key}
    nonce = api("POST", "/v1/auth/siwe/nonce", 201, headers=project)
    domain = nonce["domains"][0]
    now = datetime.now(UTC)
    scheme = "https" if urlsplit(f"//{domain}").hostname not in ("localhost", "127.0.0.1") else "http"
    message = format_message(
        SiweMessage(
            domain=domain,
            address=wallet.address,
            statement="Sign in to Riverside Mall rewards.",
            uri=f"{scheme}://{domain}/login",
            version="1",
            chain_id=nonce["chainId"],
            nonce=nonce["nonce"],
            issued_at=now,
            expiration_time=now + timedelta(minutes=5),
            resources=tuple(nonce["resources"]),
        )
    )
    signature = "0x" + bytes(Account.sign_message(encode_defunct(text=message), wallet.key).signature).hex()
    body = {"authType": "user", "message": message, "signature": signature}
    return api("POST", "/v1/auth/token", json=body, headers=project)


def _purchases(api: Api, shop: Shop, user: dict[str, Any], numbers: range) -> list[dict[str, Any]]:
    """The user's purchases at the shop, numbered as given (an event id is processed once), in a batch."""
    events = [
        {"id": f"{shop.id}-{user['id']}-{n}", "name": "purchase", "userId": user["id"]} for n in numbers
    ]
    answered = api("POST", "/v1/events/batch", 202, json={"events": events}, headers=shop.headers)["data"]
    if any(item["status"] != 202 for item in answered):
        raise ScenarioError(f"purchases refused: {answered}")
    return [item["event"] for item in answered]


def _shopping(api: Api, mall: Mall) -> None:
    """Ada buys 25 times at the Shoe Shop (5 claims, 500 credits), Bob and Cleo 5 times each at the Book
    Shop, which fills its share of 2 claims: Bob's next card is refused at its 5th purchase."""
    shoes, books = mall.shops
    for name, shop, count in (
        ("ada", shoes, 5 * THRESHOLD),
        ("bob", books, THRESHOLD),
        ("cleo", books, THRESHOLD),
    ):
        mall.purchases[name] = _purchases(api, shop, mall.users[name], range(1, count + 1))
    mall.over_cap = _purchases(api, books, mall.users["bob"], range(THRESHOLD + 1, 2 * THRESHOLD + 1))[-1]
    query = {"campaignId": mall.campaign["id"], "limit": 200}
    api.wait(
        lambda: api("GET", "/v1/campaigns/claims", params=query, headers=mall.admin)["data"],
        lambda claims: len(claims) == 7 and all(c["status"] == "completed" for c in claims),
        "the claims' mints",
    )


def _tier(api: Api, mall: Mall) -> None:
    """Gold for 500 Mall Credits earned, set up before anyone shops."""
    tier = {
        "name": "Gold",
        "statusTokenId": mall.tokens["GOLD"]["id"],
        "creditTokenId": mall.tokens["MALL"]["id"],
        "threshold": str(GOLD_AT),
    }
    mall.tier = api("POST", "/v1/status-tiers", 201, json=tier, headers=mall.admin)


def _gold(api: Api, mall: Mall) -> None:
    ada = mall.users["ada"]["id"]
    mall.gold = api.wait(
        lambda: api("GET", f"/v1/users/{ada}/status", headers=mall.admin)["data"],
        lambda statuses: any(s["tierId"] == mall.tier["id"] and s["state"] == "granted" for s in statuses),
        "Ada's Gold status",
    )


def user_session(api: Api, shop: Shop, user: dict[str, Any]) -> dict[str, str]:
    """A managed-wallet user's session, opened by the shop that serves them."""
    body = {"authType": "managed_user", "userId": user["id"]}
    return _bearer(api("POST", "/v1/auth/token", json=body, headers=shop.headers)["accessToken"])


def _redeems(api: Api, mall: Mall) -> None:
    shoes, books = mall.shops
    credit, voucher, gold = (mall.tokens[s] for s in ("MALL", "VOUCHER", "GOLD"))
    exchange = {
        "kind": "exchange",
        "name": "A 10% voucher for 100 credits (Gold members)",
        "businessId": mall.office.id,
        "costTokenId": credit["id"],
        "costAmount": str(VOUCHER_COST),
        "rewardTokenId": voucher["id"],
        "rewardAmount": "1",
        "requiredStatusTokenId": gold["id"],
        "stock": 100,
    }
    offer = api("POST", "/v1/redemptions", 201, json=exchange, headers=mall.admin)
    tote = {"kind": "catalog", "name": "Mall tote bag", "businessId": books.id, "costTokenId": credit["id"]}
    bag = api(
        "POST",
        "/v1/redemptions",
        201,
        json=tote | {"costAmount": str(TOTE_COST), "stock": 20},
        headers=mall.admin,
    )
    bob = user_session(api, books, mall.users["bob"])
    mall.refused_exchange = api(
        "POST", "/v1/redemptions/redeems", 409, json={"redemptionId": offer["id"]}, headers=bob
    )
    ada = user_session(api, shoes, mall.users["ada"])
    api.wait(  # a redeem is checked against the mirror's balances: the indexer must have seen the claims
        lambda: api("GET", "/v1/users/me/balances", headers=ada)["tokenBalances"],
        lambda held: {(b["kind"], b["amount"]) for b in held} >= {("credit", str(GOLD_AT)), ("status", "1")},
        "Ada's credits and Gold in the mirror",
    )
    mall.exchange = _redeemed(api, ada, offer["id"])
    mall.catalog = _redeemed(api, ada, bag["id"])
    mall.catalog = api("POST", f"/v1/redemptions/redeems/{mall.catalog['id']}/fulfil", headers=books.headers)


def _redeemed(api: Api, user: dict[str, str], redemption_id: str) -> Any:
    redeem = api("POST", "/v1/redemptions/redeems", 202, json={"redemptionId": redemption_id}, headers=user)

    def mine() -> Any:
        return next(
            r
            for r in api("GET", "/v1/redemptions/redeems/me", headers=user)["data"]
            if r["id"] == redeem["id"]
        )

    done = api.wait(mine, lambda r: r["status"] in ("COMPLETED", "FAILED"), f"redeem {redeem['id']}")
    if done["status"] != "COMPLETED":
        raise ScenarioError(f"redeem of {redemption_id} failed: {done}")
    return done


def walkthrough(mall: Mall, base: str) -> list[str]:
    """A few calls to paste, as the seeded tenant answers them."""
    shoes, _ = mall.shops
    ada = mall.users["ada"]["id"]
    json = "-H 'content-type: application/json'"
    return [
        f"export API={base} PK={mall.project_key} SHOE_SK={shoes.key} ADA_ID={ada}",
        'curl -s "$API/v1/campaigns" -H "X-Project-Key: $PK" | jq \'.data[] | {name, status}\'',
        f'curl -s -X POST "$API/v1/events" -H "X-API-Key: $SHOE_SK" {json} '
        '-d \'{"id": "try-1", "name": "purchase", "userId": "\'$ADA_ID\'"}\' | jq .results',
        f'ADA=$(curl -s -X POST "$API/v1/auth/token" -H "X-API-Key: $SHOE_SK" {json} '
        '-d \'{"authType": "managed_user", "userId": "\'$ADA_ID\'"}\' | jq -r .accessToken)',
        'curl -s "$API/v1/users/me/balances" -H "Authorization: Bearer $ADA" | jq \'.tokenBalances\'',
        'curl -s "$API/v1/users/me/status" -H "Authorization: Bearer $ADA" | jq \'.data[] | {name, state}\'',
    ]
