"""The relay under faults, on the production processes (Postgres, the broker, anvil): a stuck
transaction replaced with the same nonce, a dropped one re-sent, and two workers sharing the work."""

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from eth_account import Account
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from hexbytes import HexBytes
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine

from backend.relay.models import Lane, Operation, RelayerTransaction
from backend.settings import PROJECT_ROOT
from tests.e2e.test_relay import mint, open_shop, settled
from tests.platform import Platform, wait_for


@contextmanager
def database(platform: Platform) -> Iterator[Engine]:
    assert platform.env is not None
    engine = create_engine(platform.env["PERS_DATABASE_URL"])
    try:
        yield engine
    finally:
        engine.dispose()


def test_a_stuck_transaction_is_replaced_and_a_dropped_one_sent_again(production_platform: Platform) -> None:
    platform = production_platform
    shop = open_shop(platform, "Stuck")
    holder = Account.create().address
    assert settled(platform, shop.key, mint(platform, shop, holder, "1")["id"])["status"] == "mined"
    rpc = platform.w3.provider.make_request
    rpc("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        created = mint(platform, shop, holder, "33")
        with database(platform) as engine:

            def carriers() -> list[Any]:
                with engine.connect() as connection:
                    op = connection.execute(
                        select(Operation.relayer_tx_id).where(Operation.id == created["id"])
                    )
                    tx_id = op.scalar()
                    if tx_id is None:
                        return []
                    first = connection.execute(
                        select(RelayerTransaction.lane_id, RelayerTransaction.nonce).where(
                            RelayerTransaction.id == tx_id
                        )
                    ).one()
                    return list(
                        connection.execute(
                            select(
                                RelayerTransaction.tx_hash,
                                RelayerTransaction.status,
                                RelayerTransaction.max_fee_per_gas,
                            )
                            .where(
                                RelayerTransaction.lane_id == first.lane_id,
                                RelayerTransaction.nonce == first.nonce,
                            )
                            .order_by(RelayerTransaction.created_at)
                        )
                    )

            stuck = wait_for(carriers, lambda rows: len(rows) >= 2, "a replacement with the same nonce")
            assert stuck[1].max_fee_per_gas > stuck[0].max_fee_per_gas
            rpc("anvil_dropAllTransactions", [])  # type: ignore[arg-type]  # a restart loses the mempool
            rpc("evm_setAutomine", [True])  # type: ignore[arg-type]
            done = settled(platform, shop.key, created["id"])
            assert done["status"] == "mined", done
            rows = carriers()
            assert sorted(r.status for r in rows).count("mined") == 1
            assert {r.status for r in rows} <= {"mined", "replaced"}
            assert done["txHash"] in {r.tx_hash for r in rows}
    finally:
        rpc("evm_setAutomine", [True])  # type: ignore[arg-type]
    assert shop.credit.functions.balanceOf(holder).call() == 34


def test_two_workers_share_the_lanes_without_a_nonce_used_twice(production_platform: Platform) -> None:
    platform = production_platform
    assert platform.env is not None
    shop = open_shop(platform, "Twin")
    env = {**platform.env, "PERS_RELAY_LANES": "2"}
    log = open(PROJECT_ROOT / ".pytest-second-worker.log", "w")  # noqa: SIM115
    second = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "worker"], env=env, cwd=PROJECT_ROOT, stdout=log, stderr=log
    )
    try:
        holders = [Account.create().address for _ in range(7)]
        ids: list[str] = []
        for round_ in range(4):
            operations = [
                {"type": "mint", "tokenId": shop.credit_id, "to": holders[i % 7], "amount": str(round_ + 1)}
                for i in range(150)
            ]
            answer = platform.client.post(
                "/v1/transactions/batch", json={"operations": operations}, headers=shop.key
            )
            assert answer.status_code == 202, answer.text
            ids += [item["transaction"]["id"] for item in answer.json()["data"]]
            ids += [mint(platform, shop, holders[j], "1")["id"] for j in range(5)]
        assert all(settled(platform, shop.key, op_id)["status"] == "mined" for op_id in ids)
        total = sum(shop.credit.functions.balanceOf(h).call() for h in holders)
        assert total == sum(150 * (r + 1) + 5 for r in range(4))
        with database(platform) as engine, engine.connect() as connection:
            used = connection.execute(
                select(RelayerTransaction.lane_id, RelayerTransaction.nonce, func.count())
                .where(RelayerTransaction.status != "replaced")
                .group_by(RelayerTransaction.lane_id, RelayerTransaction.nonce)
            ).all()
            assert all(count == 1 for _, _, count in used)
            for address, next_nonce in connection.execute(select(Lane.address, Lane.next_nonce)):
                assert platform.w3.eth.get_transaction_count(address) == next_nonce  # no gap, none lost
    finally:
        second.terminate()
        second.wait(20)
        log.close()
        (PROJECT_ROOT / ".pytest-second-worker.log").unlink(missing_ok=True)


