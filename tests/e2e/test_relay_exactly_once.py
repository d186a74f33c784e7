"""Exactly once under faults (issue 9's must-show), on Postgres, a broker and anvil of the test's own:
2,000 mints in random order, singles and batches, each Idempotency-Key sent again at random, while
the workers are killed with SIGKILL at random moments and restarted, the node is stopped for 20 s and
started again with its state kept (its mempool lost), and the broker is restarted (losing the
messages it held). Every accepted operation ends `mined` or `failed` with a reason, the balances are
exactly the distinct mints, no nonce is used twice and every lane's nonce on chain is the one we keep.
The same faults under exchange redemptions (a burn and a mint in one router transaction, sent by the
exchange pump): each accepted redeem completes or fails exactly once, both legs or neither."""

import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from sqlalchemy import Connection, create_engine, func, select

from backend.redemptions.models import Redeem
from backend.relay.models import Lane, Operation, RelayerTransaction
from tests.conftest import Server, Stack, private_redis, production_stack, running_anvil, throwaway_postgres
from tests.e2e.test_redemptions import offer, reward_chain_id, user_headers
from tests.e2e.test_relay import Shop, open_shop, settled
from tests.platform import Platform, wait_for

MINTS, SINGLES, HOLDERS = 2000, 400, 25
NODE_DOWN = 20.0  # seconds the node is stopped
Job = Callable[[], None]


def submissions(rng: random.Random, shop: Shop) -> list[tuple[str, str, dict[str, Any]]]:
    """(Idempotency-Key, path, body) for each distinct request: singles, then batches of 10-150."""
    holders = [Account.create().address for _ in range(HOLDERS)]
    mints = [
        {
            "type": "mint",
            "tokenId": shop.credit_id,
            "to": rng.choice(holders),
            "amount": str(rng.randint(1, 9)),
        }
        for _ in range(MINTS)
    ]
    requests = [(f"single-{i}", "/v1/transactions", body) for i, body in enumerate(mints[:SINGLES])]
    rest = mints[SINGLES:]
    while rest:
        size = rng.randint(10, 150)
        requests.append((f"batch-{len(requests)}", "/v1/transactions/batch", {"operations": rest[:size]}))
        rest = rest[size:]
    return requests


def faults(
    stack: Stack, node: Server, broker: Server, rng: random.Random, log: list[str], while_broker_down: Job
) -> None:
    """Kills a random worker now and then (restarting it), stops the node for NODE_DOWN seconds and
    restarts the broker, a worker being killed and started while each is down; `while_broker_down`
    runs while the broker is. Whatever goes wrong is logged (the test fails on it)."""

    def pause() -> None:
        time.sleep(rng.uniform(0.5, 3))

    def kill_a_worker() -> None:
        victim = rng.choice([w for w in stack.workers if w.poll() is None])
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        time.sleep(rng.uniform(0, 1))
        stack.start_worker()
        log.append(f"killed worker {victim.pid}")

    def outage(server: Server, seconds: float, meanwhile: Job = lambda: None) -> None:
        server.stop()
        log.append(f"{server.what} stopped")
        stopped = time.monotonic()
        meanwhile()
        pause()
        kill_a_worker()  # a worker that starts while it is down
        time.sleep(max(0.0, seconds - (time.monotonic() - stopped)))
        server.start()
        log.append(f"{server.what} started after {time.monotonic() - stopped:.1f} s")

    steps: list[Job] = [
        kill_a_worker,
        lambda: outage(node, NODE_DOWN),
        kill_a_worker,
        lambda: outage(broker, rng.uniform(2, 5), while_broker_down),
        kill_a_worker,
    ]
    try:
        for step in steps:
            pause()
            step()
    except BaseException as exc:  # pytest.fail raises BaseException; a thread would swallow it
        log.append(f"fault schedule broke: {exc!r}")


@contextmanager
def chaos_stack(tmp_path: Path, redis_url: str, workers: int) -> Iterator[tuple[Stack, Server, Server, str]]:
    """The production processes (two lanes) on a database, a broker and a node of the test's own, which
    the faults stop and restart: (stack, node, broker, database URL)."""
    with (
        throwaway_postgres(migrated=True) as database_url,
        private_redis() as broker,
        running_anvil(tmp_path / "anvil-state.json") as node,
        production_stack(
            tmp_path,
            database_url,
            f"redis://127.0.0.1:{broker.port}/0",
            redis_url,
            f"http://127.0.0.1:{node.port}",
            workers=workers,
            relay_lanes="2",
        ) as stack,
    ):
        yield stack, node, broker, database_url


