"""Tenant isolation, route by route: every route of the app is called with every kind of credential of
another tenant (B), with tenant A's real ids in the path, and nothing of A may come back or change.

The route list comes from the routers themselves (`backend.app.ROUTERS`) and from what the running
app serves, so a new route without a sample request below fails the test instead of going untested."""

import contextlib
import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from backend.app import ROUTERS
from backend.auth.principal import Auth
from tests.platform import (
    PASSWORD,
    Platform,
    TenantSession,
    bearer,
    create_tenant,
    sign,
    siwe_message,
    siwe_sign_in,
    wait_for,
)

Json = dict[str, Any]
Expected = tuple[set[int], set[str] | None]  # allowed statuses, allowed error codes (None: any)
RouteKey = tuple[str, str]  # (method, path template)
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
# Fields whose values identify something of a tenant; `factory` is the platform's, shared by all.
IDENTIFYING_FIELDS = {
    "id",
    "slug",
    "projectKey",
    "prefix",
    "walletAddress",
    "signerAddress",
    "contractAddress",
    "rewards",
    "admin",
    "address",
    "email",
    "externalId",
    "tokenId",
    "triggerId",
}
AUDITOR_PASSWORD = "auditor password of beta"
# Path parameters that name no resource of a tenant: any address may be asked about (its balances of
# the caller's own tokens), so A's wallet in the path may answer 2xx, with nothing of A in it.
PUBLIC_PARAMS = {"address"}


# --- the two tenants ---------------------------------------------------------------------------


@dataclass
class Side:
    """A tenant set up through the API, with one of each kind of credential."""

    tenant: TenantSession
    admin_email: str
    business_id: str
    api_key: str
    key_ids: list[str]
    wallet: LocalAccount
    user_headers: dict[str, str]
    business_pair: Json
    user_pair: Json
    admin_pair: Json
    user_ids: list[str] = field(default_factory=list)
    token_ids: list[str] = field(default_factory=list)
    transaction_ids: list[str] = field(default_factory=list)
    webhook_ids: list[str] = field(default_factory=list)
    campaign_ids: list[str] = field(default_factory=list)
    unit_ids: list[str] = field(default_factory=list)
    trigger_ids: dict[str, str] = field(default_factory=dict)  # by type: manual, qr_code
    source_ids: list[str] = field(default_factory=list)
    claim_ids: list[str] = field(default_factory=list)
    engagement_ids: list[str] = field(default_factory=list)
    qr_payload: str = ""
    redemption_ids: list[str] = field(default_factory=list)
    redeem_ids: list[str] = field(default_factory=list)
    tier_ids: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)  # session tokens and the API key: never to leak
    auditor_email: str = ""
    auditor_pair: Json = field(default_factory=dict)
    auditor_headers: dict[str, str] = field(default_factory=dict)

    def path_ids(self) -> dict[str, list[str]]:
        return {
            "business_id": [self.business_id],
            "admin_id": [self.admin_pair["subjectId"]],
            "key_id": self.key_ids,
            "token_id": self.token_ids,
            "user_id": self.user_ids,
            "transaction_id": self.transaction_ids,
            "webhook_id": self.webhook_ids,
            "campaign_id": self.campaign_ids,
            "unit_id": self.unit_ids,
            "source_id": self.source_ids,
            "claim_id": self.claim_ids,
            "engagement_id": self.engagement_ids,
            "redemption_id": self.redemption_ids,
            "redeem_id": self.redeem_ids,
            "tier_id": self.tier_ids,
            "address": [self.wallet.address],
        }


def ok(response: httpx.Response, status: int = 200) -> Any:
    request = response.request
    assert response.status_code == status, f"{request.method} {request.url}: {response.text}"
    return response.json()


def onboard(platform: Platform, name: str) -> Side:
    client = platform.client
    tenant = create_tenant(platform, name)
    admin = tenant.admin_headers
    business_id = ok(client.post("/v1/businesses", json={"name": f"{name} Shop"}, headers=admin), 201)["id"]
    key = ok(client.post(f"/v1/businesses/{business_id}/api-keys", json={"name": "till"}, headers=admin), 201)
    business_pair = ok(client.post("/v1/auth/token", json={"authType": "business", "apiKey": key["key"]}))
    wallet = Account.create()
    signed_in = siwe_sign_in(platform, tenant, wallet)
    user_pair = ok(signed_in)
    admin_pair = ok(
        client.post(
            "/v1/auth/token",
            json={"authType": "admin", "email": f"owner@{tenant.slug}.example", "password": PASSWORD},
            headers=tenant.with_project(),
        )
    )
    return Side(
        tenant=tenant,
        admin_email=f"owner@{tenant.slug}.example",
        business_id=business_id,
        api_key=key["key"],
        key_ids=[key["id"]],
        wallet=wallet,
        user_headers=bearer(user_pair["accessToken"]),
        business_pair=business_pair,
        user_pair=user_pair,
        admin_pair=admin_pair,
        user_ids=[user_pair["subjectId"]],
        secrets=[
            key["key"],
            *(
                pair[part]
                for pair in (business_pair, user_pair, admin_pair)
                for part in ("accessToken", "refreshToken")
            ),
            tenant.admin_headers["Authorization"].removeprefix("Bearer "),
        ],
    )


