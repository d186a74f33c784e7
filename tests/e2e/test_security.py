"""The attacks of the security review (issue 8), played again: each must fail now.

Attacks on budgets run against a `pers api` process of their own (the production code on the
production stack's Postgres and Redis) with the default limits, attacker and victim on separate
loopback addresses. The others run on both stacks through the `platform` fixture."""

import os
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
from eth_account import Account

from backend.settings import PROJECT_ROOT
from tests.conftest import free_port, reachable
from tests.platform import (
    PASSWORD,
    Platform,
    TenantSession,
    bearer,
    create_tenant,
    sign,
    siwe_message,
    siwe_sign_in,
)


def code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


PROXY = "127.254.254.254"  # the one address whose forwarding headers the `api` process trusts


def loopback() -> str:
    """A loopback address for one side of one test: budgets kept in Redis outlive the test."""
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


@dataclass
class Api:
    base: str
    proc: subprocess.Popen[bytes]
    log: Path

    def client(self, address: str, timeout: float = 30) -> httpx.Client:
        """A client whose requests come from `address` (every 127.x.y.z is this host)."""
        transport = httpx.HTTPTransport(local_address=address)
        return httpx.Client(base_url=self.base, transport=transport, timeout=timeout)

    def peak_rss_mib(self) -> float:
        """The largest peak of the API's processes (several of them serve one port with Redis)."""
        pid = self.proc.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        peaks = []
        for process in (pid, *map(int, children)):
            found = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{process}/status").read_text())
            assert found is not None
            peaks.append(int(found.group(1)) / 1024)
        return max(peaks)