def lanes_without_gaps(connection: Connection, platform: Platform) -> None:
    """No nonce used twice, nothing left pending, and no gap: the chain's count is ours."""
    used = connection.execute(
        select(RelayerTransaction.lane_id, RelayerTransaction.nonce, func.count())
        .where(RelayerTransaction.status == "mined")
        .group_by(RelayerTransaction.lane_id, RelayerTransaction.nonce)
    ).all()
    assert used and all(count == 1 for *_, count in used)
    pending = connection.execute(select(func.count()).where(RelayerTransaction.status == "pending")).scalar()
    assert pending == 0
    for address, next_nonce in connection.execute(select(Lane.address, Lane.next_nonce)):
        assert platform.w3.eth.get_transaction_count(address) == next_nonce, address


@pytest.mark.parametrize("workers", [1, 2])
def test_mints_end_exactly_once_while_workers_die_the_node_stops_and_the_broker_restarts(
    workers: int, tmp_path: Path, redis_url: str
) -> None:
    seed = int.from_bytes(os.urandom(4))
    rng = random.Random(seed)
    with chaos_stack(tmp_path, redis_url, workers) as (stack, node, broker, database_url):
        platform = stack.platform
        shop = open_shop(platform, "Chaos")
        distinct = submissions(rng, shop)
        order = distinct + rng.sample(distinct, len(distinct) // 4)  # the same keys submitted again
        rng.shuffle(order)
        log: list[str] = []
        tokens: list[httpx.Response] = []

        def create_token() -> None:  # its activation job is sent while the broker is down
            body = {"kind": "credit", "name": "Later Points", "symbol": "LTR"}
            tokens.append(platform.client.post("/v1/tokens", json=body, headers=shop.tenant.admin_headers))

        chaos = threading.Thread(
            target=faults, args=(stack, node, broker, random.Random(seed + 1), log, create_token)
        )
        chaos.start()
        answers: dict[str, list[str]] = {}
        try:
            for key, path, body in order:
                answer = platform.client.post(path, json=body, headers={**shop.key, "Idempotency-Key": key})
                assert answer.status_code == 202, (seed, log, answer.text)
                found = answer.json()
                if "operations" in body:
                    assert all(item["status"] == 202 for item in found["data"]), found
                    ids = [item["transaction"]["id"] for item in found["data"]]
                else:
                    ids = [found["id"]]
                assert answers.setdefault(key, ids) == ids  # the same key answers the same operations
                time.sleep(rng.uniform(0, 0.08))  # spread over the faults
        finally:
            chaos.join()
        assert not [line for line in log if "broke" in line], log
        accepted = {op_id for ids in answers.values() for op_id in ids}
        assert len(accepted) == MINTS

        engine = create_engine(database_url)
        try:
            with engine.connect() as connection:

                def outcomes() -> dict[tuple[str, str | None], int]:
                    rows = connection.execute(
                        select(Operation.status, Operation.error_code, func.count()).group_by(
                            Operation.status, Operation.error_code
                        )
                    ).all()
                    connection.commit()
                    return {(status, code): count for status, code, count in rows}

                final = wait_for(
                    outcomes,
                    lambda found: {status for status, _ in found} <= {"mined", "failed"},
                    f"settling (seed {seed}, {log})",
                    300,
                )
                assert sum(final.values()) == MINTS
                assert all(code for status, code in final if status == "failed"), final  # with a reason
                # Exactly once: each holder holds exactly what was minted for it, once.
                expected: dict[str, int] = {}
                for _, _, body in distinct:
                    for op in body.get("operations", [body]):
                        expected[op["to"]] = expected.get(op["to"], 0) + int(op["amount"])
                on_chain = {h: shop.credit.functions.balanceOf(h).call() for h in expected}
                assert on_chain == expected, (seed, log, final)
                lanes_without_gaps(connection, platform)
        finally:
            engine.dispose()
        # The job sent while the broker was down was not lost (the outbox's sweeper sends it again).
        (created,) = tokens
        assert created.status_code == 202, created.text
        token_id = created.json()["id"]
        activated = wait_for(
            lambda: platform.client.get(f"/v1/tokens/{token_id}", headers=shop.tenant.admin_headers).json(),
            lambda token: token["status"] != "pending",
            "the token created while the broker was down",
        )
        assert activated["status"] == "active", activated
        assert sum(w.poll() is None for w in stack.workers) == workers, "a worker died by itself"
        assert sum("killed" in line for line in log) >= 5


USERS, CREDITS, COST, STOCK, TRIES = 12, 200, 30, 50, 8  # each user can pay 6 redeems, asks for 8


def test_redeems_end_exactly_once_while_workers_die_the_node_stops_and_the_broker_restarts(
    tmp_path: Path, redis_url: str
) -> None:
    seed = int.from_bytes(os.urandom(4))
    rng = random.Random(seed)
    with chaos_stack(tmp_path, redis_url, 2) as (stack, node, broker, database_url):
        platform = stack.platform
        shop = open_shop(platform, "Exchanges")
        users = [
            platform.client.post("/v1/users", json={"externalId": f"x-{i}"}, headers=shop.key).json()
            for i in range(USERS)
        ]
        mints = [
            {"type": "mint", "tokenId": shop.credit_id, "to": u["walletAddress"], "amount": str(CREDITS)}
            for u in users
        ]
        funded = platform.client.post("/v1/transactions/batch", json={"operations": mints}, headers=shop.key)
        assert funded.status_code == 202, funded.text
        for item in funded.json()["data"]:
            assert settled(platform, shop.key, item["transaction"]["id"])["status"] == "mined"
        coffee = offer(platform, shop, costAmount=str(COST), stock=STOCK)
        sessions = {u["id"]: user_headers(platform, shop, u["id"]) for u in users}
        distinct = [(f"{u['id']}-{n}", u["id"]) for u in users for n in range(TRIES)]
        order = distinct + rng.sample(distinct, len(distinct) // 4)  # the same keys submitted again
        rng.shuffle(order)
        log: list[str] = []
        chaos = threading.Thread(
            target=faults, args=(stack, node, broker, random.Random(seed + 1), log, lambda: None)
        )
        chaos.start()
        answers: dict[str, str] = {}
        refusals: set[str] = set()
        try:
            for key, user_id in order:
                answer = platform.client.post(
                    "/v1/redemptions/redeems",
                    json={"redemptionId": coffee["id"]},
                    headers={**sessions[user_id], "Idempotency-Key": key},
                )
                if answer.status_code == 202:
                    assert answers.setdefault(key, answer.json()["id"]) == answer.json()["id"]
                else:  # beyond the user's balance or the stock: refused with a code, nothing taken
                    assert answer.status_code == 409, (seed, log, answer.text)
                    refusals.add(answer.json()["error"]["code"])
                time.sleep(rng.uniform(0, 0.15))  # spread over the faults
        finally:
            chaos.join()
        assert not [line for line in log if "broke" in line], log
        assert refusals <= {"insufficient_balance", "out_of_stock"}, refusals
        assert len(answers) == STOCK  # the users could pay for more; none fails (below)

        engine = create_engine(database_url)
        try:
            with engine.connect() as connection:

                def redeems() -> list[Any]:
                    rows = connection.execute(
                        select(Redeem.id, Redeem.user_id, Redeem.status, Redeem.error_code)
                    ).all()
                    connection.commit()
                    return rows

                final = wait_for(
                    redeems,
                    lambda rows: all(r.status in ("COMPLETED", "FAILED") for r in rows),
                    f"redeems settling (seed {seed}, {log})",
                    300,
                )
                assert {str(r.id) for r in final} == set(answers.values())  # one redeem per key
                # The faults fail nothing: each accepted redeem is within its user's balance and the stock.
                assert [(r.status, r.error_code) for r in final] == [("COMPLETED", None)] * STOCK, (seed, log)
                completed = {u["id"]: 0 for u in users}
                for r in final:
                    completed[str(r.user_id)] += r.status == "COMPLETED"
                # Exactly once, both legs or neither: each user spent the cost of each completed
                # redeem and holds its reward, once.
                reward = reward_chain_id(platform, shop)
                for u in users:
                    wallet = u["walletAddress"]
                    held = shop.rewards.functions.balanceOf(wallet, reward).call()
                    left = shop.credit.functions.balanceOf(wallet).call()
                    assert (held, left) == (completed[u["id"]], CREDITS - COST * completed[u["id"]]), (
                        seed,
                        log,
                    )
                legs = connection.execute(
                    select(Operation.status, func.count())
                    .where(Operation.exchange_id.is_not(None))
                    .group_by(Operation.status)
                ).all()
                assert dict(legs) == {"mined": 2 * STOCK}, legs  # both legs of every redeem
                lanes_without_gaps(connection, platform)
        finally:
            engine.dispose()
        stock = platform.client.get(
            f"/v1/redemptions/{coffee['id']}", headers=shop.tenant.admin_headers
        ).json()
        assert stock["stockRemaining"] == 0
        assert sum(w.poll() is None for w in stack.workers) == 2, "a worker died by itself"
        assert sum("killed" in line for line in log) >= 5