def set_up_alpha(platform: Platform) -> Side:
    """Tenant A: a business with a live and a revoked key, an API-created user, a SIWE user, two tokens,
    a webhook subscription with one (failed) test delivery in its log."""
    client = platform.client
    a = onboard(platform, "Alpha")
    admin = a.tenant.admin_headers
    revoked = ok(
        client.post(f"/v1/businesses/{a.business_id}/api-keys", json={"name": "old"}, headers=admin), 201
    )
    revoke = client.delete(f"/v1/businesses/{a.business_id}/api-keys/{revoked['id']}", headers=admin)
    assert revoke.status_code == 204, revoke.text
    a.key_ids.append(revoked["id"])
    a.secrets.append(revoked["key"])
    member = ok(
        client.post(
            "/v1/users",
            json={
                "externalId": f"alpha-member-{uuid.uuid4().hex}",
                "email": f"member@{a.tenant.slug}.example",
            },
            headers=admin,
        ),
        201,
    )
    a.user_ids.insert(0, member["id"])
    for body in (
        {"kind": "credit", "name": "Alpha Points", "symbol": "ALPHAPTS", "maxSupply": "1000000"},
        {"kind": "reward", "name": "Alpha Gift", "symbol": "ALPHAGIFT"},
        {"kind": "status", "name": "Alpha Gold", "symbol": "ALPHAGOLD"},
    ):
        a.token_ids.append(ok(client.post("/v1/tokens", json=body, headers=admin), 202)["id"])
    a.tier_ids.append(ok(client.post("/v1/status-tiers", json=tier_body(a, a), headers=admin), 201)["id"])
    hook = {"url": "http://127.0.0.1:9/alpha-hooks", "eventTypes": ["transaction.mined"]}  # refused at once
    webhook = ok(client.post("/v1/webhooks", json=hook, headers=admin), 201)
    a.webhook_ids.append(webhook["id"])
    a.secrets.append(webhook["secret"])
    ok(client.post(f"/v1/webhooks/{webhook['id']}/test", headers=admin), 202)
    return a


def set_up_beta(platform: Platform) -> Side:
    """Tenant B: its own admin, business and key, SIWE user, and an auditor."""
    client = platform.client
    b = onboard(platform, "Beta")
    b.auditor_email = f"auditor@{b.tenant.slug}.example"
    created = client.post(
        "/v1/admins",
        json={"email": b.auditor_email, "role": "AUDITOR", "password": AUDITOR_PASSWORD},
        headers=b.tenant.admin_headers,
    )
    ok(created, 201)
    pair = ok(
        client.post(
            "/v1/auth/token",
            json={"authType": "admin", "email": b.auditor_email, "password": AUDITOR_PASSWORD},
            headers=b.tenant.with_project(),
        )
    )
    b.auditor_pair, b.auditor_headers = pair, bearer(pair["accessToken"])
    for body in (
        {"kind": "credit", "name": "Beta Points", "symbol": "BETAPTS"},
        {"kind": "status", "name": "Beta Gold", "symbol": "BETAGOLD"},
    ):
        b.token_ids.append(
            ok(client.post("/v1/tokens", json=body, headers=b.tenant.admin_headers), 202)["id"]
        )
    return b


def tier_body(status_owner: Side, credit_owner: Side) -> Json:
    """A tier of `status_owner`'s status token (its last) for `credit_owner`'s credit (its first)."""
    return {
        "name": "Gold",
        "statusTokenId": status_owner.token_ids[-1],
        "creditTokenId": credit_owner.token_ids[0],
        "threshold": "5",
    }


def open_campaign(platform: Platform, side: Side) -> None:
    """An active campaign paying the side's first token, with a manual and a QR trigger, a QR source
    and one of its payloads."""
    client, admin = platform.client, side.tenant.admin_headers
    body = {"name": "Welcome", "businessId": side.business_id, "tags": ["welcome"]}
    campaign = ok(client.post("/v1/campaigns", json=body, headers=admin), 201)
    path = f"/v1/campaigns/{campaign['id']}"
    unit = {"tokenId": side.token_ids[0], "amount": "1", "maxAmount": "100000"}
    side.unit_ids.append(ok(client.post(f"{path}/tokens", json=unit, headers=admin), 201)["id"])
    for kind in ("manual", "qr_code"):
        side.trigger_ids[kind] = ok(client.post(f"{path}/triggers", json={"type": kind}, headers=admin), 201)[
            "id"
        ]
    ok(client.post(f"{path}/activate", headers=admin))
    source = {"triggerId": side.trigger_ids["qr_code"], "name": "Front desk", "businessId": side.business_id}
    side.source_ids.append(ok(client.post("/v1/trigger-sources", json=source, headers=admin), 201)["id"])
    side.qr_payload = ok(client.post(f"/v1/trigger-sources/{side.source_ids[0]}/payload", headers=admin))[
        "payload"
    ]
    side.campaign_ids.append(campaign["id"])
    partner = ok(client.post("/v1/businesses", json={"name": "Partner"}, headers=admin), 201)
    invite = {"businessIds": [partner["id"]], "maxPerBusiness": 5}
    side.engagement_ids.append(
        ok(client.post(f"{path}/engagements", json=invite, headers=admin), 201)[0]["id"]
    )


def wait_until_settled(platform: Platform, a: Side) -> None:
    """A's environments deployed and its tokens active, so its state no longer changes by itself."""
    client, admin = platform.client, a.tenant.admin_headers
    contracts = wait_for(
        lambda: ok(client.get("/v1/tenants/me/contracts", headers=admin))["data"],
        lambda envs: all(e["status"] != "pending" for e in envs),
        "tenant A's deployment",
    )
    assert next(e for e in contracts if e["environment"] == "test")["status"] == "active", contracts
    tokens = wait_for(
        lambda: ok(client.get("/v1/tokens", headers=admin))["data"],
        lambda ts: all(t["status"] != "pending" for t in ts),
        "tenant A's token activation",
    )
    assert {t["status"] for t in tokens} == {"active"}, tokens
    if not a.webhook_ids:
        return
    # Its test delivery has failed once (it is retried, but the snapshot leaves the log out).
    wait_for(
        lambda: ok(client.get(f"/v1/webhooks/{a.webhook_ids[0]}/deliveries", headers=admin))["data"],
        lambda log: log and log[0]["attempts"] > 0,
        "tenant A's test delivery",
    )


