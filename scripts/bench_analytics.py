"""Analytics latency on 1,000,000 claims: a throwaway Postgres database behind the production processes,
one real claim paid on chain, then N claims (with an operation each) and N/20 users copied from it by
INSERT … SELECT generate_series, spread over 90 days. Each endpoint is then called CALLS times over
HTTP; prints JSON with p50/p95 per endpoint (wall ms: read them next to the load average printed).

    PYTHONPATH=. .venv/bin/python scripts/bench_analytics.py [N] [CALLS]
"""

import json
import os
import statistics
import sys
import time
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

from sqlalchemy import Table, create_engine, text

from backend.campaigns.models import Claim
from backend.relay.models import Operation
from backend.users.models import User
from tests.conftest import production_stack, running_anvil, service_url, throwaway_postgres
from tests.e2e.test_campaigns import campaign_of, member, ok, settled_claim
from tests.e2e.test_relay import open_shop

SPREAD = "now() - ((g % 90) * interval '1 day') - ((g % 1440) * interval '1 minute')"


def copies(table: Table, seed: str, overrides: dict[str, str], n: int, extra_from: str = "") -> str:
    """INSERT … SELECT of n copies of the seed row, some columns replaced by SQL expressions of g."""
    names = [c.name for c in table.columns]
    values = ", ".join(overrides.get(name, f"s.{name}") for name in names)
    return (
        f"INSERT INTO {table.name} ({', '.join(names)}) SELECT {values} "
        f"FROM {table.name} s CROSS JOIN generate_series(1, {n}) g {extra_from} WHERE s.id = '{seed}'"
    )


def fill(url: str, claim: dict[str, Any], user_id: str, n: int) -> float:
    started = time.perf_counter()
    users = max(n // 20, 1)
    statements = [
        copies(
            User.__table__,  # type: ignore[arg-type]
            user_id,
            {
                "id": "md5('u' || g)::uuid",
                "wallet_address": "'0x' || lpad(to_hex(g), 40, '0')",
                "external_id": "'bench-' || g",
                "email": "NULL",
            },
            users,
        ),
        copies(
            Operation.__table__,  # type: ignore[arg-type]
            claim["operationIds"][0],
            {
                "id": "md5('o' || g)::uuid",
                "ref": "'0x' || md5('o' || g) || md5('r' || g)",
                "created_at": SPREAD,
                "gas_used": "30000 + g % 5000",
            },
            n,
        ),
        copies(
            Claim.__table__,  # type: ignore[arg-type]
            claim["id"],
            {
                "id": "md5('c' || g)::uuid",
                "user_id": f"md5('u' || (1 + g % {users}))::uuid",
                "status": "CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'completed' END",
                "operation_ids": "'[]'",
                "created_at": SPREAD,
            },
            n,
        ),
        f"INSERT INTO claim_operations SELECT md5('o' || g)::uuid, md5('c' || g)::uuid "
        f"FROM generate_series(1, {n}) g",
    ]
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE"))
    engine.dispose()
    return time.perf_counter() - started


def main(n: int, calls: int) -> None:
    broker = service_url("PERS_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//", 5672, "RabbitMQ")
    redis = service_url("PERS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0", 6379, "Redis")
    with (
        throwaway_postgres() as database,
        running_anvil() as node,
        production_stack(Path(mkdtemp()), database, broker, redis, f"http://127.0.0.1:{node.port}") as stack,
    ):
        platform = stack.platform
        shop = open_shop(platform, "Bench")
        campaign = campaign_of(platform, shop, amount="1", max_amount=str(10 * n))
        user = member(platform, shop)
        body = {"campaignId": campaign["id"], "userId": user["id"]}
        claim = settled_claim(
            platform,
            shop,
            ok(platform.client.post("/v1/campaigns/claims", json=body, headers=shop.key), 202)["id"],
        )
        filled = fill(database, claim, user["id"], n)
        endpoints = {
            "overview_30d": ("/v1/analytics/overview", {}),
            "overview_90d_week": ("/v1/analytics/overview", {"from": "-90", "interval": "week"}),
            "campaign_30d": (f"/v1/analytics/campaigns/{campaign['id']}", {}),
            "token_30d": (f"/v1/analytics/tokens/{shop.credit_id}", {}),
            "business_overview_30d": ("/v1/analytics/overview", {"as": "business"}),
        }
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 90 * 86400))
        figures: dict[str, Any] = {"claims": n + 1, "fill_seconds": round(filled, 1)}
        for name, (path, params) in endpoints.items():
            headers = shop.key if params.pop("as", None) else shop.tenant.admin_headers
            if params.get("from") == "-90":
                params["from"] = since
            timings = []
            for _ in range(calls):
                started = time.perf_counter()
                answer = ok(platform.client.get(path, params=params, headers=headers))
                timings.append((time.perf_counter() - started) * 1000)
            timings.sort()
            figures[name] = {
                "p50_ms": round(statistics.median(timings), 1),
                "p95_ms": round(timings[max(0, round(0.95 * len(timings)) - 1)], 1),
                "claims_counted": answer["totals"]["claims"],
            }
        figures["loadavg"] = os.getloadavg()
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000, int(sys.argv[2]) if len(sys.argv) > 2 else 20)
