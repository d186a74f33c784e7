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
from typing import Any

from scripts.bench_stack import campaign_bench, cpu_seconds, process_of
from tests.e2e.test_campaigns import member


def main(n: int, threads: int) -> None:
    with campaign_bench(n) as bench:
        platform, shop, campaign = bench.platform, bench.shop, bench.campaign
        api = process_of(platform.client.base_url.port or 80)
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