def snapshot(platform: Platform, side: Side) -> Json:
    """Everything the tenant's admin can read about the tenant."""
    client, admin = platform.client, side.tenant.admin_headers

    def get(path: str) -> Any:
        return ok(client.get(path, headers=admin))

    def page(path: str) -> Json:
        listed: Json = ok(client.get(path, headers=admin, params={"limit": 200}))
        assert listed["meta"]["total"] == len(listed["data"]), f"{path}: more than one page"
        return listed

    businesses = page("/v1/businesses")
    return {
        "tenant": get("/v1/tenants/me"),
        "contracts": page("/v1/tenants/me/contracts"),
        "admins": page("/v1/admins"),
        "businesses": businesses,
        "apiKeys": {b["id"]: page(f"/v1/businesses/{b['id']}/api-keys") for b in businesses["data"]},
        "users": page("/v1/users"),
        "tokens": page("/v1/tokens"),
        "redemptions": page("/v1/redemptions"),
        "redeems": page("/v1/redemptions/redeems"),
        "webhooks": page("/v1/webhooks"),
        "campaigns": page("/v1/campaigns"),
        "campaignTags": get("/v1/campaigns/tags"),
        "statusTiers": page("/v1/status-tiers"),
        "tierMembers": {
            t["id"]: page(f"/v1/status-tiers/{t['id']}/members") for t in page("/v1/status-tiers")["data"]
        },
        "claims": page("/v1/campaigns/claims"),
        "triggerSources": page("/v1/trigger-sources"),
        "engagements": {
            c["id"]: page(f"/v1/campaigns/{c['id']}/engagements") for c in page("/v1/campaigns")["data"]
        },
        "triggers": {
            c["id"]: page(f"/v1/campaigns/{c['id']}/triggers") for c in page("/v1/campaigns")["data"]
        },
        # The log's ids only: its attempts go on being retried in the background.
        "deliveries": {
            w["id"]: [{"id": d["id"]} for d in page(f"/v1/webhooks/{w['id']}/deliveries")["data"]]
            for w in page("/v1/webhooks")["data"]
        },
    }


def identifying_values(state: Any) -> Iterator[str]:
    if isinstance(state, dict):
        for key, value in state.items():
            if key in IDENTIFYING_FIELDS and isinstance(value, str) and value:
                yield value
            else:
                yield from identifying_values(value)
    elif isinstance(state, list):
        for item in state:
            yield from identifying_values(item)


def forms(value: str) -> set[str]:
    """The spellings a value could take in a body: any case, addresses without 0x, uuids as hex."""
    lowered = value.lower()
    found = {lowered, lowered.removeprefix("0x")}
    with contextlib.suppress(ValueError):
        found.add(uuid.UUID(value).hex)
    return found


# --- credentials and routes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Cred:
    name: str
    kind: str | None  # the principal kind the headers identify; None: no credentials at all
    headers: dict[str, str]
    mixed: bool = False  # A's project key sent along with one of B's credentials


@dataclass(frozen=True)
class Call:
    query: dict[str, str] = field(default_factory=dict)
    body: Json | None = None
    headers: dict[str, str] = field(default_factory=dict)  # added when the credential lacks them
    expect: Expected | None = None  # for routes without an Auth rule: the status and error code
    after: Callable[[httpx.Response], None] | None = None
    note: str = ""


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    rule: Auth | None  # who may call it, when it is one of the routers' routes

    @property
    def params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)

    @property
    def names_a_resource(self) -> bool:
        return any(p not in PUBLIC_PARAMS for p in self.params)


def access_rule(route: APIRoute) -> Auth | None:
    stack = list(route.dependant.dependencies)
    while stack:
        dependency = stack.pop()
        if isinstance(dependency.call, Auth):
            return dependency.call
        stack.extend(dependency.dependencies)
    return None


def enumerate_routes(platform: Platform) -> list[Route]:
    """The routers' routes, plus whatever else the running app serves (its OpenAPI document and, on
    the embedded stack, the app's own route table): all of them, each method separately."""
    rules: dict[RouteKey, Auth | None] = {}
    for router in ROUTERS:
        for route in router.routes:
            assert isinstance(route, APIRoute), f"{route!r} in {router.prefix} is not an APIRoute"
            for method in route.methods or ():
                rules[(method, route.path)] = access_rule(route)
    spec = ok(platform.client.get("/openapi.json"))
    served = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops if m.upper() in HTTP_METHODS}
    if isinstance(platform.client, TestClient):
        for route in cast(FastAPI, platform.client.app).routes:
            if isinstance(route, APIRoute):
                for method in route.methods or ():
                    served.add((method, route.path))
                    rules.setdefault((method, route.path), access_rule(route))
    assert set(rules) <= served, f"routes of ROUTERS the app does not serve: {set(rules) - served}"
    ordered = sorted(served | set(rules), key=lambda k: (k[1], k[0]))
    return [Route(method, path, rules.get((method, path))) for method, path in ordered]


