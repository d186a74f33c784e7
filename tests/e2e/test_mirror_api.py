"""What reads the chain mirror, over HTTP on `pers up`'s embedded stack and on the production processes
with their indexer: balances, supply and holders, external movements in the transaction history, and
the audit (events, live proofs, verification, export, `pers audit verify`)."""

import csv
import io
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from eth_account import Account
from sqlalchemy import create_engine, update
from sqlalchemy.orm import Session, sessionmaker

from backend import mirror
from backend.chain.client import dev_account
from backend.settings import PROJECT_ROOT
from indexer import process
from indexer.models import Holding
from tests.e2e.test_relay import Shop, open_shop
from tests.platform import Platform, bearer, create_tenant, siwe_sign_in, wait_for

HOLDER = dev_account(7)  # funded on both chains: it sends its own transfers, as a wallet does
PERS = [sys.executable, "-m", "backend.cli"]


@pytest.fixture
def indexed(platform: Platform) -> Iterator[Platform]:
    """The platform with its indexer running: a thread of the embedded process (as under `pers up`), or
    `pers indexer` beside the production processes."""
    if platform.env is None:
        runtime = platform.client.app.state.runtime  # type: ignore[attr-defined]
        stop = threading.Event()
        thread = process.start(mirror.follower(runtime, "embedded"), runtime.engine, stop)
        yield platform
        stop.set()
        thread.join(60)
        return
    deploy = subprocess.run(
        [*PERS, "chain", "deploy", "--network", "local"],
        env=platform.env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert deploy.returncode == 0, deploy.stderr
    indexer = subprocess.Popen(
        [*PERS, "indexer"],
        env=platform.env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield platform
    finally:
        indexer.terminate()
        indexer.wait(30)


@contextmanager
def mirror_db(platform: Platform) -> Iterator[Session]:
    """A session on the platform's database, committed at the end."""
    if platform.env is None:
        sessions: sessionmaker[Session] = platform.client.app.state.runtime.sessions  # type: ignore[attr-defined]
        with sessions() as session, session.begin():
            yield session
        return
    engine = create_engine(platform.env["PERS_DATABASE_URL"])
    try:
        with Session(engine) as session, session.begin():
            yield session
    finally:
        engine.dispose()


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url}: {response.text}"
    )
    return response.json()


