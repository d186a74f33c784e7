"""`pers bench indexer`: a backfill of `events` transfer events over ten tenant contracts (five
tenants' ERC-1155 and ERC-20, batch-minted by the platform, plus wallets' batch transfers) on an
anvil of its own, indexed by `pers indexer` into a fresh database with balances maintained; against
the raw pipeline limit (`eth_getLogs` over 100-block ranges, `json.loads`, `COPY` of the same rows,
nothing else) and web3.py's contract-event decoding, in the same run. Then `pers api` on the indexed
database answers balance reads (`GET /v1/balances/accounts/{address}` with a project key) against its
bare `/healthz`, driven by the lean load generator.

The indexer runs as its own process with its fetch workers: the memory figure is the peak of their
summed proportional set size (shared pages counted once), CPU seconds are the whole tree's."""

import asyncio
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psycopg
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from web3 import Web3

from backend.bench import cpu
from backend.bench.client import encode_get, get_all
from backend.bench.cpu import Meter
from backend.bench.processes import LIMITS, anvil, free_port, pers_processes, postgres_backends, wait
from backend.chain import operations, typed_data
from backend.chain.artifacts import abi
from backend.chain.client import Chain, connect, dev_account
from backend.chain.deploy import (
    ContractKind,
    CreditSpec,
    TokenKind,
    create_tenant_contracts,
    deploy_platform,
    tenant_key,
)
from backend.chain.typed_data import ZERO_ADDRESS, TokenStandard, encoded_digest, sign
from backend.kit import migrate
from backend.kit.db import scratch_database
from backend.kit.errors import PersError
from backend.relay.encoding import EncodedGroup, encode_operation, execute_data
from backend.settings import PROJECT_ROOT, Settings
from backend.tenants.models import Tenant, TenantEnvironment
from backend.tokens.models import TokenType

TENANTS = 5  # each: an ERC-1155 and an ERC-20, ten contracts
GROUP = 500  # mints per signed group (and transaction): two events each; fits the gas cap
IDS = (1, 2, 3, 4)
HOLDERS = 300
RAW_RANGE = 100  # blocks per eth_getLogs in the raw pipeline
DECODE_SAMPLE = 5000
READS = 4000  # balance reads (and as many bare requests)
READ_CLIENTS = 16


def run(events: int, database_url: str) -> dict[str, Any]:
    with ExitStack() as stack:
        rpc_url, node = stack.enter_context(anvil())
        data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pers-bench-indexer-")))
        settings = Settings(data_dir=data, rpc_url=rpc_url, relayer_key=None, master_key=None)
        chain = connect(settings, "local", rpc_url)
        contracts, holders = _generate(chain, events)
        head = chain.w3.eth.block_number
        mirror_url = stack.enter_context(scratch_database(database_url, "pers_bench_mirror"))
        migrate.upgrade(mirror_url)
        meter = Meter(
            {
                "anvil": lambda: [node],
                "postgres": lambda: postgres_backends(database_url, mirror_url),
            }
        )
        indexed = _index(rpc_url, mirror_url, data, head, meter)
        reads = _balance_reads(rpc_url, mirror_url, data, contracts, holders)
        raw_url = stack.enter_context(scratch_database(database_url, "pers_bench_raw"))
        raw_seconds, raw_events = _raw_limit(rpc_url, raw_url, contracts, head)
        return {
            "events": indexed["events"],
            "events_per_s": round(indexed["events"] / indexed["seconds"]),
            "raw_limit_events_per_s": round(raw_events / raw_seconds),
            "ratio_to_raw": round(indexed["events"] / indexed["seconds"] / (raw_events / raw_seconds), 3),
            "web3py_decode_events_per_s": round(_web3_decode(chain, contracts)),
            "peak_rss_mb": indexed["peak_rss_mb"],
            "leader_peak_rss_mb": indexed["leader_peak_rss_mb"],
            **reads,
            "cpu_us_per_event": indexed["cpu_us_per_event"],
            "seconds": round(indexed["seconds"], 2),
            "blocks": head,
            "contracts": len(contracts),
        }


