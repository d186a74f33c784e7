"""`pers bench relay`: operations per second from HTTP request to `mined`, on the production processes
(`pers api`, `pers worker`) over a fresh database, the real broker and an anvil of its own, against a
plain web3.py loop and against the node's own limit (pre-signed groups sent straight to it)."""

import asyncio
import os
import secrets
import statistics
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from eth_typing import HexStr
from sqlalchemy import create_engine, distinct, func, select
from sqlalchemy.engine import Engine
from web3 import Web3

from backend.bench import cpu
from backend.bench.client import encode, post_all
from backend.bench.cpu import Meter
from backend.bench.processes import LIMITS, free_port
from backend.bench.processes import anvil as _anvil
from backend.bench.processes import pers_processes as _processes
from backend.bench.processes import postgres_backends as _backends
from backend.bench.processes import wait as _wait
from backend.chain import operations, typed_data
from backend.chain.client import Chain, connect, dev_account
from backend.chain.deploy import (
    ContractKind,
    CreditSpec,
    create_tenant_contracts,
    deploy_platform,
    register_relayer,
    tenant_key,
)
from backend.chain.operations import SignedGroup
from backend.chain.typed_data import ZERO_ADDRESS, Operation, TokenStandard
from backend.kit.db import scratch_database
from backend.kit.errors import PersError
from backend.relay.encoding import encode_group, execute_data
from backend.relay.models import Operation as Queued
from backend.relay.models import RelayerTransaction
from backend.settings import Settings

PASSWORD = "bench password of the relay"
WARM_UP = 200  # single operations sent before the runs, not measured (`_warm_up`)


class _Shop:
    """A tenant, a business with a key, and two active credits (one per run), set up over HTTP."""

    def __init__(self, client: httpx.Client, operator: str, w3: Web3) -> None:
        slug = f"bench-{uuid.uuid4().hex[:8]}"
        created = client.post(
            "/v1/tenants",
            json={
                "name": "Bench",
                "slug": slug,
                "adminEmail": f"o@{slug}.example",
                "adminPassword": PASSWORD,
            },
            headers={"Authorization": f"Bearer {operator}"},
        ).raise_for_status()
        project = next(e["projectKey"] for e in created.json()["environments"] if e["environment"] == "test")
        token = client.post(
            "/v1/auth/token",
            json={"authType": "admin", "email": f"o@{slug}.example", "password": PASSWORD},
            headers={"X-Project-Key": project},
        ).raise_for_status()
        admin = {"Authorization": f"Bearer {token.json()['accessToken']}"}
        business = (
            client.post("/v1/businesses", json={"name": "Bench"}, headers=admin).raise_for_status().json()
        )
        key = client.post(
            f"/v1/businesses/{business['id']}/api-keys", json={"name": "bench"}, headers=admin
        ).raise_for_status()
        self.key = {"X-API-Key": key.json()["key"]}
        self.tokens: list[str] = []
        for symbol in ("SINGLE", "BATCH"):
            body = {"kind": "credit", "name": symbol.title(), "symbol": symbol}
            self.tokens.append(
                client.post("/v1/tokens", json=body, headers=admin).raise_for_status().json()["id"]
            )

        def active() -> list[dict[str, Any]] | None:
            listed: list[dict[str, Any]] = client.get("/v1/tokens", headers=admin).json()["data"]
            return listed if all(t["status"] == "active" for t in listed) else None

        listed = {t["id"]: t["contractAddress"] for t in _wait(active, "token activation")}
        self.contracts = [listed[token_id] for token_id in self.tokens]
        signer = business["signerAddress"]
        abi = [
            {"name": "MINTER_ROLE", "type": "function", "inputs": [], "outputs": [{"type": "bytes32"}]},
            {
                "name": "hasRole",
                "type": "function",
                "inputs": [{"type": "bytes32"}, {"type": "address"}],
                "outputs": [{"type": "bool"}],
            },
        ]
        tokens = [w3.eth.contract(address=a, abi=abi) for a in self.contracts]
        role = tokens[0].functions.MINTER_ROLE().call()
        _wait(lambda: all(t.functions.hasRole(role, signer).call() for t in tokens), "minter role")


