"""The relay through the HTTP API, on `pers up`'s embedded stack and on the production processes:
operations accepted, executed on chain and settled from the token's own logs."""

import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3.contract import Contract

from backend.auth.principal import USER, TenantScope
from backend.chain.artifacts import abi
from backend.chain.client import Chain, dev_account
from backend.chain.operations import Failure, SignedGroup, domain, outcomes, submit
from backend.chain.typed_data import Domain, Operation, TokenStandard, digest, sign
from backend.kit.db import unit_of_work
from backend.relay import service
from backend.relay.schemas import TransactionCreate
from backend.runtime import current
from backend.settings import Settings
from tests.platform import Platform, TenantSession, bearer, create_tenant, siwe_sign_in, wait_for


@dataclass
class Shop:
    tenant: TenantSession
    business_id: str
    key: dict[str, str]  # the business's API-key header
    signer: str
    credit_id: str
    credit: Contract
    reward_id: str
    rewards: Contract


def open_shop(platform: Platform, name: str = "Relay") -> Shop:
    client = platform.client
    tenant = create_tenant(platform, name)
    admin = tenant.admin_headers
    business = client.post("/v1/businesses", json={"name": f"{name} Shop"}, headers=admin).json()
    key = client.post(f"/v1/businesses/{business['id']}/api-keys", json={"name": "till"}, headers=admin)
    headers = {"X-API-Key": key.json()["key"]}
    for body in (
        {"kind": "credit", "name": f"{name} Points", "symbol": "PTS"},
        {"kind": "reward", "name": "Coffee", "symbol": "COF"},
    ):
        assert client.post("/v1/tokens", json=body, headers=admin).status_code == 202
    tokens = wait_for(
        lambda: client.get("/v1/tokens", headers=tenant.with_project()).json()["data"],
        lambda ts: all(t["status"] == "active" for t in ts),
        "token activation",
    )
    by_symbol = {t["symbol"]: t for t in tokens}
    credit = platform.w3.eth.contract(address=by_symbol["PTS"]["contractAddress"], abi=abi("CreditToken"))
    rewards = platform.w3.eth.contract(address=by_symbol["COF"]["contractAddress"], abi=abi("RewardsToken"))
    role = credit.functions.MINTER_ROLE().call()
    signer = business["signerAddress"]
    wait_for(
        lambda: (
            credit.functions.hasRole(role, signer).call() and rewards.functions.hasRole(role, signer).call()
        ),
        bool,
        "the business signer's minter role",
    )
    return Shop(
        tenant,
        business["id"],
        headers,
        signer,
        by_symbol["PTS"]["id"],
        credit,
        by_symbol["COF"]["id"],
        rewards,
    )


def settled(platform: Platform, headers: dict[str, str], op_id: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(
        lambda: platform.client.get(f"/v1/transactions/{op_id}", headers=headers).json(),
        lambda op: op["status"] in ("mined", "failed"),
        f"operation {op_id} settling",
    )
    return found


def mint(platform: Platform, shop: Shop, to: str, amount: str, **extra: Any) -> dict[str, Any]:
    body = {"type": "mint", "tokenId": shop.credit_id, "to": to, "amount": amount, **extra}
    answer = platform.client.post("/v1/transactions", json=body, headers=shop.key)
    assert answer.status_code == 202, answer.text
    created: dict[str, Any] = answer.json()
    return created


def test_a_business_mint_over_http_is_mined_and_on_chain(platform: Platform) -> None:
    shop = open_shop(platform)
    holder = Account.create().address
    created = mint(platform, shop, holder, "250")
    assert (
        created["status"] == "queued" and created["from"] == "0x" + "00" * 20 and created["amount"] == "250"
    )
    done = settled(platform, shop.key, created["id"])
    assert done["status"] == "mined", done
    # The accepted record is built by hand (the hot path): the same fields and values as GET's.
    assert set(created) == set(done)
    fixed = ("id", "type", "tokenId", "network", "contractAddress", "chainTokenId", "from", "to", "amount")
    fixed += ("ref", "signer", "businessId", "senderUserId", "recipientUserId", "createdAt")
    assert {k: created[k] for k in fixed} == {k: done[k] for k in fixed}
    assert done["txHash"] and done["blockNumber"] and done["signer"] == shop.signer
    assert shop.credit.functions.balanceOf(holder).call() == 250
    listed = platform.client.get("/v1/transactions", params={"status": "mined"}, headers=shop.key).json()
    assert [op["id"] for op in listed["data"]] == [created["id"]]


def test_many_mints_in_a_batch_are_all_mined(platform: Platform) -> None:
    shop = open_shop(platform, "Batch")
    holders = [Account.create().address for _ in range(3)]
    operations = [
        {"type": "mint", "tokenId": shop.credit_id, "to": holders[i % 3], "amount": str(i + 1)}
        for i in range(30)
    ]
    operations.append({"type": "mint", "tokenId": shop.credit_id, "to": holders[0], "amount": "0"})
    operations.append({"type": "transfer", "tokenId": shop.credit_id, "to": holders[0], "amount": "1"})
    answer = platform.client.post("/v1/transactions/batch", json={"operations": operations}, headers=shop.key)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["accepted"], body["refused"]) == (30, 2)
    assert [i["error"]["code"] for i in body["data"][30:]] == ["amount_out_of_range", "signature_required"]
    for item in body["data"][:30]:
        assert settled(platform, shop.key, item["transaction"]["id"])["status"] == "mined"
    expected = [sum(i + 1 for i in range(30) if i % 3 == k) for k in range(3)]
    assert [shop.credit.functions.balanceOf(h).call() for h in holders] == expected


