"""Analytics latency on 1,000,000 claims: a throwaway Postgres database behind the production processes,
one real claim paid on chain, then N claims (with an operation each) and N/20 users copied from it by
INSERT … SELECT generate_series, spread over 90 days, and the rollups built from them by the
migration's backfill. Each endpoint is then called CALLS times over HTTP; prints JSON with p50/p95
per endpoint (wall ms: read them next to the load average printed) and the API process's CPU per call.

    PYTHONPATH=. .venv/bin/python scripts/bench_analytics.py [N] [CALLS]
"""

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Table, create_engine, delete, text

from backend.analytics import rollups
from backend.campaigns.models import Claim
from backend.relay.models import Operation
from backend.users.models import User
from scripts.bench_stack import campaign_bench, cpu_seconds, process_of
from tests.e2e.test_campaigns import member, ok, settled_claim

SPREAD = "now() - ((g % 90) * interval '1 day') - ((g % 1440) * interval '1 minute')"


def copies(table: Table, seed: str, overrides: dict[str, str], n: int, extra_from: str = "") -> str:
    """INSERT … SELECT of n copies of the seed row, some columns replaced by SQL expressions of g."""
    names = [c.name for c in table.columns]
    values = ", ".join(overrides.get(name, f"s.{name}") for name in names)
    return (
        f"INSERT INTO {table.name} ({', '.join(names)}) SELECT {values} "
        f"FROM {table.name} s CROSS JOIN generate_series(1, {n}) g {extra_from} WHERE s.id = '{seed}'"
    )


def fill(connection: Connection, claim: dict[str, Any], user_id: str, n: int) -> None:
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
    for statement in statements:
        connection.execute(text(statement))


def rebuild(connection: Connection) -> None:
    """The rollups from scratch, as the migration builds them (the seed claim's rows included)."""
    for rollup in rollups.TABLES:
        connection.execute(delete(rollup))
    rollups.backfill(connection)


def timed(step: Callable[[], Any]) -> float:
    started = time.perf_counter()
    step()
    return round(time.perf_counter() - started, 1)


def percentiles(timings: list[float]) -> dict[str, float]:
    timings = sorted(timings)
    return {
        "p50_ms": round(statistics.median(timings), 1),
        "p95_ms": round(timings[max(0, round(0.95 * len(timings)) - 1)], 1),
    }


# The baseline: the 30 days' claim figures the way they were read before the rollups (every claim of
# the range scanned), timed on the same data in the same run.
RAW_CLAIMS = text(
    "SELECT count(*), count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = "
    "'failed'), count(DISTINCT user_id) FROM claims WHERE (tenant_id, environment) = (SELECT "
    "tenant_id, environment FROM claims WHERE id = :seed) AND created_at >= now() - interval '30 days'"
)


def main(n: int, calls: int) -> None:
    with campaign_bench(n) as bench:
        platform, shop, campaign = bench.platform, bench.shop, bench.campaign
        user = member(platform, shop)
        body = {"campaignId": campaign["id"], "userId": user["id"]}
        claim = settled_claim(
            platform,
            shop,
            ok(platform.client.post("/v1/campaigns/claims", json=body, headers=shop.key), 202)["id"],
        )
        engine = create_engine(bench.database)
        with engine.begin() as connection:
            figures: dict[str, Any] = {
                "claims": n + 1,
                "fill_seconds": timed(lambda: fill(connection, claim, user["id"], n)),
                "backfill_seconds": timed(lambda: rebuild(connection)),
            }
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE"))
            raw = []
            for _ in range(3):
                started = time.perf_counter()
                connection.execute(RAW_CLAIMS, {"seed": claim["id"]}).one()
                raw.append((time.perf_counter() - started) * 1000)
        engine.dispose()
        api = process_of(platform.client.base_url.port or 80)
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 90 * 86400))
        endpoints = {
            "overview_30d": ("/v1/analytics/overview", {}),
            "overview_90d_week": ("/v1/analytics/overview", {"from": since, "interval": "week"}),
            "campaign_30d": (f"/v1/analytics/campaigns/{campaign['id']}", {}),
            "token_30d": (f"/v1/analytics/tokens/{shop.credit_id}", {}),
            "business_overview_30d": ("/v1/analytics/overview", {}),
        }
        for name, (path, params) in endpoints.items():
            headers = shop.key if name.startswith("business") else shop.tenant.admin_headers
            timings, cpu = [], cpu_seconds(api)
            for _ in range(calls):
                started = time.perf_counter()
                answer = ok(platform.client.get(path, params=params, headers=headers))
                timings.append((time.perf_counter() - started) * 1000)
            figures[name] = {
                **percentiles(timings),
                "api_cpu_ms_per_call": round((cpu_seconds(api) - cpu) * 1000 / calls, 1),
                "claims_counted": answer["totals"]["claims"],
                "unique_users": answer["totals"]["uniqueUsers"],
            }
        figures["baseline_raw_claims_30d"] = percentiles(raw)
        figures["load_average"] = os.getloadavg()
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000, int(sys.argv[2]) if len(sys.argv) > 2 else 20)