class Sweep:
    """Calls routes as B and checks the answers against A's identifiers."""

    def __init__(self, platform: Platform, a: Side, b: Side, a_state: Json) -> None:
        self.platform, self.client, self.a, self.b, self.a_state = platform, platform.client, a, b, a_state
        values = set(identifying_values(a_state)) | set(a.secrets) | {a.tenant.live_project_key}
        self.needles = {value: forms(value) for value in values}
        self.a_ids = set(identifying_values(a_state))
        self.calls = 0
        self.failures: list[str] = []
        self.reached: set[RouteKey] = set()
        self._counter = itertools.count(1)
        self.refresh_tokens: dict[str, str] = {
            "admin": b.admin_pair["refreshToken"],
            "auditor": b.auditor_pair["refreshToken"],
            "business": b.business_pair["refreshToken"],
            "user": b.user_pair["refreshToken"],
        }

    def fresh(self) -> str:
        return f"{next(self._counter)}{uuid.uuid4().hex[:6]}"

    # Bodies that need something from B at call time.

    def siwe_body(self, account: LocalAccount) -> Json:
        issued = ok(self.client.post("/v1/auth/siwe/nonce", headers=self.b.tenant.with_project()), 201)
        message = siwe_message(
            self.platform, account, issued["nonce"], issued["chainId"], resources=tuple(issued["resources"])
        )
        return {"authType": "user", "message": message, "signature": sign(account, message)}

    def sign_in_body(self, kind: str | None) -> Json:
        if kind == "admin":
            return {"authType": "admin", "email": self.b.admin_email, "password": PASSWORD}
        if kind == "auditor":
            return {"authType": "admin", "email": self.b.auditor_email, "password": AUDITOR_PASSWORD}
        if kind in ("user", "project"):
            return self.siwe_body(self.b.wallet)
        return {"authType": "business", "apiKey": self.b.api_key}

    def refresh_token(self, kind: str) -> str:
        """B's current refresh token of this kind; each successful refresh rotates it."""
        return self.refresh_tokens[kind]

    def rotate(self, kind: str, response: httpx.Response) -> None:
        if response.status_code == 200:
            self.refresh_tokens[kind] = response.json()["refreshToken"]

    # Checks.

    def leaks(self, response: httpx.Response, sent: str) -> list[str]:
        seen = (response.text + json.dumps(dict(response.headers))).lower()
        return [
            value
            for value, spellings in self.needles.items()
            if not any(s in sent for s in spellings) and any(s in seen for s in spellings)
        ]

    def call(self, route: Route, path: str, cred: Cred, call: Call) -> httpx.Response:
        present = {k.lower() for k in cred.headers}
        headers = {**cred.headers, **{k: v for k, v in call.headers.items() if k.lower() not in present}}
        response = self.client.request(
            route.method, path, params=call.query or None, json=call.body, headers=headers
        )
        self.calls += 1
        sent = json.dumps([path, call.query, call.body, headers]).lower()
        self.judge(route, path, cred, call, response, sent)
        if call.after is not None:
            call.after(response)
        return response

    def fail(self, what: str, response: httpx.Response, why: str) -> None:
        self.failures.append(f"{what} -> {response.status_code}: {why}\n    {response.text[:300]}")

    def judge(
        self, route: Route, path: str, cred: Cred, call: Call, response: httpx.Response, sent: str
    ) -> None:
        what = f"{route.method} {path}{'?' + str(call.query) if call.query else ''} as {cred.name}"
        what += f" ({call.note})" if call.note else ""
        status = response.status_code
        code = response.json().get("error", {}).get("code") if _is_json(response) and status >= 400 else None
        if status >= 500:
            self.fail(what, response, "server error")
        if leaked := self.leaks(response, sent):
            self.fail(what, response, f"tenant A's identifiers in the answer: {leaked}")
        expected = expectation(route, cred) or call.expect
        if expected is not None:
            statuses, codes = expected
            if status not in statuses or (codes is not None and code not in codes):
                self.fail(what, response, f"expected {sorted(statuses)} {sorted(codes or [])}, got {code}")
        if route.names_a_resource and 200 <= status < 300:
            self.fail(what, response, "a route naming A's resource answered 2xx")
        if 200 <= status < 300:
            self.reached.add((route.method, route.path))
            body = response.json() if _is_json(response) else None
            if isinstance(body, dict) and "accessToken" in body:
                self.check_session(what, body)

    def check_session(self, what: str, pair: Json) -> None:
        """A session handed out to B's credentials is a session in B."""
        me = self.client.get("/v1/auth/me", headers=bearer(pair["accessToken"]))
        if me.status_code != 200 or me.json()["tenantId"] != self.b.tenant.id:
            self.fail(what, me, f"the session it issued is not tenant B's ({self.b.tenant.id})")
        if pair["subjectId"] in self.a_ids:
            self.fail(what, me, "the session it issued is for one of A's subjects")

    def path_variants(self, route: Route) -> list[str]:
        """Each path parameter takes A's ids; with several, B's ids too, but never only B's."""
        a_ids, b_ids = self.a.path_ids(), self.b.path_ids()
        unknown = [p for p in route.params if not a_ids.get(p)]
        assert not unknown, f"{route.method} {route.path}: no id of tenant A for {unknown}: add it to Side"
        choices = [
            [(v, True) for v in a_ids[p]] + ([(v, False) for v in b_ids[p]] if len(route.params) > 1 else [])
            for p in route.params
        ]
        return [
            route.path.format(**{p: v for p, (v, _) in zip(route.params, combo, strict=True)})
            for combo in itertools.product(*choices)
            if any(is_a for _, is_a in combo)
        ]


def _is_json(response: httpx.Response) -> bool:
    return str(response.headers.get("content-type", "")).startswith("application/json")


def want(status: int, code: str | None = None) -> Expected:
    return {status}, None if code is None else {code}


def expectation(route: Route, cred: Cred) -> Expected | None:
    """What the route's access rule says this credential must get; None: any 2xx/4xx without leaks."""
    if route.rule is None:
        return None
    if cred.kind is None:  # the public routes name the credential they need
        return {401}, {"project_key_required" if route.rule.project_call else "unauthenticated"}
    if cred.mixed:
        return {403}, {"tenant_mismatch"}
    if cred.kind not in route.rule.kinds:
        return {403}, {"forbidden"}
    if route.names_a_resource:  # allowed to call it, but the resource is A's: missing (or not its own)
        return {403, 404}, {"forbidden", "not_found"}
    return None


# --- sample requests, per route -------------------------------------------------------------------

Sampler = Callable[[Sweep, Cred], list[Call]]


def one(body: Json | None = None) -> Sampler:
    return lambda sweep, cred: [Call(body=body)]


def token_calls(sweep: Sweep, cred: Cred) -> list[Call]:
    """Each kind signs in its own way, with B's secrets; with A's project key instead of B's, the admin
    and SIWE sign-ins must fail (B's admin is not A's, B's nonce is not A's)."""
    kind, b_project = cred.kind, sweep.b.tenant.with_project()
    if kind in ("admin", "auditor", "user"):
        expect = want(200)
        if cred.mixed:
            expect = want(401, "invalid_credentials" if kind != "user" else "siwe_nonce_unknown")
        return [Call(body=sweep.sign_in_body(kind), headers=b_project, expect=expect)]
    if kind == "project":
        return [
            Call(body=sweep.sign_in_body("user"), expect=want(200), note="SIWE"),
            Call(
                body={"authType": "admin", "email": sweep.a.admin_email, "password": PASSWORD},
                expect=want(401, "invalid_credentials"),
                note="A's admin email and password with B's project key",
            ),
        ]
    # Business credentials, the operator and no credentials: a business sign-in with B's key; next to
    # A's project key it is refused, otherwise it gives a session in B (check_session).
    expect = want(403, "tenant_mismatch") if cred.mixed else want(200)
    return [Call(body=sweep.sign_in_body("business"), expect=expect, note="business sign-in")]