def on_chain(platform: Platform, shop: Shop, op_id: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(
        lambda: ok(platform.client.get(f"/v1/transactions/{op_id}", headers=shop.key)),
        lambda op: op["status"] in ("mined", "confirmed", "failed"),
        f"operation {op_id} on chain",
    )
    assert found["status"] != "failed", found
    return found


def send(platform: Platform, call: Any) -> int:
    """A wallet's own transaction; its block."""
    tx = call.transact({"from": HOLDER.address})
    return int(platform.w3.eth.wait_for_transaction_receipt(tx)["blockNumber"])


def test_balances_history_and_audit_read_the_mirror(indexed: Platform) -> None:
    platform, client = indexed, indexed.client
    shop = open_shop(platform, "Mirror")
    admin = shop.tenant.admin_headers
    other = create_tenant(platform, "Elsewhere")
    holder, friend = HOLDER.address, Account.create().address
    mints = []
    for token, amount in ((shop.credit_id, "1000"), (shop.reward_id, "3")):
        body = {"type": "mint", "tokenId": token, "to": holder, "amount": amount}
        mints.append(
            on_chain(
                platform, shop, ok(client.post("/v1/transactions", json=body, headers=shop.key), 202)["id"]
            )
        )
    reward_chain_id = int(mints[1]["chainTokenId"])
    # The holder's own transfers, straight on chain: the platform relays neither.
    send(platform, shop.credit.functions.transfer(friend, 40))
    last = send(platform, shop.rewards.functions.safeTransferFrom(holder, friend, reward_chain_id, 1, b""))

    def balances(address: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        found: dict[str, Any] = ok(
            client.get(f"/v1/balances/accounts/{address}", headers=headers or shop.tenant.with_project())
        )
        return found

    seen = wait_for(
        lambda: balances(friend), lambda b: b["asOfBlock"] >= last, "the mirror to reach the transfers"
    )
    amounts = {b["tokenId"]: (b["kind"], b["amount"]) for b in seen["tokenBalances"]}
    assert amounts == {shop.credit_id: ("credit", "40"), shop.reward_id: ("reward", "1")}
    mine = balances(holder.lower())
    assert mine["accountAddress"] == holder
    assert {b["tokenId"]: b["amount"] for b in mine["tokenBalances"]} == {
        shop.credit_id: "960",
        shop.reward_id: "2",
    }
    credit_row = next(b for b in mine["tokenBalances"] if b["kind"] == "credit")
    assert credit_row["contractAddress"] == shop.credit.address and credit_row["chainTokenId"] == "0"
    # The operator sees how far the mirror is behind the node.
    network = "embedded" if platform.env is None else "local"
    lag = ok(client.get("/readyz"))["checks"]["indexer"]["networks"][network]
    assert lag["block"] >= last and lag["lagBlocks"] == lag["head"] - lag["block"]
    metrics = client.get("/metrics", headers=platform.operator()).text
    assert f'pers_indexer_block{{network="{network}"}}' in metrics
    assert f'pers_indexer_lag_seconds{{network="{network}"}}' in metrics
    # Another tenant's key sees none of this tenant's tokens, though the holder is the same.
    assert balances(holder, other.with_project())["tokenBalances"] == []
    # The holder signed in sees the same.
    user = bearer(ok(siwe_sign_in(platform, shop.tenant, HOLDER))["accessToken"])
    assert ok(client.get("/v1/users/me/balances", headers=user))["tokenBalances"] == mine["tokenBalances"]

    token = ok(client.get(f"/v1/tokens/{shop.credit_id}", headers=shop.tenant.with_project()))
    assert (token["supply"], token["holderCount"]) == ("1000", 2) and token["asOfBlock"] >= last
    holders = ok(client.get(f"/v1/tokens/{shop.credit_id}/holders", headers=admin))
    assert [(h["address"], h["amount"]) for h in holders["data"]] == [
        (holder.lower(), "960"),
        (friend.lower(), "40"),
    ]
    second = ok(
        client.get(f"/v1/tokens/{shop.credit_id}/holders", params={"limit": 1, "page": 2}, headers=admin)
    )
    assert second["data"] == holders["data"][1:] and second["meta"]["total"] == 2

    # The history: both mints, and the two transfers flagged external (to admins and auditors).
    listed = ok(client.get("/v1/transactions", headers=admin))
    external = [t for t in listed["data"] if t["external"]]
    assert listed["meta"]["total"] == 4
    assert sorted((t["tokenId"], t["type"], t["from"], t["to"], t["amount"]) for t in external) == sorted(
        [
            (shop.credit_id, "transfer", holder.lower(), friend.lower(), "40"),
            (shop.reward_id, "transfer", holder.lower(), friend.lower(), "1"),
        ]
    )
    assert all(t["ref"] is None and t["txHash"] and t["blockNumber"] for t in external)
    assert external[0]["blockNumber"] == last  # the latest on chain comes first
    assert [t["id"] for t in listed["data"] if not t["external"]] == [mints[1]["id"], mints[0]["id"]]

    def total(**query: Any) -> int:
        count: int = ok(client.get("/v1/transactions", params=query, headers=admin))["meta"]["total"]
        return count

    assert total(external="true") == 2 and total(external="false") == 2
    assert total(participantAddress=friend) == 2 and total(type="mint") == 2 and total(type="burn") == 0
    assert total(tokenId=shop.reward_id, external="true") == 1
    assert total(dateFrom="2000-01-01T00:00:00Z") == 2  # movements seen on chain carry no time
    by_business = ok(client.get("/v1/transactions", headers=shop.key))
    assert not any(t["external"] for t in by_business["data"]) and by_business["meta"]["total"] == 2

    # The audit: every event mapped to its operation or flagged external.
    events = ok(client.get("/v1/audit/events", params={"limit": 200}, headers=admin))
    moves = [e for e in events["data"] if e["name"] in ("Transfer", "TransferSingle")]
    assert sorted((e["operationId"] is not None, e["external"], e["amount"]) for e in moves) == [
        (False, True, "1"),
        (False, True, "40"),
        (True, False, "1000"),
        (True, False, "3"),
    ]
    assert {e["operationId"] for e in moves} - {None} == {m["id"] for m in mints}
    named = ok(client.get("/v1/audit/events", params={"name": "OperationExecuted"}, headers=admin))
    assert named["meta"]["total"] == 2 and {e["operationId"] for e in named["data"]} == {
        m["id"] for m in mints
    }

    proof = ok(client.get(f"/v1/audit/transactions/{mints[0]['id']}/proof", headers=admin))
    assert proof["verified"], proof["checks"]
    assert proof["txHash"] == mints[0]["txHash"] and proof["receiptStatus"] == 1
    assert (
        proof["outcomeLog"]["topics"][1] == mints[0]["ref"]
        and proof["transferLog"]["address"] == shop.credit.address
    )

    report = ok(client.post("/v1/audit/verify", headers=admin))
    assert report["ok"] and report["mismatches"] == [] and report["asOfBlock"] >= last, report
    assert report["holders"]["checked"] == 4 and report["supplies"]["checked"] >= 2
    assert (
        report["events"]["external"] >= 2
        and report["events"]["mapped"] == 4
        and report["events"]["unmatched"] == 0
    )

    jsonl = client.get("/v1/audit/export", params={"format": "jsonl"}, headers=admin)
    assert jsonl.status_code == 200 and jsonl.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert len(lines) == events["meta"]["total"] and lines == events["data"]
    exported = list(
        csv.DictReader(
            io.StringIO(client.get("/v1/audit/export", params={"format": "csv"}, headers=admin).text)
        )
    )
    assert [(r["txHash"], r["logIndex"], r["operationId"]) for r in exported] == [
        (e["txHash"], str(e["logIndex"]), e["operationId"] or "") for e in events["data"]
    ]

    # A row of the mirror altered by hand: the check names the holder, the token and both amounts.
    with mirror_db(platform) as session:
        altered = session.execute(
            update(Holding)
            .where(Holding.contract == shop.credit.address.lower(), Holding.holder == friend.lower())
            .values(amount=41)
        )
        assert altered.rowcount == 1
    try:
        report = ok(client.post("/v1/audit/verify", headers=admin))
        assert not report["ok"]
        assert report["mismatches"] == [
            {
                "kind": "balance",
                "contract": shop.credit.address.lower(),
                "chainTokenId": "0",
                "tokenId": shop.credit_id,
                "holder": friend.lower(),
                "mirror": "41",
                "chain": "40",
            }
        ]
        if platform.env is not None:  # the auditor's command, against the node
            failed = audit_verify(platform, shop.tenant.slug)
            assert failed.returncode == 1, failed.stdout + failed.stderr
            assert friend.lower() in failed.stdout and "mirror 41, chain 40" in failed.stdout, failed.stdout
    finally:
        with mirror_db(platform) as session:
            session.execute(
                update(Holding)
                .where(Holding.contract == shop.credit.address.lower(), Holding.holder == friend.lower())
                .values(amount=40)
            )
    if platform.env is not None:
        clean = audit_verify(platform, shop.tenant.slug, "--json")
        assert clean.returncode == 0, clean.stdout + clean.stderr
        found = json.loads(clean.stdout)
        assert found["ok"] and found["reports"]["test"]["mismatches"] == []
        assert found["reports"]["test"]["holders"]["checked"] == 4


def audit_verify(platform: Platform, slug: str, *extra: str) -> subprocess.CompletedProcess[str]:
    assert platform.env is not None
    rpc = platform.env["PERS_LOCAL_RPC_URL"]
    command = [*PERS, "audit", "verify", "--network", "local", "--tenant", slug, "--rpc-url", rpc, *extra]
    return subprocess.run(
        command, env=platform.env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )


HOSTILE: list[tuple[str, dict[str, Any], set[str]]] = [
    ("/v1/balances/accounts/0x1234", {}, {"invalid_address"}),
    ("/v1/balances/accounts/not-an-address", {}, {"invalid_address"}),
    ("/v1/balances/accounts/0x52908400098527886E0F7030069857D2E4169eE7", {}, {"invalid_address"}),  # checksum
    ("/v1/audit/events", {"fromBlock": "-1"}, {"invalid_value"}),
    ("/v1/audit/events", {"toBlock": str(2**64)}, {"invalid_value"}),
    ("/v1/audit/events", {"fromBlock": "ten"}, {"invalid_type"}),
    ("/v1/audit/events", {"fromBlock": "9", "toBlock": "8"}, {"invalid_block_range"}),
    ("/v1/audit/events", {"name": "Transfer;drop"}, {"invalid_value"}),
    ("/v1/audit/events", {"participantAddress": "0xzz"}, {"invalid_address"}),
    ("/v1/audit/events", {"page": "0"}, {"invalid_value"}),
    ("/v1/audit/events", {"limit": "201"}, {"invalid_value"}),
    ("/v1/audit/events", {"cursor": "1"}, {"unknown_parameter"}),
    ("/v1/audit/export", {"format": "xml"}, {"invalid_value"}),
    ("/v1/audit/export", {"fromBlock": "5", "toBlock": "1"}, {"invalid_block_range"}),
    ("/v1/transactions", {"external": "maybe"}, {"invalid_type"}),
    ("/v1/audit/transactions/not-a-uuid/proof", {}, {"not_found"}),
    ("/v1/audit/transactions/6f1c2b9e-7a9b-4c47-9a65-0d6f3f2a7b11/proof", {}, {"not_found"}),
    ("/v1/tokens/6f1c2b9e-7a9b-4c47-9a65-0d6f3f2a7b11/holders", {}, {"not_found"}),
]


def test_hostile_parameters_get_a_4xx_with_a_code(platform: Platform) -> None:
    tenant = create_tenant(platform, "Hostile")
    for path, query, codes in HOSTILE:
        response = platform.client.get(path, params=query, headers=tenant.admin_headers)
        assert 400 <= response.status_code < 500, f"{path} {query}: {response.status_code} {response.text}"
        assert response.json()["error"]["code"] in codes, f"{path} {query}: {response.text}"
