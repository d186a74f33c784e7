"""API CPU per claim against per plain mint, measured in the same run on the production processes
(a throwaway Postgres database, RabbitMQ, Redis, a fresh anvil): N users, N mints then N claims (one
token unit of 1 credit each), THREADS requests in flight. Prints JSON; CPU is the `pers api`
process's, from /proc (wall time depends on the machine's load, printed alongside).

    PYTHONPATH=. .venv/bin/python scripts/bench_claims.py [N] [THREADS]
"""

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

from tests.conftest import production_stack, running_anvil, service_url, throwaway_postgres
from tests.e2e.test_campaigns import campaign_of, member
from tests.e2e.test_relay import open_shop


def process_of(port: int) -> int:
    """The `pers api` process listening on `port`."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"api" in args and str(port).encode() in args:
            return int(pid)
    raise SystemExit("pers api not found")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def main(n: int, threads: int) -> None:
    broker = service_url("PERS_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//", 5672, "RabbitMQ")
    redis = service_url("PERS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0", 6379, "Redis")
    with (
        throwaway_postgres() as database,
        running_anvil() as node,
        production_stack(Path(mkdtemp()), database, broker, redis, f"http://127.0.0.1:{node.port}") as stack,
    ):
        platform = stack.platform
        api = process_of(platform.client.base_url.port or 80)
        shop = open_shop(platform, "Bench")
        campaign = campaign_of(platform, shop, amount="1", max_amount=str(10 * n))
        users = [member(platform, shop) for _ in range(n)]

        def run(path: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
            started_cpu, started = cpu_seconds(api), time.perf_counter()
            with ThreadPoolExecutor(threads) as pool:
                answers = list(
                    pool.map(lambda b: platform.client.post(path, json=b, headers=shop.key), bodies)
                )
            used, wall = cpu_seconds(api) - started_cpu, time.perf_counter() - started
            return {
                "statuses": sorted({a.status_code for a in answers}),
                "api_cpu_ms_per_op": round(used * 1000 / len(bodies), 2),
                "wall_s": round(wall, 2),
                "load_average": os.getloadavg(),
            }

        mint = {"type": "mint", "tokenId": shop.credit_id, "amount": "1"}
        mints = run("/v1/transactions", [{**mint, "userId": u["id"]} for u in users])
        claims = run(
            "/v1/campaigns/claims", [{"campaignId": campaign["id"], "userId": u["id"]} for u in users]
        )
        print(json.dumps({"n": n, "threads": threads, "mint": mints, "claim": claims}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300, int(sys.argv[2]) if len(sys.argv) > 2 else 8)