def refresh_calls(sweep: Sweep, cred: Cred) -> list[Call]:
    """The current refresh token of B's matching session (the project key's: B's SIWE user's). Next to
    A's project key it is refused; otherwise the new session must be B's (check_session)."""
    if cred.kind in (None, "operator"):
        unknown = f"rt_{uuid.uuid4().hex}"
        return [Call(body={"refreshToken": unknown}, expect=want(401, "invalid_refresh_token"))]
    kind = "user" if cred.kind == "project" else cred.kind
    body = {"refreshToken": sweep.refresh_token(kind)}
    expect = want(403, "tenant_mismatch") if cred.mixed else want(200)
    return [Call(body=body, expect=expect, after=lambda response: sweep.rotate(kind, response))]


def logout_calls(sweep: Sweep, cred: Cred) -> list[Call]:
    """Logging out a throwaway session of B's: done, unless next to A's project key."""
    pair = ok(sweep.client.post("/v1/auth/token", json=sweep.sign_in_body("business")))
    expect = want(403, "tenant_mismatch") if cred.mixed else want(204)
    return [Call(body={"refreshToken": pair["refreshToken"]}, expect=expect)]


def password_calls(sweep: Sweep, cred: Cred) -> list[Call]:
    """B's auditor changes its password to the same one (its own session goes on); others guess wrong."""
    if cred.kind == "auditor" and not cred.mixed:
        return [Call(body={"currentPassword": AUDITOR_PASSWORD, "newPassword": AUDITOR_PASSWORD})]
    return [Call(body={"currentPassword": "not it", "newPassword": "a new long password"})]


def users_search(sweep: Sweep, cred: Cred) -> list[Call]:
    member = next(u for u in sweep.a_state["users"]["data"] if u["externalId"])
    return [
        Call(),
        Call(query={"walletAddress": sweep.a.wallet.address}),
        Call(query={"externalId": member["externalId"]}),
        Call(query={"email": member["email"]}),
        Call(query={"q": sweep.a.tenant.slug}),
    ]


def catalog_offer(platform: Platform, side: Side) -> str:
    """A catalog offer of the side's first token (a credit), fulfilled by its business."""
    body = {
        "kind": "catalog",
        "name": "Mug",
        "businessId": side.business_id,
        "costTokenId": side.token_ids[0],
        "costAmount": "1",
    }
    offer_id: str = ok(
        platform.client.post("/v1/redemptions", json=body, headers=side.tenant.admin_headers), 201
    )["id"]
    side.redemption_ids.append(offer_id)
    return offer_id


def signed_redeem(platform: Platform, side: Side, offer_id: str) -> Json:
    """The side's own-wallet user's redeem of `offer_id`: prepared, and signed by its wallet."""
    body = {"redemptionId": offer_id}
    prepared = ok(
        platform.client.post("/v1/redemptions/redeems/prepare", json=body, headers=side.user_headers)
    )
    signature = Account.sign_typed_data(side.wallet.key, full_message=prepared["typedData"]).signature
    return {
        **body,
        "ref": prepared["ref"],
        "deadline": str(prepared["deadline"]),
        "signature": "0x" + signature.hex(),
    }


def redeem_calls(sweep: Sweep, cred: Cred) -> list[Call]:
    """A's offer: not found. B's own user redeems B's offer."""
    calls = [Call(body={"redemptionId": sweep.a.redemption_ids[0]})]
    if cred.kind == "user" and not cred.mixed:
        calls.append(Call(body=signed_redeem(sweep.platform, sweep.b, sweep.b.redemption_ids[0])))
    return calls


