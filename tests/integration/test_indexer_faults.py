"""A node that errors, times out, refuses large ranges and disappears for a while: the indexer backs
off, shrinks its ranges, resumes at its cursor and skips nothing (every log the node holds for the
platform's contracts is in the mirror, and the balances equal the chain's)."""

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from eth_account import Account
from sqlalchemy import select

from indexer.models import Event, TenantContract
from tests.conftest import REWARD_ID
from tests.mirror import World, indexing, world

TIMEOUT = 1.0  # the indexer's RPC timeout in this test; a "slow" answer takes longer


class FlakyNode:
    """A JSON-RPC proxy in front of anvil that answers badly at random, or not at all while `down`."""

    def __init__(self, upstream: str, seed: int) -> None:
        self.upstream, self.rng = upstream, random.Random(seed)
        self.faults: Counter[str] = Counter()
        self.down = threading.Event()
        self.lock = threading.Lock()
        node = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                fault = node.fault(json.loads(body))
                if fault == "down":
                    self.close_connection = True
                    return
                if fault == "slow":
                    time.sleep(TIMEOUT * 1.5)
                if fault == "http_503":
                    self.send_response(503)
                    self.end_headers()
                    return
                if fault == "too_many_results":
                    answer = json.dumps(
                        {
                            "jsonrpc": "2.0",
                            "id": 1,
                            "error": {"code": -32005, "message": "query returned more than 10000 results"},
                        }
                    ).encode()
                else:
                    answer = httpx.post(
                        node.upstream, content=body, headers={"content-type": "application/json"}
                    ).content
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def fault(self, request: object) -> str | None:
        if self.down.is_set():
            fault: str | None = "down"
        else:
            method = request.get("method") if isinstance(request, dict) else "batch"
            with self.lock:
                roll = self.rng.random()
            if method == "eth_getLogs":
                query = request["params"][0]  # type: ignore[index]
                wide = int(query["toBlock"], 16) > int(query["fromBlock"], 16)
                fault = (
                    "too_many_results"
                    if roll < 0.2 and wide
                    else "http_503"
                    if roll < 0.3
                    else "slow"
                    if roll < 0.35
                    else None
                )
            else:
                fault = "http_503" if roll < 0.05 else None
        if fault:
            with self.lock:
                self.faults[fault] += 1
        return fault


@contextmanager
def flaky(upstream: str, seed: int) -> Iterator[FlakyNode]:
    node = FlakyNode(upstream, seed)
    thread = threading.Thread(target=node.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield node
    finally:
        node.server.shutdown()
        node.server.server_close()


def traffic(w: World, rng: random.Random, rounds: int) -> None:
    holders = [h.address for h in w.tenant.holders]
    for _ in range(rounds):
        w.mint_rewards([(rng.choice(holders + w.outsiders), REWARD_ID, rng.randint(1, 9)) for _ in range(40)])
        w.transfer_1155(holders[0], rng.choice(w.outsiders), REWARD_ID, 1)
        w.tenant.chain.rpc("anvil_mine", hex(rng.randint(0, 20)))


def test_node_faults_back_off_and_skip_no_range(tmp_path: Path) -> None:
    rng = random.Random(3)
    with (
        world(tmp_path, indexer_rpc_timeout=TIMEOUT, indexer_max_range=8) as w,  # many ranges: many faults
        flaky(w.rpc_url, seed=5) as node,
    ):
        w.outsiders = [Account.create().address for _ in range(10)]
        w.mint_rewards([(w.tenant.holders[0].address, REWARD_ID, 1000)])
        traffic(w, rng, 10)  # a backfill,
        with indexing(w, rpc_url=node.url):
            traffic(w, rng, 5)  # blocks arriving while it runs,
            node.down.set()  # and the node gone for a while
            time.sleep(2)
            node.down.clear()
            traffic(w, rng, 5)
            w.wait_synced(timeout=180)
        w.assert_mirror_is_chain()
        with w.runtime.sessions() as session:
            contracts = [c.address for c in session.scalars(select(TenantContract))]
            mirrored = {
                (e.block_hash, e.log_index)
                for e in session.scalars(select(Event).where(Event.contract.in_(contracts)))
            }
        on_chain = w.tenant.chain.rpc(
            "eth_getLogs", {"fromBlock": "0x0", "toBlock": "latest", "address": contracts}
        )
        assert mirrored == {(entry["blockHash"], int(entry["logIndex"], 16)) for entry in on_chain}
        assert {"too_many_results", "http_503", "slow", "down"} <= set(node.faults), node.faults