def _unfinished(database: Engine, contract: str) -> int:
    """Operations on the contract still queued plus our transactions to it still pending, read from
    the database: a submitted operation's transaction is pending until the commit that settles it,
    and the queue's and the transactions' status indexes answer both from the few rows left (polling
    the API would take CPU from the process it measures)."""
    queued = select(func.count()).where(
        Queued.status == "queued",
        Queued.exchange_id.is_(None),  # the queue index's predicate: answered from the few rows left
        Queued.network == "local",
        Queued.contract_address == contract,
    )
    pending = select(func.count()).where(
        RelayerTransaction.status == "pending", RelayerTransaction.contract_address == contract
    )
    both = select(queued.scalar_subquery() + pending.scalar_subquery())  # one statement, one snapshot
    with database.connect() as connection:
        return int(connection.execute(both).scalar_one())


def _mined(database: Engine, contract: str) -> int:
    query = select(func.count()).where(Queued.contract_address == contract, Queued.status == "mined")
    with database.connect() as connection:
        return int(connection.execute(query).scalar_one())


def _settle_times(client: httpx.Client, key: dict[str, str], token_id: str) -> dict[str, float]:
    done: dict[str, float] = {}
    page = 1
    while True:
        query: dict[str, str | int] = {"tokenId": token_id, "limit": 200, "page": page}
        data = client.get("/v1/transactions", params=query, headers=key).json()["data"]
        for op in data:
            if op["finishedAt"]:
                done[op["id"]] = datetime.fromisoformat(op["finishedAt"]).timestamp()
        if len(data) < 200:
            return done
        page += 1


def _relay_run(
    database: Engine,
    client: httpx.Client,
    port: int,
    key: dict[str, str],
    token_id: str,
    contract: str,
    path: str,
    bodies: list[Any],
    clients: int,
    meter: Meter,
) -> tuple[float, list[float]]:
    count = sum(len(b["operations"]) if "operations" in b else 1 for b in bodies)
    requests = [encode("127.0.0.1", port, path, key, body) for body in bodies]
    already = _mined(database, contract)
    meter.start()
    started = time.time()
    sent = asyncio.run(post_all("127.0.0.1", port, requests, clients))
    _wait(lambda: _unfinished(database, contract) == 0, "every operation settled", 600)
    elapsed = time.time() - started
    meter.stop()
    if _mined(database, contract) - already != count:
        raise PersError("bench: operations failed on chain", code="bench_failed")
    finished = _settle_times(client, key, token_id)
    latencies = [(finished[i] - t) * 1000 for i, t in sent.items() if i in finished]
    return count / elapsed, latencies


def _warm_up(
    database: Engine, port: int, key: dict[str, str], contract: str, bodies: list[Any], clients: int
) -> None:
    """Operations sent and settled before a run, through the same path, not measured: each API
    process's first requests (lazy imports, statement caches, its connection pool) are its start, not
    its rate."""
    requests = [encode("127.0.0.1", port, "/v1/transactions", key, body) for body in bodies]
    asyncio.run(post_all("127.0.0.1", port, requests, clients))
    _wait(lambda: _unfinished(database, contract) == 0, "the warm-up settled", 600)


def _ops_per_tx(database: Engine, token_id: str) -> int:
    """How many operations the pump put in each transaction of a run, on average."""
    query = select(func.count(), func.count(distinct(Queued.relayer_tx_id))).where(
        Queued.token_type_id == uuid.UUID(token_id)
    )
    with database.connect() as connection:
        ops, txs = connection.execute(query).one()
    return max(1, round(ops / max(1, txs)))