SAMPLES: dict[RouteKey, Sampler] = {
    ("GET", "/healthz"): one(),
    ("GET", "/readyz"): one(),
    ("GET", "/metrics"): one(),
    ("GET", "/v1/relayer/status"): one(),
    ("POST", "/v1/auth/siwe/nonce"): one(),
    ("POST", "/v1/auth/token"): token_calls,
    ("POST", "/v1/auth/refresh"): refresh_calls,
    ("POST", "/v1/auth/logout"): logout_calls,
    ("GET", "/v1/auth/me"): one(),
    ("POST", "/v1/tenants"): lambda s, c: [
        Call(
            body={
                "name": "Gamma",
                "slug": f"gamma-{s.fresh()}",
                "adminEmail": f"owner@gamma-{s.fresh()}.example",
                "adminPassword": PASSWORD,
            }
        )
    ],
    # The operator sees every tenant: asked for B's by its slug, it must get B's alone.
    ("GET", "/v1/tenants"): lambda s, c: [Call(query={"slug": s.b.tenant.slug})],
    ("GET", "/v1/tenants/me"): one(),
    ("PATCH", "/v1/tenants/me"): lambda s, c: [Call(body={"name": f"Beta {s.fresh()}"})],
    ("GET", "/v1/tenants/me/contracts"): one(),
    ("POST", "/v1/admins"): lambda s, c: [
        Call(body={"email": f"admin-{s.fresh()}@{s.b.tenant.slug}.example", "role": "TENANT_ADMIN"})
    ],
    ("GET", "/v1/admins"): one(),
    ("POST", "/v1/admins/me/password"): password_calls,
    ("PATCH", "/v1/admins/{admin_id}"): one({"role": "AUDITOR"}),
    ("DELETE", "/v1/admins/{admin_id}"): one(),
    ("POST", "/v1/businesses"): one({"name": "Beta Annex"}),
    ("GET", "/v1/businesses"): one(),
    ("GET", "/v1/businesses/me"): one(),
    ("GET", "/v1/businesses/{business_id}"): one(),
    ("PATCH", "/v1/businesses/{business_id}"): one({"name": "Hijacked", "status": "suspended"}),
    ("POST", "/v1/businesses/{business_id}/api-keys"): one({"name": "hijack"}),
    ("GET", "/v1/businesses/{business_id}/api-keys"): one(),
    ("DELETE", "/v1/businesses/{business_id}/api-keys/{key_id}"): one(),
    ("POST", "/v1/users"): lambda s, c: [
        Call(body={"externalId": f"beta-{s.fresh()}", "email": f"m-{s.fresh()}@{s.b.tenant.slug}.example"})
    ],
    ("GET", "/v1/users"): users_search,
    ("GET", "/v1/users/me"): one(),
    ("PATCH", "/v1/users/me"): one({"name": "Beta Member"}),
    ("GET", "/v1/users/{user_id}"): one(),
    ("PATCH", "/v1/users/{user_id}"): one({"attributes": {"tier": "hijacked"}}),
    ("POST", "/v1/tokens"): lambda s, c: [
        Call(body={"kind": "reward", "name": "Beta Gift", "symbol": f"B{s.fresh()}"[:16]})
    ],
    ("GET", "/v1/tokens"): one(),
    ("GET", "/v1/tokens/{token_id}"): one(),
    ("GET", "/v1/tokens/{token_id}/holders"): one(),
    ("GET", "/v1/analytics/overview"): one(),
    ("GET", "/v1/analytics/campaigns/{campaign_id}"): one(),
    ("GET", "/v1/analytics/tokens/{token_id}"): one(),
    ("GET", "/v1/balances/accounts/{address}"): one(),
    ("GET", "/v1/users/me/balances"): one(),
    ("GET", "/v1/audit/events"): lambda s, c: [
        Call(),
        Call(query={"participantAddress": s.a.wallet.address}),
    ],
    ("GET", "/v1/audit/transactions/{transaction_id}/proof"): one(),
    ("POST", "/v1/audit/verify"): one(),
    ("GET", "/v1/audit/export"): lambda s, c: [
        Call(query={"format": "csv"}),
        Call(query={"format": "jsonl"}),
    ],
    # A's token named in B's token moves: not found, nothing queued in A; B's own token works.
    ("POST", "/v1/transactions/prepare"): lambda s, c: [
        Call(body=move(s, s.a, "transfer")),
        Call(body=move(s, s.b, "transfer")),
    ],
    ("POST", "/v1/transactions"): lambda s, c: [
        Call(body=move(s, s.a, "mint")),
        Call(body=move(s, s.a, "mint"), headers={"Idempotency-Key": f"k-{s.fresh()}"}),
        Call(body=move(s, s.b, "mint")),
    ],
    ("POST", "/v1/transactions/batch"): lambda s, c: [
        Call(body={"operations": [move(s, s.a, "mint"), move(s, s.b, "mint")]})
    ],
    ("GET", "/v1/transactions"): lambda s, c: [
        Call(),
        Call(query={"participantAddress": s.a.wallet.address}),
        Call(query={"tokenId": s.a.token_ids[0]}),
    ],
    ("GET", "/v1/transactions/me"): lambda s, c: [Call(), Call(query={"role": "recipient"})],
    ("GET", "/v1/transactions/{transaction_id}"): one(),
    ("PATCH", "/v1/tokens/{token_id}"): one({"metadataUri": "ipfs://hijacked/{id}"}),
    ("POST", "/v1/webhooks"): one(
        {"url": "http://127.0.0.1:9/beta-hooks", "eventTypes": ["transaction.mined"]}
    ),
    ("GET", "/v1/webhooks"): one(),
    ("DELETE", "/v1/webhooks/{webhook_id}"): one(),
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): one(),
    ("POST", "/v1/webhooks/{webhook_id}/test"): one(),
    ("GET", "/v1/campaigns/tags"): one(),
    ("POST", "/v1/campaigns"): lambda s, c: [Call(body={"name": "Beta", "businessId": s.b.business_id})],
    ("GET", "/v1/campaigns"): lambda s, c: [
        Call(),
        Call(query={"businessId": s.a.business_id}),
        Call(query={"tag": "welcome", "sortBy": "name", "sortOrder": "asc"}),
    ],
    ("GET", "/v1/campaigns/{campaign_id}"): one(),
    ("PATCH", "/v1/campaigns/{campaign_id}"): one({"name": "Hijacked"}),
    ("DELETE", "/v1/campaigns/{campaign_id}"): one(),
    ("POST", "/v1/campaigns/{campaign_id}/activate"): one(),
    ("POST", "/v1/campaigns/{campaign_id}/pause"): one(),
    ("POST", "/v1/campaigns/{campaign_id}/end"): one(),
    ("PUT", "/v1/campaigns/{campaign_id}/tags"): one({"tags": ["hijacked"]}),
    ("POST", "/v1/campaigns/{campaign_id}/tokens"): lambda s, c: [
        Call(body={"tokenId": s.b.token_ids[0], "amount": "1", "maxAmount": "9"})
    ],
    ("DELETE", "/v1/campaigns/{campaign_id}/tokens/{unit_id}"): one(),
    ("POST", "/v1/campaigns/{campaign_id}/triggers"): one({"type": "manual"}),
    ("GET", "/v1/campaigns/{campaign_id}/triggers"): one(),
    ("POST", "/v1/campaigns/{campaign_id}/engagements"): lambda s, c: [
        Call(body={"businessIds": [s.b.business_id]})
    ],
    ("GET", "/v1/campaigns/{campaign_id}/engagements"): one(),
    ("PUT", "/v1/campaign-engagements/{engagement_id}"): one({"status": "accepted"}),
    # A's campaign or QR source claimed by B: not found; B's own campaign claims.
    ("POST", "/v1/campaigns/claims"): lambda s, c: [
        Call(body=claim_body(s, c, s.a)),
        Call(body={"triggerSourceId": s.a.source_ids[0], "payload": s.a.qr_payload}),
        Call(body=claim_body(s, c, s.b)),
    ],
    ("GET", "/v1/campaigns/claims"): lambda s, c: [
        Call(),
        Call(query={"campaignId": s.a.campaign_ids[0]}),
        Call(query={"userId": s.a.user_ids[0]}),
    ],
    ("GET", "/v1/campaigns/claims/me"): one(),
    ("GET", "/v1/campaigns/claims/{claim_id}"): one(),
    ("POST", "/v1/trigger-sources"): lambda s, c: [
        Call(body={"triggerId": s.a.trigger_ids["qr_code"], "name": "Hijack"}),
        Call(body={"triggerId": s.b.trigger_ids["qr_code"], "name": "Beta desk"}),
    ],
    ("GET", "/v1/trigger-sources"): one(),
    ("POST", "/v1/trigger-sources/{source_id}/payload"): one(),
    ("POST", "/v1/events"): lambda s, c: [
        Call(body={"id": f"e-{s.fresh()}", "name": "visit", "userId": s.a.user_ids[0]}),
        Call(body={"id": f"e-{s.fresh()}", "name": "visit", "userId": s.b.user_ids[0]}),
    ],
    ("POST", "/v1/events/batch"): lambda s, c: [
        Call(
            body={
                "events": [
                    {"id": f"e-{s.fresh()}", "name": "visit", "userId": s.a.user_ids[0]},
                    {"id": f"e-{s.fresh()}", "name": "visit", "userId": s.b.user_ids[0]},
                ]
            }
        )
    ],
    # A's business and tokens named in B's offer: not found; B's own offer is created.
    ("POST", "/v1/redemptions"): lambda s, c: [
        Call(
            body={
                "kind": "catalog",
                "name": "Mug",
                "businessId": s.a.business_id,
                "costTokenId": s.b.token_ids[0],
                "costAmount": "1",
            }
        ),
        Call(
            body={
                "kind": "catalog",
                "name": "Mug",
                "businessId": s.b.business_id,
                "costTokenId": s.a.token_ids[0],
                "costAmount": "1",
            }
        ),
        Call(
            body={
                "kind": "catalog",
                "name": "Mug",
                "businessId": s.b.business_id,
                "costTokenId": s.b.token_ids[0],
                "costAmount": "1",
            }
        ),
    ],
    ("GET", "/v1/redemptions"): one(),
    ("GET", "/v1/redemptions/{redemption_id}"): one(),
    ("PATCH", "/v1/redemptions/{redemption_id}"): one({"name": "Hijacked", "active": False}),
    ("POST", "/v1/redemptions/redeems/prepare"): lambda s, c: [
        Call(body={"redemptionId": s.a.redemption_ids[0]}),
        Call(body={"redemptionId": s.b.redemption_ids[0]}),
    ],
    ("POST", "/v1/redemptions/redeems"): redeem_calls,
    ("GET", "/v1/redemptions/redeems"): one(),
    ("GET", "/v1/redemptions/redeems/me"): one(),
    ("POST", "/v1/redemptions/redeems/{redeem_id}/fulfil"): one(),
    # A's status or credit token in B's tier: not found; B's own tokens make a tier.
    ("POST", "/v1/status-tiers"): lambda s, c: [
        Call(body=tier_body(s.a, s.b)),
        Call(body=tier_body(s.b, s.a)),
        Call(body=tier_body(s.b, s.b)),
    ],
    ("GET", "/v1/status-tiers"): one(),
    ("GET", "/v1/status-tiers/{tier_id}"): one(),
    ("PATCH", "/v1/status-tiers/{tier_id}"): one({"name": "Hijacked", "active": False}),
    ("DELETE", "/v1/status-tiers/{tier_id}"): one(),
    ("GET", "/v1/status-tiers/{tier_id}/members"): one(),
    ("GET", "/v1/users/me/status"): one(),
    ("GET", "/v1/users/{user_id}/status"): one(),
}