def test_idempotency_key_repeats_the_answer_and_refuses_another_body(platform: Platform) -> None:
    shop = open_shop(platform, "Idem")
    holder = Account.create().address
    body = {"type": "mint", "tokenId": shop.credit_id, "to": holder, "amount": "7"}
    headers = {**shop.key, "Idempotency-Key": "order-1"}
    first = platform.client.post("/v1/transactions", json=body, headers=headers)
    again = platform.client.post("/v1/transactions", json=body, headers=headers)
    assert first.status_code == again.status_code == 202 and first.json() == again.json()
    other = platform.client.post("/v1/transactions", json={**body, "amount": "8"}, headers=headers)
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    assert settled(platform, shop.key, first.json()["id"])["status"] == "mined"
    assert shop.credit.functions.balanceOf(holder).call() == 7
    # A refused request under a key is refused again when repeated (not a stored empty answer).
    unsigned = {"type": "transfer", "tokenId": shop.credit_id, "from": holder, "to": holder, "amount": "1"}
    refused = [
        platform.client.post(
            "/v1/transactions", json=unsigned, headers={**shop.key, "Idempotency-Key": "t-1"}
        )
        for _ in range(2)
    ]
    assert [r.status_code for r in refused] == [422, 422]
    assert {r.json()["error"]["code"] for r in refused} == {"signature_required"}


def test_a_mint_to_a_users_wallet_names_the_user_and_the_business_serves_them(platform: Platform) -> None:
    """A business's mint `to` an address that is a user's wallet (single or in a batch) records the user
    as its recipient and links the business to them; an address no user holds names nobody."""
    shop = open_shop(platform, "Wallets")
    client, admin = platform.client, shop.tenant.admin_headers
    other = client.post("/v1/businesses", json={"name": "Other"}, headers=admin).json()
    other_key = client.post(f"/v1/businesses/{other['id']}/api-keys", json={"name": "k"}, headers=admin)
    wallets = [Account.create().address for _ in range(2)]
    users = [
        client.post("/v1/users", json={"walletAddress": w}, headers={"X-API-Key": other_key.json()["key"]})
        for w in wallets
    ]
    ids = [u.json()["id"] for u in users]
    assert [client.get(f"/v1/users/{i}", headers=shop.key).status_code for i in ids] == [404, 404]
    single = mint(platform, shop, wallets[0], "3")
    assert single["recipientUserId"] == ids[0]
    stranger = Account.create().address
    ops = [
        {"type": "mint", "tokenId": shop.credit_id, "to": to, "amount": "1"} for to in (wallets[1], stranger)
    ]
    batch = client.post("/v1/transactions/batch", json={"operations": ops}, headers=shop.key).json()["data"]
    assert [item["transaction"]["recipientUserId"] for item in batch] == [ids[1], None]
    assert [client.get(f"/v1/users/{i}", headers=shop.key).status_code for i in ids] == [200, 200]