def _chain_side(
    rpc_url: str, data_dir: Path, baseline_ops: int, limit_ops: int, group_size: int
) -> tuple[float, float]:
    """The plain web3.py loop and the node's limit (groups of `group_size`, the pump's transaction size),
    on contracts of their own on the same node."""
    settings = Settings(data_dir=data_dir, rpc_url=rpc_url, relayer_key=None, master_key=None)
    chain = connect(settings, "local", rpc_url)
    relayer = dev_account(7)  # not the platform's relayer nor a lane: no nonce shared with the processes
    chain = Chain(chain.w3, chain.network, relayer)
    factory_chain = Chain(chain.w3, chain.network, dev_account(0))
    factory = deploy_platform(factory_chain, data_dir / "bench-factory.json").contracts["TokenFactory"]
    register_relayer(factory_chain, factory, relayer.address)
    minter = Account.create()
    created, _ = create_tenant_contracts(
        factory_chain,
        factory,
        tenant_key(f"bench-{uuid.uuid4().hex[:6]}", "test"),
        dev_account(1).address,
        [minter.address],
        "",
        (CreditSpec(bytes(32), "Bench", "BENCH"),),
    )
    credit = created[ContractKind.CREDIT][0]
    dom = operations.domain(chain, TokenStandard.CREDIT, credit)
    contract = operations.token(chain, TokenStandard.CREDIT, credit)
    deadline = int(time.time()) + 3600
    namespace, sequence = secrets.randbits(128), iter(range(10**9))
    holders = [Account.create().address for _ in range(50)]

    def group(size: int) -> SignedGroup:
        ops = [
            Operation(
                ZERO_ADDRESS, holders[i % len(holders)], 1, typed_data.make_ref(namespace, next(sequence))
            )
            for i in range(size)
        ]
        signature = typed_data.sign(typed_data.digest(dom, minter.address, ops, deadline), minter.key)
        return SignedGroup(minter.address, ops, deadline, signature)

    w3 = chain.w3
    started = time.time()
    for _ in range(baseline_ops):  # build (with its gas estimate), sign, send, wait: one mint each
        tx = contract.functions.execute([group(1).as_abi(TokenStandard.CREDIT)]).build_transaction(
            {"from": relayer.address, "nonce": w3.eth.get_transaction_count(relayer.address)}
        )
        signed = relayer.sign_transaction(tx)  # type: ignore[arg-type]
        w3.eth.wait_for_transaction_receipt(
            w3.eth.send_raw_transaction(signed.raw_transaction), poll_latency=0.01
        )
    baseline = baseline_ops / (time.time() - started)

    # The limit: every transaction signed beforehand, all sent without waiting (the node queues them
    # by nonce), the clock stopped when the last one's raw receipt exists; then every one is checked.
    transactions = max(1, limit_ops // group_size)
    probe = execute_data(TokenStandard.CREDIT, [encode_group(TokenStandard.CREDIT, group(group_size))])
    estimate = w3.eth.estimate_gas({"from": relayer.address, "to": contract.address, "data": HexStr(probe)})
    gas = min(int(estimate * 1.2), chain.network.tx_gas_cap)
    max_fee, tip = chain.fees()
    nonce = w3.eth.get_transaction_count(relayer.address)
    raws = []
    for i in range(transactions):
        presigned: dict[str, Any] = {
            "type": 2,
            "chainId": chain.network.chain_id,
            "nonce": nonce + i,
            "to": contract.address,
            "data": execute_data(
                TokenStandard.CREDIT, [encode_group(TokenStandard.CREDIT, group(group_size))]
            ),
            "gas": gas,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip,
            "value": 0,
        }
        raws.append(relayer.sign_transaction(presigned).raw_transaction)
    started = time.time()
    hashes = [w3.eth.send_raw_transaction(raw).to_0x_hex() for raw in raws]
    _wait(lambda: chain.rpc("eth_getTransactionReceipt", hashes[-1]), "the last transaction mined", 600)
    limit = transactions * group_size / (time.time() - started)
    receipts = chain.rpc_many("eth_getTransactionReceipt", [[h] for h in hashes])
    if any(r is None or int(r["status"], 16) != 1 for r in receipts):
        raise PersError("bench: a pre-signed transaction failed", code="bench_failed")
    return baseline, limit


def run(
    single: int = 2000, batch: int = 10_000, clients: int = 32, workers: int = 1, baseline: int = 200
) -> dict[str, Any]:
    server = os.environ.get(
        "PERS_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    broker = os.environ.get("PERS_BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    # The API runs as in production: a process per core and one more (a process runs one relay request
    # at a time on its event loop's thread: `kit.session.then_commit`), rate limits shared through Redis.
    redis = os.environ.get("PERS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
    with ExitStack() as stack:
        rpc_url, anvil = stack.enter_context(_anvil())
        db_url = stack.enter_context(scratch_database(server, "pers_bench"))
        data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pers-bench-")))
        port, operator = free_port(), "op_bench_" + secrets.token_hex(24)
        queue = f"pers-bench-{uuid.uuid4().hex[:8]}"
        env = {
            **os.environ,
            "PERS_DATA_DIR": str(data),
            "PERS_DATABASE_URL": db_url,
            "PERS_BROKER_URL": broker,
            "PERS_REDIS_URL": redis,
            "PERS_API_WORKERS": os.environ.get("PERS_API_WORKERS") or str((os.cpu_count() or 1) + 1),
            "PERS_QUEUE": queue,
            "PERS_NETWORK": "local",
            "PERS_LOCAL_RPC_URL": rpc_url,
            "PERS_OPERATOR_TOKEN": operator,
            "PERS_MASTER_KEY": secrets.token_hex(32),
            "PERS_JWT_SECRET": secrets.token_hex(32),
            "PERS_LOG_LEVEL": "warning",
            "PERS_RELAY_LANES": str(min(workers, 2)),  # a lane per worker (dev account 7 is the chain side's)
            **{f"PERS_{name}": value for name, value in LIMITS.items()},
        }
        pids = stack.enter_context(_processes(env, port, workers, data))
        stack.callback(_delete_queue, broker, queue)
        base = f"http://127.0.0.1:{port}"
        client = stack.enter_context(httpx.Client(base_url=base, timeout=60))
        database = create_engine(db_url)
        stack.callback(database.dispose)
        w3 = Web3(Web3.HTTPProvider(rpc_url))
        shop = _Shop(client, operator, w3)
        holders = [Account.create().address for _ in range(100)]

        def mint(token: str, i: int) -> dict[str, str]:
            return {"type": "mint", "tokenId": token, "to": holders[i % len(holders)], "amount": "1"}

        single_bodies = [mint(shop.tokens[0], i) for i in range(single)]
        processes = {
            "api": lambda: cpu.tree(pids["api"]),
            "worker": lambda: [p for name, pid in pids.items() if name != "api" for p in cpu.tree(pid)],
            "anvil": lambda: [anvil],
            "postgres": lambda: _backends(server, db_url),
        }
        single_cpu, batch_cpu = Meter(processes), Meter(processes)
        warm_up = [mint(shop.tokens[0], i) for i in range(WARM_UP)]
        _warm_up(database, port, shop.key, shop.contracts[0], warm_up, clients)
        single_rate, latencies = _relay_run(
            database,
            client,
            port,
            shop.key,
            shop.tokens[0],
            shop.contracts[0],
            "/v1/transactions",
            single_bodies,
            clients,
            single_cpu,
        )
        batches = [
            {"operations": [mint(shop.tokens[1], i) for i in range(start, min(start + 1000, batch))]}
            for start in range(0, batch, 1000)
        ]
        batch_rate, _ = _relay_run(
            database,
            client,
            port,
            shop.key,
            shop.tokens[1],
            shop.contracts[1],
            "/v1/transactions/batch",
            batches,
            4,
            batch_cpu,
        )
        group_size, single_group = (
            _ops_per_tx(database, shop.tokens[1]),
            _ops_per_tx(database, shop.tokens[0]),
        )
        baseline_rate, limit_rate = _chain_side(rpc_url, data, baseline, batch, group_size)
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "single_ops_per_s": round(single_rate, 1),
        "batch_ops_per_s": round(batch_rate, 1),
        "baseline_ops_per_s": round(baseline_rate, 1),
        "chain_limit_ops_per_s": round(limit_rate, 1),
        "single_p50_ms": round(quantiles[49], 1),
        "single_p99_ms": round(quantiles[98], 1),
        "single_vs_baseline": round(single_rate / baseline_rate, 2),
        "batch_vs_baseline": round(batch_rate / baseline_rate, 2),
        "batch_vs_chain_limit": round(batch_rate / limit_rate, 3),
        "single_cpu_ms_per_op": single_cpu.per_operation_ms(single),
        "batch_cpu_ms_per_op": batch_cpu.per_operation_ms(batch),
        "operations": {
            "ops_per_tx": group_size,
            "single_ops_per_tx": single_group,
            "single": single,
            "batch": batch,
            "baseline": baseline,
            "clients": clients,
            "workers": workers,
        },
    }


def _delete_queue(broker: str, queue: str) -> None:
    import kombu

    with kombu.Connection(broker) as connection:  # type: ignore[attr-defined,no-untyped-call]
        connection.default_channel.queue_delete(queue)