def claim_body(sweep: Sweep, cred: Cred, owner: Side) -> Json:
    """A claim of `owner`'s campaign for B's user (a user's session claims for itself)."""
    body = {"campaignId": owner.campaign_ids[0]}
    return body if cred.kind == "user" else {**body, "userId": sweep.b.user_ids[0]}


def move(sweep: Sweep, owner: Side, kind: str) -> Json:
    """A movement of `owner`'s first token to B's wallet (a transfer from `owner`'s wallet)."""
    body = {"type": kind, "tokenId": owner.token_ids[0], "to": sweep.b.wallet.address, "amount": "1"}
    return body if kind == "mint" else {**body, "from": owner.wallet.address}


def credentials(platform: Platform, a: Side, b: Side) -> list[Cred]:
    sessions = [
        Cred("B admin JWT", "admin", b.tenant.admin_headers),
        Cred("B auditor JWT", "auditor", b.auditor_headers),
        Cred("B business API key", "business", {"X-API-Key": b.api_key}),
        Cred("B business JWT", "business", bearer(b.business_pair["accessToken"])),
        Cred("B user JWT", "user", b.user_headers),
    ]
    mixed = [
        Cred(f"A project key + {c.name}", c.kind, {"X-Project-Key": a.tenant.project_key, **c.headers}, True)
        for c in sessions
    ]
    return [
        *sessions,
        Cred("B project key", "project", b.tenant.with_project()),
        *mixed,
        Cred("operator", "operator", platform.operator()),  # no tenant at all
        Cred("anonymous", None, {}),
    ]


# --- the test -----------------------------------------------------------------------------------------