def test_mints_end_exactly_once_while_a_worker_is_killed_and_keys_are_resent(
    production_platform: Platform,
) -> None:
    """Batches under Idempotency-Keys, each sent twice, in random order, while a second worker is
    killed with SIGKILL at random moments and restarted: every accepted operation ends mined, the
    balances are exactly the distinct mints, and the lanes' nonces have no gap."""
    platform = production_platform
    assert platform.env is not None
    shop = open_shop(platform, "Crash")
    holders = [Account.create().address for _ in range(11)]
    rng = random.Random(7)
    batches = [
        (
            f"crash-{k}",
            [
                {
                    "type": "mint",
                    "tokenId": shop.credit_id,
                    "to": holders[(k + i) % 11],
                    "amount": str(1 + (k * i) % 5),
                }
                for i in range(50)
            ],
        )
        for k in range(16)
    ]
    order = batches + rng.sample(batches, 8)  # duplicate submissions of the same keys
    rng.shuffle(order)

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "worker"],
            env=platform.env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    worker = start()
    answers: dict[str, list[str]] = {}
    try:
        for n, (key, operations) in enumerate(order):
            headers = {**shop.key, "Idempotency-Key": key}
            answer = platform.client.post(
                "/v1/transactions/batch", json={"operations": operations}, headers=headers
            )
            assert answer.status_code == 202, answer.text
            ids = [item["transaction"]["id"] for item in answer.json()["data"]]
            assert answers.setdefault(key, ids) == ids  # the same key answers the same ids
            if n % 4 == rng.randrange(4):
                time.sleep(rng.random() / 5)
                worker.send_signal(signal.SIGKILL)
                worker.wait(10)
                worker = start()
        for ids in answers.values():
            for op_id in ids:
                assert settled(platform, shop.key, op_id)["status"] == "mined"
    finally:
        worker.terminate()
        worker.wait(20)
    expected = {h: 0 for h in holders}
    for _, operations in batches:
        for op in operations:
            expected[op["to"]] += int(op["amount"])
    assert {h: shop.credit.functions.balanceOf(h).call() for h in holders} == expected
    with database(platform) as engine, engine.connect() as connection:
        for address, next_nonce in connection.execute(select(Lane.address, Lane.next_nonce)):
            assert platform.w3.eth.get_transaction_count(address) == next_nonce