def test_a_prepared_transfer_signed_by_a_wallet_library_is_mined(platform: Platform) -> None:
    shop = open_shop(platform, "Prep")
    holder: LocalAccount = Account.create()
    friend = Account.create().address
    assert settled(platform, shop.key, mint(platform, shop, holder.address, "100")["id"])["status"] == "mined"
    signed_in = siwe_sign_in(platform, shop.tenant, holder)
    user = bearer(signed_in.json()["accessToken"])
    move = {
        "type": "transfer",
        "tokenId": shop.credit_id,
        "from": holder.address,
        "to": friend,
        "amount": "40",
    }
    prepared = platform.client.post("/v1/transactions/prepare", json=move, headers=user)
    assert prepared.status_code == 200, prepared.text
    typed = prepared.json()
    signature = Account.sign_typed_data(holder.key, full_message=typed["typedData"]).signature
    signed = {**move, "ref": typed["ref"], "deadline": typed["deadline"], "signature": "0x" + signature.hex()}

    forged = Account.sign_typed_data(Account.create().key, full_message=typed["typedData"]).signature
    refused = platform.client.post(
        "/v1/transactions", json={**signed, "signature": "0x" + forged.hex()}, headers=user
    )
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_signature"
    more = platform.client.post("/v1/transactions", json={**signed, "amount": "41"}, headers=user)
    assert more.status_code == 422 and more.json()["error"]["code"] == "invalid_signature"

    accepted = platform.client.post("/v1/transactions", json=signed, headers=user)
    assert accepted.status_code == 202, accepted.text
    replayed = platform.client.post("/v1/transactions", json=signed, headers=user)
    assert replayed.status_code == 409 and replayed.json()["error"]["code"] == "ref_used"
    # In a batch, the replayed group alone is refused.
    extra = {"type": "mint", "tokenId": shop.credit_id, "to": friend, "amount": "2"}
    batch = platform.client.post(
        "/v1/transactions/batch", json={"operations": [signed, extra]}, headers=shop.key
    )
    assert [(i["status"], (i["error"] or {}).get("code")) for i in batch.json()["data"]] == [
        (409, "ref_used"),
        (202, None),
    ]
    assert settled(platform, user, accepted.json()["id"])["status"] == "mined"
    assert shop.credit.functions.balanceOf(holder.address).call() == 60
    extra_id = batch.json()["data"][1]["transaction"]["id"]
    assert settled(platform, shop.key, extra_id)["status"] == "mined"
    assert shop.credit.functions.balanceOf(friend).call() == 42
    sent = platform.client.get("/v1/transactions/me", params={"role": "sender"}, headers=user).json()
    received = platform.client.get("/v1/transactions/me", params={"role": "recipient"}, headers=user).json()
    assert [op["id"] for op in sent["data"]] == [accepted.json()["id"]]
    assert [op["type"] for op in received["data"]] == ["mint"]