def test_no_route_gives_another_tenant_access(platform: Platform) -> None:
    client = platform.client
    a = set_up_alpha(platform)
    b = set_up_beta(platform)
    wait_until_settled(platform, a)
    wait_until_settled(platform, b)
    mint = {"type": "mint", "tokenId": a.token_ids[0], "to": a.wallet.address, "amount": "5"}
    created = ok(client.post("/v1/transactions", json=mint, headers={"X-API-Key": a.api_key}), 202)
    a.transaction_ids.append(created["id"])
    # Settled before the snapshot: its `transaction.mined` event adds a delivery to A's webhook log.
    wait_for(
        lambda: ok(client.get(f"/v1/transactions/{created['id']}", headers={"X-API-Key": a.api_key})),
        lambda op: op["status"] == "mined",
        "tenant A's mint",
    )
    # A's member redeems a catalog offer with what it was minted (a burn, mined: a second delivery);
    # B's member holds B's credits for its own redeems in the sweep.
    a_redeem = ok(
        client.post(
            "/v1/redemptions/redeems",
            json=signed_redeem(platform, a, catalog_offer(platform, a)),
            headers=a.user_headers,
        ),
        202,
    )
    a.redeem_ids.append(a_redeem["id"])
    funded = {"type": "mint", "tokenId": b.token_ids[0], "to": b.wallet.address, "amount": "1000"}
    b_mint = ok(client.post("/v1/transactions", json=funded, headers={"X-API-Key": b.api_key}), 202)
    catalog_offer(platform, b)
    wait_for(
        lambda: ok(client.get("/v1/redemptions/redeems/me", headers=a.user_headers))["data"][0],
        lambda r: r["status"] == "COMPLETED",
        "tenant A's redeem",
    )
    wait_for(
        lambda: ok(client.get(f"/v1/transactions/{b_mint['id']}", headers={"X-API-Key": b.api_key})),
        lambda op: op["status"] == "mined",
        "tenant B's mint",
    )
    wait_for(
        lambda: ok(client.get(f"/v1/webhooks/{a.webhook_ids[0]}/deliveries", headers=a.tenant.admin_headers)),
        lambda log: len(log["data"]) == 3,
        "tenant A's transaction.mined deliveries",
    )
    open_campaign(platform, a)
    open_campaign(platform, b)
    claim = {"campaignId": a.campaign_ids[0], "userId": a.user_ids[0]}
    a.claim_ids.append(
        ok(client.post("/v1/campaigns/claims", json=claim, headers={"X-API-Key": a.api_key}), 202)["id"]
    )
    wait_for(
        lambda: ok(client.get(f"/v1/campaigns/claims/{a.claim_ids[0]}", headers=a.tenant.admin_headers)),
        lambda found: found["status"] == "completed",
        "tenant A's claim",
    )
    wait_for(
        lambda: ok(client.get(f"/v1/webhooks/{a.webhook_ids[0]}/deliveries", headers=a.tenant.admin_headers)),
        lambda log: len(log["data"]) == 4,
        "tenant A's claim's transaction.mined delivery",
    )
    before = snapshot(platform, a)

    sweep = Sweep(platform, a, b, before)
    short = [v for v in sweep.needles if len(v) < 12]
    assert not short, f"identifiers too short to search for safely: {short}"
    # Nothing identifying is shared between tenants (the factory is left out), so an overlap is a leak.
    shared = [v for v in sweep.needles if v in set(identifying_values(snapshot(platform, b)))]
    assert not shared, f"tenant B's admin reads tenant A's identifiers in B's own state: {shared}"

    routes = enumerate_routes(platform)
    keys = {(r.method, r.path) for r in routes}
    missing = sorted(keys - SAMPLES.keys())
    assert not missing, f"routes without a sample request in SAMPLES (add one, with a valid body): {missing}"
    stale = sorted(SAMPLES.keys() - keys)
    assert not stale, f"SAMPLES names routes the app does not have: {stale}"

    creds = credentials(platform, a, b)
    for route in routes:
        sampler = SAMPLES[(route.method, route.path)]
        paths = sweep.path_variants(route) if route.params else [route.path]
        for cred in creds:
            for call in sampler(sweep, cred):
                for path in paths:
                    sweep.call(route, path, cred, call)
    swept = sweep.calls

    # Every route without path parameters did something for someone (the sweep is not all refusals).
    unreached = sorted(k for k in keys - sweep.reached if "{" not in k[1])
    assert not unreached, f"routes no credential could use, so their isolation went unchecked: {unreached}"

    # A's identifiers in B's writes: B gets its own records, never A's, and no conflict with A's.
    member = next(u for u in before["users"]["data"] if u["externalId"])
    b_key, b_admin = {"X-API-Key": b.api_key}, b.tenant.admin_headers
    probes: list[tuple[str, str, dict[str, str], Json, int]] = [
        ("POST", "/v1/users", b_key, {"email": member["email"]}, 201),
        ("POST", "/v1/users", b_key, {"externalId": member["externalId"]}, 201),
        ("POST", "/v1/users", b_key, {"walletAddress": a.wallet.address}, 201),
        ("POST", "/v1/admins", b_admin, {"email": a.admin_email, "role": "AUDITOR"}, 201),
        ("POST", "/v1/tokens", b_admin, {"kind": "reward", "name": "Gift", "symbol": "ALPHAGIFT"}, 202),
    ]
    for method, path, headers, body, status in probes:
        response = client.request(method, path, json=body, headers=headers)
        sweep.calls += 1
        what = f"{method} {path} {body} as B"
        if response.status_code != status:
            sweep.fail(what, response, f"expected {status}")
        if leaked := sweep.leaks(response, json.dumps([path, body]).lower()):
            sweep.fail(what, response, f"tenant A's identifiers in the answer: {leaked}")
    # A's member signing in to B with the same wallet becomes B's user, not A's.
    signed_in = client.post("/v1/auth/token", json=sweep.siwe_body(a.wallet), headers=b.tenant.with_project())
    sweep.calls += 1
    if signed_in.status_code != 200:
        sweep.fail("SIWE of A's wallet into B", signed_in, "expected 200")
    else:
        sweep.check_session("SIWE of A's wallet into B", signed_in.json())

    assert not sweep.failures, f"{len(sweep.failures)} isolation failure(s):\n" + "\n".join(sweep.failures)
    probes_made = sweep.calls - swept
    print(f"\n{swept} calls over {len(routes)} routes x {len(creds)} credentials, {probes_made} probes")

    # A, read back with its own credentials, is exactly as it was.
    assert snapshot(platform, a) == before
    assert ok(client.get("/v1/businesses/me", headers={"X-API-Key": a.api_key}))["id"] == a.business_id
    for pair, subject in ((a.admin_pair, None), (a.business_pair, a.business_id), (a.user_pair, None)):
        refreshed = ok(client.post("/v1/auth/refresh", json={"refreshToken": pair["refreshToken"]}))
        me = ok(client.get("/v1/auth/me", headers=bearer(refreshed["accessToken"])))
        assert (me["tenantId"], me["subjectId"]) == (a.tenant.id, subject or pair["subjectId"])