@pytest.mark.parametrize("ran_elsewhere", [False, True])
def test_a_transaction_whose_nonce_someone_else_used_is_recovered(
    production_platform: Platform, ran_elsewhere: bool
) -> None:
    """The lane's key used elsewhere while our transaction waited, and the node forgot ours: the
    chain's nonce passes it with no receipt. A mint that never ran is queued again with its ref and
    mined once in a new transaction; one that ran in the other transaction (its group replayed with
    our nonce) takes that transaction's outcome from the token's log. The lane's nonce follows the chain."""
    platform = production_platform
    shop = open_shop(platform, "Passed")
    holder = Account.create().address
    rpc = platform.w3.provider.make_request
    with database(platform) as engine:

        def carrier(op_id: str) -> Any:
            with engine.connect() as connection:
                return connection.execute(
                    select(
                        Lane.address, RelayerTransaction.nonce, RelayerTransaction.id, RelayerTransaction.raw
                    )
                    .join(Lane, Lane.id == RelayerTransaction.lane_id)
                    .join(Operation, Operation.relayer_tx_id == RelayerTransaction.id)
                    .where(Operation.id == op_id)
                ).first()

        rpc("evm_setAutomine", [False])  # type: ignore[arg-type]
        try:
            created = mint(platform, shop, holder, "5")
            address, nonce, lost, raw = wait_for(
                lambda: carrier(created["id"]), bool, "the mint's transaction"
            )
            rpc("anvil_dropAllTransactions", [])  # type: ignore[arg-type]
            if ran_elsewhere:  # the same calldata from the lane's key, with our nonce and higher fees
                ours = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
                other = platform.w3.eth.send_transaction(
                    {
                        "from": address,
                        "to": shop.credit.address,
                        "data": HexBytes(ours["data"]),
                        "nonce": nonce,
                        "gas": ours["gas"],
                        "maxFeePerGas": 2 * ours["maxFeePerGas"],
                        "maxPriorityFeePerGas": 2 * ours["maxPriorityFeePerGas"],
                    }
                )
                rpc("evm_mine", [])  # type: ignore[arg-type]
            else:
                rpc("anvil_setNonce", [address, hex(nonce + 1)])  # type: ignore[arg-type]
        finally:
            rpc("evm_setAutomine", [True])  # type: ignore[arg-type]
        done = settled(platform, shop.key, created["id"])
        assert done["status"] == "mined", done
        assert shop.credit.functions.balanceOf(holder).call() == 5
        _, new_nonce, carried, _ = carrier(created["id"])
        if ran_elsewhere:
            assert done["txHash"] == other.to_0x_hex() and carried == lost
        else:
            assert carried != lost and new_nonce > nonce
        with engine.connect() as connection:
            dropped = connection.execute(
                select(RelayerTransaction.status).where(RelayerTransaction.id == lost)
            ).scalar()
            assert dropped == "dropped"
            next_nonce = connection.execute(select(Lane.next_nonce).where(Lane.address == address)).scalar()
    assert platform.w3.eth.get_transaction_count(address) == next_nonce


def test_two_workers_deploy_and_grant_roles_at_once_on_the_lanes(production_platform: Platform) -> None:
    """Platform transactions (tenant contracts, credit tokens) from two workers at once take their
    nonces from the relayer's lane in Postgres: every one stored before broadcast and mined, each
    nonce used once, and the lanes' nonces are the chain's; the businesses get their minter roles."""
    platform = production_platform
    assert platform.env is not None
    log = open(PROJECT_ROOT / ".pytest-platform-worker.log", "w")  # noqa: SIM115
    second = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "worker"],
        env=platform.env,
        cwd=PROJECT_ROOT,
        stdout=log,
        stderr=log,
    )
    try:
        with ThreadPoolExecutor(4) as pool:
            shops = list(pool.map(lambda n: open_shop(platform, f"Twin{n}"), range(4)))
        holder = Account.create().address
        for shop in shops:  # each business holds its roles: its mint goes through
            assert settled(platform, shop.key, mint(platform, shop, holder, "2")["id"])["status"] == "mined"
        with database(platform) as engine, engine.connect() as connection:
            relay_lanes = platform.w3.eth.accounts[5:]  # the dev accounts the relay's lanes use

            def platform_transactions() -> list[Any]:
                connection.commit()
                return list(
                    connection.execute(
                        select(Lane.address, RelayerTransaction.nonce, RelayerTransaction.status)
                        .join(Lane, Lane.id == RelayerTransaction.lane_id)
                        .where(Lane.address.not_in(relay_lanes))
                    )
                )

            sent = wait_for(
                platform_transactions,
                lambda rows: all(r.status == "mined" for r in rows),
                "platform transactions settling",
            )
            relayer = platform.w3.eth.accounts[0]
            by_sender: dict[str, list[int]] = {}
            for address, nonce, _ in sent:
                by_sender.setdefault(address, []).append(nonce)
            assert len(by_sender[relayer]) >= 8  # 4 tenants' contracts and credit tokens, at least
            for nonces in by_sender.values():
                assert len(nonces) == len(set(nonces))
            for address, next_nonce in connection.execute(select(Lane.address, Lane.next_nonce)):
                assert platform.w3.eth.get_transaction_count(address) == next_nonce, address
    finally:
        second.terminate()
        second.wait(20)
        log.close()
        (PROJECT_ROOT / ".pytest-platform-worker.log").unlink(missing_ok=True)
    assert sum(shop.credit.functions.balanceOf(holder).call() for shop in shops) == 8
