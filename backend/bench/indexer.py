"""`pers bench indexer`: a backfill of `events` transfer events over ten tenant contracts (five
tenants' ERC-1155 and ERC-20, batch-minted by the platform, plus wallets' batch transfers) on an
anvil of its own, indexed by `pers indexer` into a fresh database with balances maintained; against
the raw pipeline limit (`eth_getLogs` over 100-block ranges, `json.loads`, `COPY` of the same rows,
nothing else) and web3.py's contract-event decoding, in the same run.

The indexer runs as its own process: its peak resident memory (VmHWM) and CPU seconds are its own."""

import json
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psycopg
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from web3 import Web3

from backend.bench.processes import anvil, wait
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
from backend.chain.operations import SignedGroup
from backend.chain.typed_data import ZERO_ADDRESS, Operation, TokenStandard
from backend.kit import migrate
from backend.kit.db import scratch_database
from backend.settings import PROJECT_ROOT, Settings

TENANTS = 5  # each: an ERC-1155 and an ERC-20, ten contracts
GROUP = 500  # mints per signed group (and transaction): two events each; fits the gas cap
IDS = (1, 2, 3, 4)
HOLDERS = 300
RAW_RANGE = 100  # blocks per eth_getLogs in the raw pipeline
DECODE_SAMPLE = 5000


def run(events: int, database_url: str) -> dict[str, Any]:
    with ExitStack() as stack:
        rpc_url, _ = stack.enter_context(anvil())
        data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pers-bench-indexer-")))
        settings = Settings(data_dir=data, rpc_url=rpc_url, relayer_key=None, master_key=None)
        chain = connect(settings, "local", rpc_url)
        contracts = _generate(chain, events)
        head = chain.w3.eth.block_number
        mirror_url = stack.enter_context(scratch_database(database_url, "pers_bench_mirror"))
        migrate.upgrade(mirror_url)
        indexed = _index(rpc_url, mirror_url, data, head)
        raw_url = stack.enter_context(scratch_database(database_url, "pers_bench_raw"))
        raw_seconds, raw_events = _raw_limit(rpc_url, raw_url, contracts, head)
        return {
            "events": indexed["events"],
            "events_per_s": round(indexed["events"] / indexed["seconds"]),
            "raw_limit_events_per_s": round(raw_events / raw_seconds),
            "ratio_to_raw": round(indexed["events"] / indexed["seconds"] / (raw_events / raw_seconds), 3),
            "web3py_decode_events_per_s": round(_web3_decode(chain, contracts)),
            "peak_rss_mb": indexed["peak_rss_mb"],
            "indexer_cpu_s": indexed["cpu_s"],
            "seconds": round(indexed["seconds"], 2),
            "blocks": head,
            "contracts": len(contracts),
        }


def _generate(chain: Chain, events: int) -> list[str]:
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
        ops = [
            Operation(
                ZERO_ADDRESS,
                holder,
                1 + n % 7,
                typed_data.make_ref(namespace, next(sequence)),
                IDS[n % 4] if standard is TokenStandard.REWARDS else 0,
            )
            for n, holder in enumerate(to)
        ]
        signature = typed_data.sign(
            typed_data.digest(domains[address], minter.address, ops, deadline), minter.key
        )
        contract = operations.token(chain, standard, address)
        return str(
            contract.encode_abi(
                "execute", args=[[SignedGroup(minter.address, ops, deadline, signature).as_abi(standard)]]
            )
        )

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
    return [address.lower() for _, address in tokens]


_GAS: dict[tuple[str, int], int] = {}  # a call's estimate, by contract and call size: estimated once


def _send_all(chain: Chain, sender: LocalAccount, work: list[tuple[str, str]]) -> None:
    """Signs the calls with consecutive nonces, sends them raw and waits for their receipts."""
    w3 = chain.w3
    nonce = w3.eth.get_transaction_count(sender.address)
    max_fee, tip = chain.fees()
    hashes = []
    for i, (to, data) in enumerate(work):
        key = (to, len(data))
        if key not in _GAS:  # the first group of a contract mints to new holders: the dearest
            call = {"from": sender.address, "to": Web3.to_checksum_address(to), "data": HexStr(data)}
            _GAS[key] = int(w3.eth.estimate_gas(call) * 1.3)  # type: ignore[arg-type]
        gas = _GAS[key]
        tx = {
            "type": 2,
            "chainId": chain.network.chain_id,
            "nonce": nonce + i,
            "to": Web3.to_checksum_address(to),
            "data": data,
            "gas": min(gas, chain.network.tx_gas_cap),
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip,
            "value": 0,
        }
        hashes.append(w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction))  # type: ignore[arg-type]
    for tx_hash in hashes:
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=0.01)
        if receipt["status"] != 1:
            raise RuntimeError("a bench transaction reverted")


def _index(rpc_url: str, database_url: str, data: Path, head: int) -> dict[str, Any]:
    """`pers indexer` from nothing to `head`: seconds from its start to the cursor at the head."""
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
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    try:
        wait(started.is_set, "the indexer's start:\n" + "".join(output[-20:]), 120)
        began = time.monotonic()
        with psycopg.connect(dsn, autocommit=True) as connection:

            def done() -> bool:
                row = connection.execute("SELECT block_number FROM mirror_cursors").fetchone()
                return row is not None and row[0] >= head

            wait(done, "the indexer to reach the head", 3600)
            seconds = time.monotonic() - began
            count = connection.execute("SELECT count(*) FROM mirror_events").fetchone()
        status = Path(f"/proc/{proc.pid}/status").read_text()
        peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
        ticks = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(ticks[11]) + int(ticks[12])) / 100
    finally:
        proc.terminate()
        proc.wait(30)
    return {
        "events": int(count[0]) if count else 0,
        "seconds": seconds,
        "peak_rss_mb": round(peak, 1),
        "cpu_s": cpu,
    }


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
