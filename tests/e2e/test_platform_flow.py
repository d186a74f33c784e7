"""The platform core through the HTTP API alone, on the embedded stack and on the production processes."""

from eth_account import Account

from backend.chain.artifacts import abi
from tests.platform import Platform, bearer, create_tenant, siwe_sign_in, wait_for


def test_operator_to_signed_in_user(platform: Platform) -> None:
    client = platform.client
    tenant = create_tenant(platform)
    admin = tenant.admin_headers

    me = client.get("/v1/auth/me", headers=admin).json()
    assert (me["kind"], me["tenantId"], me["environment"]) == ("admin", tenant.id, "test")

    contracts = wait_for(
        lambda: client.get("/v1/tenants/me/contracts", headers=admin).json()["data"],
        lambda envs: envs[0]["status"] != "pending",
        "tenant deployment",
    )
    test_env = next(e for e in contracts if e["environment"] == "test")
    assert test_env["status"] == "active", test_env
    rewards_address = test_env["rewards"]
    assert platform.w3.eth.get_code(rewards_address) != b""

    business = client.post("/v1/businesses", json={"name": "Corner Shop"}, headers=admin)
    assert business.status_code == 201 and business.json()["custodialSigner"] is True
    business_id, signer = business.json()["id"], business.json()["signerAddress"]
    key = client.post(f"/v1/businesses/{business_id}/api-keys", json={"name": "till"}, headers=admin)
    assert key.status_code == 201
    secret = key.json()["key"]
    assert secret.startswith("sk_test_") and key.json()["prefix"] == secret[:12]
    listed = client.get(f"/v1/businesses/{business_id}/api-keys", headers=admin).json()["data"]
    assert [k["prefix"] for k in listed] == [secret[:12]] and "key" not in listed[0]
    assert client.get("/v1/businesses/me", headers={"X-API-Key": secret}).json()["id"] == business_id

    credit = client.post(
        "/v1/tokens",
        json={"kind": "credit", "name": "Acme Points", "symbol": "PTS", "maxSupply": "1000000"},
        headers=admin,
    )
    status = client.post(
        "/v1/tokens", json={"kind": "status", "name": "Gold", "symbol": "GOLD"}, headers=admin
    )
    assert credit.status_code == 202 and status.status_code == 202
    assert credit.json()["status"] == "pending"

    def tokens() -> list[dict[str, object]]:
        listed: list[dict[str, object]] = client.get("/v1/tokens", headers=tenant.with_project()).json()[
            "data"
        ]
        return listed

    active = wait_for(tokens, lambda ts: all(t["status"] != "pending" for t in ts), "token activation")
    by_symbol = {t["symbol"]: t for t in active}
    assert {t["status"] for t in active} == {"active"}, active
    credit_address = by_symbol["PTS"]["contractAddress"]
    assert isinstance(credit_address, str) and platform.w3.eth.get_code(credit_address) != b""
    assert (
        by_symbol["GOLD"]["contractAddress"] == rewards_address and by_symbol["GOLD"]["chainTokenId"] == "1"
    )

    # On chain: the credit is the tenant's, capped as asked; the status id is locked; the business mints.
    erc20 = platform.w3.eth.contract(address=credit_address, abi=abi("CreditToken"))
    erc1155 = platform.w3.eth.contract(address=rewards_address, abi=abi("RewardsToken"))
    assert erc20.functions.symbol().call() == "PTS" and erc20.functions.maxSupply().call() == 1_000_000
    assert erc1155.functions.locked(1).call()
    minter_role = erc20.functions.MINTER_ROLE().call()
    wait_for(
        lambda: (
            erc20.functions.hasRole(minter_role, signer).call()
            and erc1155.functions.hasRole(minter_role, signer).call()
        ),
        bool,
        "minter role for the business signer",
    )

    wallet = Account.create()
    signed_in = siwe_sign_in(platform, tenant, wallet)
    assert signed_in.status_code == 200, signed_in.text
    user_headers = bearer(signed_in.json()["accessToken"])
    profile = client.get("/v1/users/me", headers=user_headers)
    assert profile.status_code == 200
    assert profile.json()["walletAddress"] == wallet.address and profile.json()["managedWallet"] is False

    # The business finds the same user by wallet and sees the same record.
    found = client.post(
        "/v1/users", json={"walletAddress": wallet.address.lower()}, headers={"X-API-Key": secret}
    )
    assert found.status_code == 200 and found.json()["id"] == profile.json()["id"]


def test_a_replaced_or_suspended_signer_loses_the_minter_role(platform: Platform) -> None:
    client = platform.client
    tenant = create_tenant(platform, "Rekey")
    admin = tenant.admin_headers
    contracts = wait_for(
        lambda: client.get("/v1/tenants/me/contracts", headers=admin).json()["data"],
        lambda envs: envs[0]["status"] != "pending",
        "tenant deployment",
    )
    rewards = platform.w3.eth.contract(address=contracts[0]["rewards"], abi=abi("RewardsToken"))
    minter = rewards.functions.MINTER_ROLE().call()

    def holds(address: str) -> bool:
        return bool(rewards.functions.hasRole(minter, address).call())

    business = client.post("/v1/businesses", json={"name": "Kiosk"}, headers=admin).json()
    first = business["signerAddress"]
    wait_for(lambda: holds(first), bool, "the first signer's role")
    own = Account.create().address
    rekeyed = client.patch(f"/v1/businesses/{business['id']}", json={"signerAddress": own}, headers=admin)
    assert rekeyed.status_code == 200 and rekeyed.json()["custodialSigner"] is False
    wait_for(lambda: holds(own) and not holds(first), bool, "the role moving to the new signer")
    suspended = client.patch(f"/v1/businesses/{business['id']}", json={"status": "suspended"}, headers=admin)
    assert suspended.status_code == 200
    wait_for(lambda: not holds(own) and not holds(first), bool, "the suspended business losing its role")