def _generate(chain: Chain, events: int) -> tuple[list[str], list[str]]:
    """Batch mints across the ten contracts until `events` logs exist, with a wallet's batch transfer
    now and then (a `TransferBatch` of four ids). Transactions are signed ahead and sent raw."""
    factory = deploy_platform(chain).contracts["TokenFactory"]
    admin, minter = dev_account(1), Account.create()
    holders = [Account.create().address for _ in range(HOLDERS)]
    wallet = dev_account(2)
    tokens: list[tuple[TokenStandard, str]] = []
    for i in range(TENANTS):
        created, _ = create_tenant_contracts(
            chain,
            factory,
            tenant_key(f"bench{i}", "test"),
            admin.address,
            [minter.address],
            "",
            (CreditSpec(bytes(32), f"Bench {i}", f"B{i}"),),
        )
        rewards = created[ContractKind.REWARDS][0]
        registry = chain.contract("RewardsToken", rewards)
        for token_id in IDS:
            chain.call(registry, "registerId", token_id, TokenKind.REWARD, sender=admin)
        tokens += [(TokenStandard.REWARDS, rewards), (TokenStandard.CREDIT, created[ContractKind.CREDIT][0])]
    namespace, sequence = secrets.randbits(128), iter(range(10**12))
    deadline = int(time.time()) + 24 * 3600
    domains = {address: operations.domain(chain, standard, address) for standard, address in tokens}

    def execute(standard: TokenStandard, address: str, to: list[str]) -> str:
        """`execute` calldata of one group minting to `to`, encoded by hand as the relay does it."""
        ops = [
            encode_operation(
                standard,
                ZERO_ADDRESS,
                holder,
                1 + n % 7,
                typed_data.make_ref(namespace, next(sequence)),
                IDS[n % 4] if standard is TokenStandard.REWARDS else 0,
            )
            for n, holder in enumerate(to)
        ]
        signature = sign(encoded_digest(domains[address], minter.address, ops, deadline), minter.key)
        return execute_data(standard, [EncodedGroup(minter.address, ops, deadline, signature)])

    relayer = chain.relayer
    _send_all(
        chain, relayer, [(address, execute(standard, address, holders[:10])) for standard, address in tokens]
    )
    batch = chain.contract("RewardsToken", tokens[0][1])
    _send_all(
        chain, relayer, [(tokens[0][1], execute(TokenStandard.REWARDS, tokens[0][1], [wallet.address] * 400))]
    )
    made = 2 * 10 * len(tokens) + 800
    rounds = iter(range(10**12))
    while made < events:
        work = []
        for standard, address in tokens:
            if made >= events:
                break
            n = next(rounds)
            to = [holders[(n * GROUP + k) % HOLDERS] for k in range(min(GROUP, (events - made + 1) // 2))]
            work.append((address, execute(standard, address, to)))
            made += 2 * len(to)
        _send_all(chain, relayer, work)
        for k in range(2):  # a wallet's own batch transfers: TransferBatch events, flagged external
            data = batch.encode_abi(
                "safeBatchTransferFrom", args=[wallet.address, holders[k], list(IDS), [1, 1, 1, 1], b""]
            )
            _send_all(chain, wallet, [(tokens[0][1], data)])
            made += 1
    return [address.lower() for _, address in tokens], holders


_GAS: dict[tuple[str, int], int] = {}  # a call's estimate, by contract and call size: estimated once


def _send_all(chain: Chain, sender: LocalAccount, work: list[tuple[str, str]]) -> None:
    """Signs the calls with consecutive nonces, sends them raw and waits for their receipts (raw
    answers: web3's receipt formatting of a thousand logs costs more than anvil's mining them)."""
    nonce = int(chain.rpc("eth_getTransactionCount", sender.address, "pending"), 16)
    max_fee, tip = chain.fees()
    hashes = []
    for i, (to, data) in enumerate(work):
        key = (to, len(data))
        if key not in _GAS:  # the first group of a contract mints to new holders: the dearest
            call = {"from": sender.address, "to": to, "data": data}
            _GAS[key] = int(int(chain.rpc("eth_estimateGas", call), 16) * 1.3)
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": chain.network.chain_id,
            "nonce": nonce + i,
            "to": Web3.to_checksum_address(to),
            "data": data,
            "gas": min(_GAS[key], chain.network.tx_gas_cap),
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip,
            "value": 0,
        }
        raw = sender.sign_transaction(tx).raw_transaction
        hashes.append(chain.rpc("eth_sendRawTransaction", "0x" + raw.hex()))

    def receipts() -> list[Any] | None:
        found = chain.rpc_many("eth_getTransactionReceipt", [[h] for h in hashes])
        return None if any(r is None for r in found) else found

    if any(r["status"] != "0x1" for r in wait(receipts, "the bench transactions' receipts")):
        raise RuntimeError("a bench transaction reverted")


def _index(rpc_url: str, database_url: str, data: Path, head: int, meter: Meter) -> dict[str, Any]:
    """`pers indexer` from nothing to `head`: seconds from its start to the cursor at the head; the
    peak of the summed PSS of the indexer and its fetch workers, sampled every 0.1 s; CPU per event."""
    env = {
        "PATH": "/usr/bin:/bin",
        "PERS_DATA_DIR": str(data),
        "PERS_DATABASE_URL": database_url,
        "PERS_NETWORK": "local",
        "PERS_RPC_URL": rpc_url,
        "PERS_INDEXER_POLL_INTERVAL": "0.05",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "indexer"],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    started = threading.Event()
    output: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if "indexer.start" in line:
                started.set()

    threading.Thread(target=read, daemon=True).start()
    groups = {**meter.groups, "indexer": lambda: cpu.tree(proc.pid)}
    meter = Meter(groups)
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    peak = [0.0]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.1):
            peak[0] = max(peak[0], sum(_pss_mb(pid) for pid in cpu.tree(proc.pid)))

    try:
        wait(started.is_set, "the indexer's start:\n" + "".join(output[-20:]), 120)
        threading.Thread(target=sample, daemon=True).start()
        meter.start()
        began = time.monotonic()
        with psycopg.connect(dsn, autocommit=True) as connection:

            def done() -> bool:
                row = connection.execute("SELECT block_number FROM mirror_cursors").fetchone()
                return row is not None and row[0] >= head

            wait(done, "the indexer to reach the head", 3600)
            seconds = time.monotonic() - began
            meter.stop()
            count = connection.execute("SELECT count(*) FROM mirror_events").fetchone()
        sampling.set()
        status = Path(f"/proc/{proc.pid}/status").read_text()
        leader = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    finally:
        sampling.set()
        proc.terminate()
        proc.wait(30)
    events = int(count[0]) if count else 0
    return {
        "events": events,
        "seconds": seconds,
        "peak_rss_mb": round(peak[0], 1),
        "leader_peak_rss_mb": round(leader, 1),
        "cpu_us_per_event": {
            name: round(1e6 * spent / max(events, 1), 1)
            for name, spent in meter.spent.items()
            if name != "loadgen"
        },
    }


def _pss_mb(pid: int) -> float:
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:  # gone
        return 0.0
    found = re.search(r"^Pss:\s+(\d+)", rollup, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else 0.0


def _balance_reads(
    rpc_url: str, database_url: str, data: Path, contracts: list[str], holders: list[str]
) -> dict[str, Any]:
    """`pers api` on the indexed database: balance reads of the first tenant's holders (its ERC-1155
    and ERC-20 registered as token types) against `/healthz`, each over `READ_CLIENTS` connections."""
    project = "pk_bench_" + secrets.token_hex(16)
    _seed_tenant(database_url, project, contracts[0], contracts[1])
    port = free_port()
    env = {
        **os.environ,
        "PERS_DATA_DIR": str(data),
        "PERS_DATABASE_URL": database_url,
        "PERS_BROKER_URL": os.environ.get("PERS_BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"),
        # One API process per core, as in production: their rate limits shared through Redis.
        "PERS_REDIS_URL": os.environ.get("PERS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/11"),
        "PERS_NETWORK": "local",
        "PERS_LOCAL_RPC_URL": rpc_url,
        "PERS_API_WORKERS": os.environ.get("PERS_API_WORKERS") or str(os.cpu_count() or 1),
        "PERS_OPERATOR_TOKEN": "op_bench_" + secrets.token_hex(24),
        "PERS_MASTER_KEY": secrets.token_hex(32),
        "PERS_JWT_SECRET": secrets.token_hex(32),
        "PERS_LOG_LEVEL": "warning",
        **{f"PERS_{name}": value for name, value in LIMITS.items()},
    }
    headers = {"X-Project-Key": project}
    host = "127.0.0.1"
    reads = [
        encode_get(host, port, f"/v1/balances/accounts/{holders[i % len(holders)]}", headers)
        for i in range(READS)
    ]
    bare = [encode_get(host, port, "/healthz", {}) for _ in range(READS)]
    with pers_processes(env, port, 0, data):
        with httpx.Client(base_url=f"http://{host}:{port}") as client:
            answer = (
                client.get(f"/v1/balances/accounts/{holders[0]}", headers=headers).raise_for_status().json()
            )
        if not answer["tokenBalances"]:  # the reads must find the indexed holdings, not an empty mirror
            raise PersError(f"bench: no balances for {holders[0]}: {answer}", code="bench_failed")
        asyncio.run(get_all(host, port, reads[:200], READ_CLIENTS))  # warm up every API process
        figures = {}
        for name, requests in (("balance_read", reads), ("bare", bare)):
            began = time.monotonic()
            latencies = asyncio.run(get_all(host, port, requests, READ_CLIENTS))
            figures[name] = (len(requests) / (time.monotonic() - began), latencies)
    balance_rps, latencies = figures["balance_read"]
    return {
        "balance_read_rps": round(balance_rps),
        "bare_rps": round(figures["bare"][0]),
        "balance_read_p99_ms": round(1000 * statistics.quantiles(latencies, n=100)[98], 1),
        "balance_read_p50_ms": round(1000 * statistics.median(latencies), 1),
    }


def _seed_tenant(database_url: str, project: str, rewards: str, credit: str) -> None:
    """The tenant `bench0` as the API knows it: its test environment on the local network with a
    project key, and its ERC-1155 ids and its ERC-20 as active token types."""
    engine = create_engine(database_url)
    try:
        with Session(engine) as session, session.begin():
            tenant = Tenant(name="Bench 0", slug=f"bench-{uuid.uuid4().hex[:8]}")
            session.add(tenant)
            session.flush()
            session.add(
                TenantEnvironment(
                    tenant_id=tenant.id,
                    environment="test",
                    project_key=project,
                    network="local",
                    status="active",
                    tenant_key="0x" + tenant_key("bench0", "test").hex(),
                    admin_address=ZERO_ADDRESS,
                    admin_key_sealed="",
                    rewards_address=Web3.to_checksum_address(rewards),
                )
            )
            tokens = [(rewards, token_id, "reward") for token_id in IDS] + [(credit, None, "credit")]
            for n, (address, token_id, kind) in enumerate(tokens):
                session.add(
                    TokenType(
                        tenant_id=tenant.id,
                        environment="test",
                        kind=kind,
                        name=f"Bench {n}",
                        symbol=f"B{n}",
                        decimals=0,
                        status="active",
                        contract_address=Web3.to_checksum_address(address),
                        chain_token_id=token_id,
                    )
                )
    finally:
        engine.dispose()


def _raw_limit(rpc_url: str, database_url: str, contracts: list[str], head: int) -> tuple[float, int]:
    """Sequential `eth_getLogs` of 100-block ranges, `json.loads`, `COPY` of the rows: no logic."""
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    total = 0
    with (
        httpx.Client(timeout=120, headers={"content-type": "application/json"}) as client,
        psycopg.connect(dsn) as connection,
    ):
        connection.execute(
            "CREATE TABLE raw_logs (block_hash text, log_index int, block_number bigint, tx_hash text,"
            " address text, topics text, data text)"
        )
        connection.commit()
        began = time.monotonic()
        for lo in range(0, head + 1, RAW_RANGE):
            query = {
                "fromBlock": hex(lo),
                "toBlock": hex(min(head, lo + RAW_RANGE - 1)),
                "address": contracts,
            }
            body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs", "params": [query]})
            logs = json.loads(client.post(rpc_url, content=body).content)["result"]
            with connection.cursor() as cursor, cursor.copy("COPY raw_logs FROM STDIN") as copy:
                for entry in logs:
                    copy.write_row(
                        (
                            entry["blockHash"],
                            int(entry["logIndex"], 16),
                            int(entry["blockNumber"], 16),
                            entry["transactionHash"],
                            entry["address"],
                            ",".join(entry["topics"]),
                            entry["data"],
                        )
                    )
            connection.commit()
            total += len(logs)
        seconds = time.monotonic() - began
    return seconds, total


def _web3_decode(chain: Chain, contracts: list[str]) -> float:
    """web3.py's contract-event decoding (`process_log`) of a sample of the same logs."""
    w3 = chain.w3
    head = w3.eth.block_number
    logs = w3.eth.get_logs(
        {
            "fromBlock": max(0, head - 200),
            "toBlock": head,
            "address": [Web3.to_checksum_address(c) for c in contracts],
        }
    )[:DECODE_SAMPLE]
    events: dict[bytes, Any] = {}
    for name in ("RewardsToken", "CreditToken"):
        contract = w3.eth.contract(abi=abi(name))
        for event in contract.all_events():
            events.setdefault(bytes.fromhex(event.topic.removeprefix("0x")), event)
    began = time.monotonic()
    for entry in logs:
        events[bytes(entry["topics"][0])].process_log(entry)
    return len(logs) / (time.monotonic() - began)