def test_forged_operations_move_nothing_through_the_api_or_straight_to_the_chain(platform: Platform) -> None:
    shop = open_shop(platform, "Forge")
    holder: LocalAccount = Account.create()
    thief = Account.create()
    assert settled(platform, shop.key, mint(platform, shop, holder.address, "100")["id"])["status"] == "mined"
    user = bearer(siwe_sign_in(platform, shop.tenant, holder).json()["accessToken"])
    move = {"type": "transfer", "tokenId": shop.credit_id, "from": holder.address, "to": thief.address}
    typed = platform.client.post(
        "/v1/transactions/prepare", json={**move, "amount": "10"}, headers=user
    ).json()
    signed = Account.sign_typed_data(holder.key, full_message=typed["typedData"]).signature
    good = {
        **move,
        "amount": "10",
        "ref": typed["ref"],
        "deadline": typed["deadline"],
        "signature": "0x" + signed.hex(),
    }
    accepted = platform.client.post("/v1/transactions", json=good, headers=user)
    assert settled(platform, user, accepted.json()["id"])["status"] == "mined"

    chain = _chain(platform)
    credit_domain = domain(chain, TokenStandard.CREDIT, shop.credit.address)
    rewards_domain = domain(chain, TokenStandard.REWARDS, shop.rewards.address)
    other_chain = Domain(
        TokenStandard.CREDIT, credit_domain.chain_id + 1, shop.credit.address, credit_domain.name
    )
    deadline = int(time.time()) + 600

    def group(dom: Domain, signer: str, key: bytes, op: Operation) -> SignedGroup:
        return SignedGroup(signer, [op], deadline, sign(digest(dom, signer, [op], deadline), key))

    def ref() -> bytes:
        return secrets.token_bytes(32)

    zero = "0x" + "00" * 20
    steal = Operation(holder.address, thief.address, 50, ref())
    forged = {
        "mint by a non-minter": group(
            credit_domain, thief.address, thief.key, Operation(zero, thief.address, 99, ref())
        ),
        "mint as the business, not signed by it": group(
            credit_domain, shop.signer, thief.key, Operation(zero, thief.address, 99, ref())
        ),
        "transfer not signed by the holder": group(credit_domain, holder.address, thief.key, steal),
        "group signed for another token": group(rewards_domain, holder.address, holder.key, steal),
        "group signed for another chain": group(other_chain, holder.address, holder.key, steal),
        "replayed group": SignedGroup(
            holder.address,
            [Operation(holder.address, thief.address, 10, bytes.fromhex(typed["ref"][2:]))],
            int(typed["deadline"]),
            signed,
        ),
    }
    before = [shop.credit.functions.balanceOf(a).call() for a in (holder.address, thief.address)]
    supply = shop.credit.functions.totalSupply().call()
    submission = submit(chain, TokenStandard.CREDIT, shop.credit.address, list(forged.values()))
    found = [o for r in submission.receipts for o in outcomes(shop.credit, r)]
    assert [o.failure for o in found] == [
        Failure.UNAUTHORIZED,
        Failure.UNAUTHORIZED,
        Failure.UNAUTHORIZED,
        Failure.UNAUTHORIZED,
        Failure.UNAUTHORIZED,
        Failure.REF_USED,
    ], list(forged)
    assert (
        [shop.credit.functions.balanceOf(a).call() for a in (holder.address, thief.address)]
        == before
        == [90, 10]
    )
    assert shop.credit.functions.totalSupply().call() == supply

    # The same forgeries through the API: refused, nothing queued.
    mine = platform.client.get("/v1/transactions", headers=shop.tenant.admin_headers).json()["meta"]["total"]
    stolen = {**move, "amount": "50", "ref": typed["ref"], "deadline": typed["deadline"]}
    for body, code in (
        (
            {**stolen, "signature": "0x" + forged["transfer not signed by the holder"].signature.hex()},
            "invalid_signature",
        ),
        (
            {**stolen, "signature": "0x" + forged["group signed for another token"].signature.hex()},
            "invalid_signature",
        ),
        ({**good}, "ref_used"),
        ({"type": "mint", "tokenId": shop.credit_id, "to": thief.address, "amount": "1"}, "forbidden"),
    ):
        answer = platform.client.post("/v1/transactions", json=body, headers=user)
        assert answer.status_code in (403, 409, 422) and answer.json()["error"]["code"] == code, answer.text
    after = platform.client.get("/v1/transactions", headers=shop.tenant.admin_headers).json()["meta"]["total"]
    assert after == mine


def _chain(platform: Platform) -> Chain:
    """The platform's chain with its deploying relayer (a registered relayer, not one of the lanes)."""
    settings = Settings()
    name = "local" if platform.w3.eth.chain_id == 31337 else "embedded"
    return Chain(platform.w3, settings.chain_config().network(name), dev_account(0))