@pytest.fixture(scope="module")
def api(production_platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """`pers api` with the default budgets, over the production stack's database and Redis. Only the
    per-key budget (to see a flood refused quickly) and the per-identity backstop are smaller."""
    assert production_platform.env is not None
    port = free_port()
    env = {
        k: v
        for k, v in production_platform.env.items()
        if not k.startswith("PERS_RATE") and "SIGNIN" not in k
    }
    env.update(
        PERS_RATE_LIMIT_PER_KEY="50",
        PERS_TRUSTED_PROXIES=f'["{PROXY}"]',
        PERS_SIGNIN_FAILURES_PER_IDENTITY="15",
        PERS_SIWE_DOMAINS=f'["127.0.0.1:{port}"]',
        PERS_DATA_DIR=str(tmp_path_factory.mktemp("attacked")),
    )
    log = tmp_path_factory.mktemp("attacked-log") / "api.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "api", "--port", str(port)],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while not reachable("127.0.0.1", port):
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            yield Api(f"http://127.0.0.1:{port}", proc, log)
        finally:
            proc.terminate()
            proc.wait(20)


@contextmanager
def flooding(send: Callable[[], int]) -> Iterator[list[int]]:
    """`send()` over and over on another thread while the block runs: the attacker keeps going."""
    statuses: list[int] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            statuses.append(send())

    thread = threading.Thread(target=run)
    thread.start()
    try:
        while not statuses:  # the flood is under way
            time.sleep(0.01)
        yield statuses
    finally:
        stop.set()
        thread.join()


def admin_login(client: httpx.Client, tenant: TenantSession, password: str) -> httpx.Response:
    email = tenant.raw["admin"]["email"]
    return client.post(
        "/v1/auth/token",
        json={"authType": "admin", "email": email, "password": password},
        headers=tenant.with_project(),
    )


# --- 1. one business's customers are not another's ------------------------------------------------


def business_key(platform: Platform, tenant: TenantSession, name: str) -> dict[str, str]:
    client = platform.client
    business = client.post("/v1/businesses", json={"name": name}, headers=tenant.admin_headers).json()
    key = client.post(f"/v1/businesses/{business['id']}/api-keys", json={}, headers=tenant.admin_headers)
    return {"X-API-Key": key.json()["key"]}


def test_a_business_cannot_hijack_or_read_another_businesss_customers(platform: Platform) -> None:
    client, tenant = platform.client, create_tenant(platform)
    shop_a, shop_b = business_key(platform, tenant, "A"), business_key(platform, tenant, "B")
    a_wallet, a_wallet2 = Account.create().address, Account.create().address

    # A squats B's external id and a customer's email, pointing them at A's wallets.
    squat = {"externalId": "shopB-cust-42", "walletAddress": a_wallet}
    assert client.post("/v1/users", json=squat, headers=shop_a).status_code == 201
    squat_email = {"email": "bob@example.com", "walletAddress": a_wallet2}
    assert client.post("/v1/users", json=squat_email, headers=shop_a).status_code == 201
    # B's lookups find B's own customers, never A's wallets.
    mine = client.post("/v1/users", json={"externalId": "shopB-cust-42"}, headers=shop_b)
    assert mine.status_code == 201 and mine.json()["walletAddress"] not in (a_wallet, a_wallet2)
    by_email = client.post("/v1/users", json={"email": "BOB@example.com"}, headers=shop_b)
    assert by_email.status_code == 201 and by_email.json()["walletAddress"] not in (a_wallet, a_wallet2)
    again = client.post("/v1/users", json={"externalId": "shopB-cust-42"}, headers=shop_b)
    assert again.status_code == 200 and again.json()["id"] == mine.json()["id"]

    # A cannot attach identifiers to B's customer: naming the wallet gives A its own record only.
    carol = client.post(
        "/v1/users", json={"externalId": "b-carol", "email": "carol@example.com"}, headers=shop_b
    ).json()
    grab = {"walletAddress": carol["walletAddress"], "externalId": "a-carol", "email": "mallory@example.com"}
    grabbed = client.post("/v1/users", json=grab, headers=shop_a)
    assert grabbed.status_code == 200 and grabbed.json()["email"] == "mallory@example.com"
    seen_by_b = client.get(f"/v1/users/{carol['id']}", headers=shop_b).json()
    assert (seen_by_b["externalId"], seen_by_b["email"]) == ("b-carol", "carol@example.com")

    # A's search lists only A's customers, and A cannot read B's.
    listed = client.get("/v1/users", params={"q": "example.com", "limit": 200}, headers=shop_a).json()
    assert {u["email"] for u in listed["data"]} == {"bob@example.com", "mallory@example.com"}
    assert "carol@example.com" not in str(listed)
    assert client.get(f"/v1/users/{mine.json()['id']}", headers=shop_a).status_code == 404
    # Admins see every customer, with each business's record.
    every = client.get("/v1/users", params={"limit": 200}, headers=tenant.admin_headers).json()
    assert every["meta"]["total"] == 5
    carol_links = next(u for u in every["data"] if u["id"] == carol["id"])["businesses"]
    assert {link["externalId"] for link in carol_links} == {"b-carol", "a-carol"}


def test_program_attributes_are_not_the_users_to_change(platform: Platform) -> None:
    client, tenant = platform.client, create_tenant(platform)
    shop = business_key(platform, tenant, "Shop")
    wallet = Account.create()
    created = client.post(
        "/v1/users",
        json={"walletAddress": wallet.address, "attributes": {"tier": "bronze", "crm": "123"}},
        headers=shop,
    ).json()
    user = bearer(siwe_sign_in(platform, tenant, wallet).json()["accessToken"])
    promoted = client.patch("/v1/users/me", json={"attributes": {"tier": "platinum"}}, headers=user)
    assert promoted.status_code == 422 and code(promoted) == "unknown_field"
    own = client.patch("/v1/users/me", json={"profile": {"theme": "dark"}}, headers=user)
    assert own.status_code == 200 and own.json()["profile"] == {"theme": "dark"}
    assert client.get(f"/v1/users/{created['id']}", headers=shop).json()["attributes"] == {
        "tier": "bronze",
        "crm": "123",
    }
    # The business updates its record; the admin the tenant's; neither sees the user's profile change it.
    silver = client.patch(f"/v1/users/{created['id']}", json={"attributes": {"tier": "silver"}}, headers=shop)
    assert silver.status_code == 200 and silver.json()["attributes"] == {"tier": "silver"}
    renamed = client.patch(f"/v1/users/{created['id']}", json={"name": "X"}, headers=shop)
    assert renamed.status_code == 422 and code(renamed) == "field_not_allowed"
    admin = client.patch(
        f"/v1/users/{created['id']}",
        json={"name": "Ada", "attributes": {"vip": True}},
        headers=tenant.admin_headers,
    )
    assert admin.status_code == 200 and (admin.json()["name"], admin.json()["attributes"]) == (
        "Ada",
        {"vip": True},
    )
    me = client.get("/v1/users/me", headers=user).json()
    assert (me["name"], me["attributes"], me["profile"]) == ("Ada", {"vip": True}, {"theme": "dark"})
    other = business_key(platform, tenant, "Other")
    assert client.patch(f"/v1/users/{created['id']}", json={}, headers=other).status_code == 404


# --- 2. budgets: no lock-out, no blocked public API -----------------------------------------------


def test_an_attacker_cannot_lock_the_admin_out(api: Api, production_platform: Platform) -> None:
    tenant = create_tenant(production_platform)
    attackers = [api.client(loopback()) for _ in range(3)]
    statuses = [admin_login(attackers[0], tenant, f"guess {i}").status_code for i in range(40)]
    assert statuses[:10] == [401] * 10 and set(statuses[10:]) == {429}
    with (
        flooding(lambda: admin_login(attackers[0], tenant, "guess again").status_code) as flood,
        api.client(loopback()) as admin,  # the real admin, from another address, during the attack
    ):
        assert admin_login(admin, tenant, PASSWORD).status_code == 200
    assert set(flood) == {429}
    # More addresses spend the identity's backstop (15): then only addresses without a failure may try.
    for attacker in attackers[1:]:
        for i in range(10):
            admin_login(attacker, tenant, f"guess {i}")
    assert admin_login(attackers[1], tenant, "one more").status_code == 429
    with api.client(loopback()) as fresh:
        assert admin_login(fresh, tenant, "a first guess").status_code == 401
        assert admin_login(fresh, tenant, "a second guess").status_code == 429
    with api.client(loopback()) as admin:
        assert admin_login(admin, tenant, PASSWORD).status_code == 200
    for attacker in attackers:
        attacker.close()
    # Each attempt is in the log with its address and outcome, never the password.
    log = api.log.read_text()
    assert '"outcome": "invalid_credentials"' in log and '"outcome": "ok"' in log
    assert "guess" not in log and PASSWORD not in log


def test_a_nonce_flood_does_not_block_the_tenants_other_users(
    api: Api, production_platform: Platform
) -> None:
    tenant = create_tenant(production_platform)
    with api.client(loopback()) as attacker, api.client(loopback()) as user:
        started = time.monotonic()
        flood = [
            attacker.post("/v1/auth/siwe/nonce", headers=tenant.with_project()).status_code for _ in range(80)
        ]
        # The key's burst (50), then refusals but for what refills meanwhile (a loaded machine is slow).
        refilled = (time.monotonic() - started) / 1.2 + 1
        assert flood[:50] == [201] * 50 and set(flood[50:]) <= {201, 429}
        assert flood[50:].count(201) <= refilled, flood

        def nonce() -> int:
            return attacker.post("/v1/auth/siwe/nonce", headers=tenant.with_project()).status_code

        started = time.monotonic()
        with flooding(nonce) as still:
            for _ in range(5):
                assert user.post("/v1/auth/siwe/nonce", headers=tenant.with_project()).status_code == 201
                assert user.get("/v1/tokens", headers=tenant.with_project()).status_code == 200
        # The key's budget (50 a minute) refills one request every 1.2 s while the flood goes on: the
        # attacker gets those and nothing more.
        refilled = (time.monotonic() - started) / 1.2 + 1
        assert set(still) <= {201, 429} and still.count(201) <= refilled and still.count(429) > refilled


# --- 3. a burst of sign-ins leaves the rest of the API alone ----------------------------------------


def test_a_sign_in_burst_neither_stalls_the_api_nor_exhausts_memory(
    api: Api, production_platform: Platform
) -> None:
    tenant = create_tenant(production_platform)
    attacker = loopback()

    def attempt(i: int) -> int:
        with api.client(attacker) as client:
            return admin_login(client, tenant, f"burst {i}").status_code

    waits = []
    with ThreadPoolExecutor(120) as pool, api.client(loopback(), timeout=10.0) as health:
        burst = pool.map(attempt, range(120))
        for _ in range(20):  # a stalled API (no answer in 10 s, on a machine busy with other suites) fails
            started = time.perf_counter()
            assert health.get("/healthz").status_code == 200
            waits.append(time.perf_counter() - started)
        statuses = list(burst)
    # Wrong passwords checked: the failure budget (10), plus at most what was in flight when it ran out
    # (the password pool's 8 places).
    assert set(statuses) <= {401, 429} and statuses.count(401) <= 10 + 8
    peak = api.peak_rss_mib()
    print(f"\n/healthz during the burst: max {max(waits) * 1000:.0f} ms; peak RSS {peak:.0f} MiB")
    assert peak < 400


# --- 4. a session stays in its environment --------------------------------------------------------


def test_a_test_session_cannot_manage_live_keys(platform: Platform) -> None:
    client, tenant = platform.client, create_tenant(platform)
    business = client.post("/v1/businesses", json={"name": "Shop"}, headers=tenant.admin_headers).json()
    keys = f"/v1/businesses/{business['id']}/api-keys"
    live = client.post(keys, json={"environment": "live"}, headers=tenant.admin_headers)
    assert live.status_code == 422 and code(live) == "unknown_field"
    live_admin = client.post(
        "/v1/auth/token",
        json={"authType": "admin", "email": tenant.raw["admin"]["email"], "password": PASSWORD},
        headers={"X-Project-Key": tenant.live_project_key},
    )
    live_headers = bearer(live_admin.json()["accessToken"])
    live_key = client.post(keys, json={}, headers=live_headers).json()
    assert live_key["key"].startswith("sk_live_")
    test_key = client.post(keys, json={}, headers=tenant.admin_headers).json()
    assert test_key["key"].startswith("sk_test_")
    listed = client.get(keys, headers=tenant.admin_headers).json()["data"]
    assert [k["id"] for k in listed] == [test_key["id"]]
    revoke = client.delete(f"{keys}/{live_key['id']}", headers=tenant.admin_headers)
    assert revoke.status_code == 404
    assert client.get("/v1/users", headers={"X-API-Key": live_key["key"]}).status_code == 200


# --- 5 and 6. forged forwarding headers and guessed credentials meet 429 ------------------------------


def test_forged_forwarded_for_is_ignored(api: Api, production_platform: Platform) -> None:
    tenant = create_tenant(production_platform)
    with api.client(loopback()) as attacker:
        statuses = [
            attacker.post(
                "/v1/auth/token",
                json={"authType": "admin", "email": tenant.raw["admin"]["email"], "password": f"g{i}"},
                headers={**tenant.with_project(), "X-Forwarded-For": f"10.{i}.{i}.{i}"},
            ).status_code
            for i in range(20)
        ]
    assert 429 in statuses


def test_a_trusted_proxys_forwarded_for_counts(api: Api, production_platform: Platform) -> None:
    tenant = create_tenant(production_platform)
    behind = [f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{i}" for i in (1, 2)]
    with api.client(PROXY) as proxy:

        def login(client: str, password: str) -> int:
            headers = {**tenant.with_project(), "X-Forwarded-For": client}
            email = tenant.raw["admin"]["email"]
            body = {"authType": "admin", "email": email, "password": password}
            return proxy.post("/v1/auth/token", json=body, headers=headers).status_code

        assert [login(behind[0], f"g{i}") for i in range(11)] == [401] * 10 + [429]
        # Another client behind the same proxy has budgets of its own.
        assert login(behind[1], PASSWORD) == 200


@pytest.mark.parametrize(
    "guess",
    [
        lambda i: {"X-API-Key": f"sk_test_{uuid.uuid4().hex}"},
        lambda i: bearer(jwt.encode({"sub": str(i)}, "not the secret, though long enough for HS256")),
        lambda i: bearer(f"op_{uuid.uuid4().hex}"),
    ],
    ids=["api-key", "bearer", "operator"],
)
def test_guessed_credentials_meet_429(api: Api, guess: object) -> None:
    with api.client(loopback()) as attacker, api.client(loopback()) as bystander:
        statuses = [attacker.get("/v1/tokens", headers=guess(i)).status_code for i in range(40)]  # type: ignore[operator]
        assert statuses[:30] == [401] * 30 and set(statuses[30:]) == {429}
        assert bystander.get("/v1/tokens", headers=guess(0)).status_code == 401  # type: ignore[operator]


def test_short_secrets_are_refused_at_start(tmp_path: Path) -> None:
    for variable in ("PERS_OPERATOR_TOKEN", "PERS_JWT_SECRET"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PERS_")}
        secrets = {"PERS_OPERATOR_TOKEN": "o" * 32, "PERS_JWT_SECRET": "j" * 32, variable: "short"}
        env.update(PERS_DATA_DIR=str(tmp_path), PERS_MASTER_KEY="00" * 32, **secrets)
        result = subprocess.run(
            [sys.executable, "-m", "backend.cli", "api", "--port", str(free_port())],
            env=env,
            capture_output=True,
            text=True,
            cwd=PROJECT_ROOT,
            timeout=60,
        )
        assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert variable in result.stderr and "32 bytes" in result.stderr


# --- 7. SIWE: the URI and the tenant -----------------------------------------------------------------


def test_siwe_refuses_a_phishing_uri_and_another_tenants_message(platform: Platform) -> None:
    client, tenant = platform.client, create_tenant(platform)
    phish = siwe_sign_in(platform, tenant, Account.create(), uri="https://evil.example/phish")
    assert phish.status_code == 401 and code(phish) == "siwe_uri_mismatch"
    downgraded = siwe_sign_in(
        platform, tenant, Account.create(), scheme="https", uri=f"http://{platform.siwe_domain}/login"
    )
    assert downgraded.status_code == 401 and code(downgraded) == "siwe_uri_mismatch"
    # Without a scheme in the message, http is accepted on a loopback domain (a developer's machine) only.
    plain = siwe_sign_in(platform, tenant, Account.create(), uri=f"http://{platform.siwe_domain}/login")
    assert plain.status_code == (200 if platform.siwe_domain.startswith("127.0.0.1:") else 401), plain.text

    wallet, other = Account.create(), create_tenant(platform, "Other")
    issued = client.post("/v1/auth/siwe/nonce", headers=tenant.with_project()).json()
    others = client.post("/v1/auth/siwe/nonce", headers=other.with_project()).json()
    for resources in ((), tuple(others["resources"])):
        message = siwe_message(platform, wallet, issued["nonce"], issued["chainId"], resources=resources)
        refused = client.post(
            "/v1/auth/token",
            json={"authType": "user", "message": message, "signature": sign(wallet, message)},
            headers=tenant.with_project(),
        )
        assert refused.status_code == 401 and code(refused) == "siwe_tenant_mismatch", resources
        issued = client.post("/v1/auth/siwe/nonce", headers=tenant.with_project()).json()


# --- 8. token metadata and symbols ---------------------------------------------------------------------


def test_token_metadata_uris_and_symbols(platform: Platform) -> None:
    client, tenant = platform.client, create_tenant(platform)
    for uri in (
        "javascript:alert(1)",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
        "data:,x",
    ):
        body = {"kind": "reward", "name": "Mug", "symbol": "MUG", "metadataUri": uri}
        refused = client.post("/v1/tokens", json=body, headers=tenant.admin_headers)
        assert refused.status_code == 422 and code(refused) == "invalid_value", uri
    ok = {"kind": "reward", "name": "Points", "symbol": "PTS", "metadataUri": "ipfs://bafy/{id}.json"}
    assert client.post("/v1/tokens", json=ok, headers=tenant.admin_headers).status_code == 202
    for symbol in ("pts", "Pts"):
        taken = client.post("/v1/tokens", json={**ok, "symbol": symbol}, headers=tenant.admin_headers)
        assert taken.status_code == 409 and code(taken) == "symbol_taken", symbol


# --- also: sessions end when they should ----------------------------------------------------------


def test_logout_ends_the_session_and_its_access_token(platform: Platform) -> None:
    client, tenant = platform.client, create_tenant(platform)
    pair = siwe_sign_in(platform, tenant, Account.create()).json()
    assert client.get("/v1/auth/me", headers=bearer(pair["accessToken"])).status_code == 200
    out = client.post("/v1/auth/logout", json={"refreshToken": pair["refreshToken"]})
    assert out.status_code == 204
    ended = client.get("/v1/auth/me", headers=bearer(pair["accessToken"]))
    assert ended.status_code == 401 and code(ended) == "session_revoked"
    again = client.post("/v1/auth/refresh", json={"refreshToken": pair["refreshToken"]})
    assert again.status_code == 401 and code(again) == "refresh_token_revoked"


def test_admin_removal_role_change_and_password_change_end_sessions(platform: Platform) -> None:
    client, tenant = platform.client, create_tenant(platform)
    owner = tenant.admin_headers

    def admin(email: str, role: str) -> tuple[str, dict[str, str]]:
        made = client.post(
            "/v1/admins", json={"email": email, "role": role, "password": PASSWORD}, headers=owner
        )
        signed = client.post(
            "/v1/auth/token",
            json={"authType": "admin", "email": email, "password": PASSWORD},
            headers=tenant.with_project(),
        )
        return made.json()["id"], bearer(signed.json()["accessToken"])

    removed_id, removed = admin("gone@example.com", "TENANT_ADMIN")
    assert client.get("/v1/admins", headers=removed).status_code == 200
    assert client.delete(f"/v1/admins/{removed_id}", headers=owner).status_code == 204
    after = client.get("/v1/admins", headers=removed)
    assert after.status_code == 401 and code(after) == "session_revoked"

    demoted_id, demoted = admin("demoted@example.com", "TENANT_ADMIN")
    changed = client.patch(f"/v1/admins/{demoted_id}", json={"role": "AUDITOR"}, headers=owner)
    assert changed.status_code == 200 and changed.json()["role"] == "AUDITOR"
    assert code(client.post("/v1/businesses", json={"name": "X"}, headers=demoted)) == "session_revoked"

    # Password change: the other sessions end at once, this one goes on, the old password is gone.
    me_id, me = admin("me@example.com", "TENANT_ADMIN")
    _, elsewhere = (
        me_id,
        client.post(
            "/v1/auth/token",
            json={"authType": "admin", "email": "me@example.com", "password": PASSWORD},
            headers=tenant.with_project(),
        ),
    )
    wrong = client.post(
        "/v1/admins/me/password",
        json={"currentPassword": "nope", "newPassword": "a new long password"},
        headers=me,
    )
    assert wrong.status_code == 401 and code(wrong) == "invalid_credentials"
    new = {"currentPassword": PASSWORD, "newPassword": "a new long password"}
    assert client.post("/v1/admins/me/password", json=new, headers=me).status_code == 204
    assert client.get("/v1/admins", headers=me).status_code == 200
    stale = client.get("/v1/admins", headers=bearer(elsewhere.json()["accessToken"]))
    assert stale.status_code == 401 and code(stale) == "session_revoked"
    old = client.post(
        "/v1/auth/token",
        json={"authType": "admin", "email": "me@example.com", "password": PASSWORD},
        headers=tenant.with_project(),
    )
    assert old.status_code == 401

    # The last TENANT_ADMIN stays.
    for other_id in (me_id,):
        assert client.delete(f"/v1/admins/{other_id}", headers=owner).status_code == 204
    owner_id = client.get("/v1/auth/me", headers=owner).json()["subjectId"]
    last = client.delete(f"/v1/admins/{owner_id}", headers=owner)
    assert last.status_code == 409 and code(last) == "last_admin"


def test_access_tokens_carry_issuer_and_audience(platform: Platform) -> None:
    client, tenant = platform.client, create_tenant(platform)
    token = tenant.admin_headers["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["iss"], claims["aud"]) == ("pers", "pers-api")
    # Signed with the right secret, but for another issuer or audience, or for none: refused.
    if platform.env is not None:
        secret = platform.env["PERS_JWT_SECRET"].encode()
    else:
        secret = platform.client.app.state.runtime.settings.secret_jwt_key()  # type: ignore[attr-defined]
    for changes in ({"aud": "another-api"}, {"iss": "someone"}, {"aud": None}, {"iss": None}):
        forged = {k: v for k, v in {**claims, **changes}.items() if v is not None}
        refused = client.get("/v1/auth/me", headers=bearer(jwt.encode(forged, secret, algorithm="HS256")))
        assert refused.status_code == 401 and code(refused) == "invalid_token", changes
    assert (
        client.get("/v1/auth/me", headers=bearer(jwt.encode(claims, secret, algorithm="HS256"))).status_code
        == 200
    )
    missing = client.post("/v1/auth/siwe/nonce")
    assert missing.status_code == 401 and code(missing) == "project_key_required"
    no_key = client.post("/v1/auth/token", json={"authType": "admin", "email": "a@b.co", "password": "x"})
    assert no_key.status_code == 401 and code(no_key) == "project_key_required"


def test_a_session_ends_at_its_absolute_lifetime_however_often_refreshed(embedded_platform: Platform) -> None:
    platform, settings = embedded_platform, embedded_platform.client.app.state.runtime.settings  # type: ignore[attr-defined]
    tenant = create_tenant(platform)
    lifetime = settings.session_lifetime
    try:
        settings.session_lifetime = 60
        pair = siwe_sign_in(platform, tenant, Account.create()).json()
        settings.session_lifetime = lifetime  # the lifetime is fixed at sign-in
        refreshed = platform.client.post("/v1/auth/refresh", json={"refreshToken": pair["refreshToken"]})
        assert refreshed.status_code == 200 and refreshed.json()["expiresIn"] <= 60
        settings.session_lifetime = 0
        ended = siwe_sign_in(platform, tenant, Account.create()).json()
    finally:
        settings.session_lifetime = lifetime
    expired = platform.client.post("/v1/auth/refresh", json={"refreshToken": ended["refreshToken"]})
    assert expired.status_code == 401 and code(expired) == "refresh_token_expired"