def test_bad_input_is_refused_with_a_code_and_queues_nothing(platform: Platform) -> None:
    shop = open_shop(platform, "Bad")
    client, admin = platform.client, shop.tenant.admin_headers
    status_token = client.post(
        "/v1/tokens", json={"kind": "status", "name": "Gold", "symbol": "GOLD"}, headers=admin
    ).json()
    holder = Account.create().address
    base = {"type": "mint", "tokenId": shop.credit_id, "to": holder, "amount": "1"}
    gold = wait_for(
        lambda: client.get(f"/v1/tokens/{status_token['id']}", headers=admin).json(),
        lambda t: t["status"] == "active",
        "the status token",
    )
    expired = {
        **base,
        "type": "transfer",
        "from": holder,
        "ref": "0x" + "11" * 32,
        "deadline": "1",
        "signature": "0x" + "22" * 65,
    }
    cases: list[tuple[dict[str, Any], dict[str, str], int, str]] = [
        ({**base, "amount": "0"}, shop.key, 422, "amount_out_of_range"),
        ({**base, "amount": str(2**256)}, shop.key, 422, "amount_out_of_range"),
        ({**base, "amount": 5}, shop.key, 422, "amount_must_be_string"),
        ({**base, "tokenId": "00000000-0000-0000-0000-000000000000"}, shop.key, 404, "token_not_found"),
        (
            {**base, "to": None, "userId": "00000000-0000-0000-0000-000000000000"},
            shop.key,
            404,
            "user_not_found",
        ),
        ({**base, "to": "0x1234"}, shop.key, 422, "invalid_address"),
        ({**base, "to": None}, shop.key, 422, "missing_field"),
        ({**base, "tokenId": gold["id"], "type": "transfer", "from": holder}, shop.key, 422, "token_locked"),
        (expired, shop.key, 422, "deadline_expired"),
        ({**base, "type": "transfer", "from": holder}, shop.key, 422, "signature_required"),
        (base, admin, 422, "business_required"),
        ({**base, "bogus": 1}, shop.key, 422, "unknown_field"),
        # Credentials are checked in the route's own trip (`DeferredAuth`), yet told before the input.
        ({**base, "bogus": 1}, {"X-API-Key": "sk_unknown"}, 401, "invalid_api_key"),
        (base, {"X-API-Key": "sk_unknown"}, 401, "invalid_api_key"),
        (base, {}, 401, "unauthenticated"),
    ]
    for body, headers, status, code in cases:
        answer = client.post("/v1/transactions", json=body, headers=headers)
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["error"]["code"] == code, (body, answer.text)
    too_many = {"operations": [base] * 1001}
    answer = client.post("/v1/transactions/batch", json=too_many, headers=shop.key)
    assert (answer.status_code, answer.json()["error"]["code"]) == (422, "batch_too_large")
    answer = client.post("/v1/transactions/batch", json=too_many, headers={"X-API-Key": "sk_unknown"})
    assert (answer.status_code, answer.json()["error"]["code"]) == (401, "invalid_api_key")
    key = {**shop.key, "Idempotency-Key": "k" * 256}  # a control character: test_bad_input
    answer = client.post("/v1/transactions", json=base, headers=key)
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_idempotency_key"
    assert client.get("/v1/transactions", headers=admin).json()["meta"]["total"] == 0


def test_the_service_layer_mints_and_moves_a_managed_wallet_for_other_domains(
    embedded_platform: Platform,
) -> None:
    """What loyalty calls in its own unit of work (`submit_mint`), and a managed wallet's transfer,
    signed by the platform with the user's sealed key (the user-session path of POST /v1/transactions)."""
    platform = embedded_platform
    shop = open_shop(platform, "Loyal")
    member = platform.client.post("/v1/users", json={"externalId": "member-1"}, headers=shop.key).json()
    assert member["managedWallet"] is True
    runtime, scope = current(), TenantScope(uuid.UUID(shop.tenant.id), "test")
    with unit_of_work(runtime.sessions) as session:
        minted = service.submit_mint(
            session,
            runtime.settings,
            scope,
            business_id=uuid.UUID(shop.business_id),
            token_id=uuid.UUID(shop.credit_id),
            amount=70,
            user_id=uuid.UUID(member["id"]),
        )
        minted_id = str(minted.id)
    assert settled(platform, shop.key, minted_id)["status"] == "mined"
    friend = Account.create().address
    move = {"type": "transfer", "token_id": shop.credit_id, "to": friend, "amount": "30"}
    with unit_of_work(runtime.sessions) as session:
        actor = service.Actor(USER, uuid.UUID(member["id"]))
        moved = service.submit(
            session, runtime.settings, scope, actor, TransactionCreate.model_validate(move)
        )
        moved_id, signer = str(moved.id), moved.signer
    done = settled(platform, shop.tenant.admin_headers, moved_id)
    assert done["status"] == "mined" and signer == member["walletAddress"], done
    assert shop.credit.functions.balanceOf(member["walletAddress"]).call() == 40
    assert shop.credit.functions.balanceOf(friend).call() == 30
