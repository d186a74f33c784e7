"""The rollups are exact: over a varied history (claims, operations and redeems of every status, two
campaigns, a partner, ninety days, a reorg that takes a mined operation off the chain and one that
mines it again), every figure the API reads from them equals the aggregate of the raw rows computed
here, for every caller, subject and interval; and the migration's backfill rebuilds the same rollups."""

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from backend.analytics import rollups
from backend.analytics.service import first_day
from backend.campaigns.models import Campaign, Claim, ClaimOperation, Trigger
from backend.kit.db import make_engine
from backend.redemptions.models import Redeem, Redemption
from backend.relay.models import Operation
from backend.runtime import current
from tests.e2e.test_campaigns import campaign_of, member, ok, settled_claim
from tests.e2e.test_redemptions import offer
from tests.e2e.test_relay import Shop, open_shop
from tests.platform import Platform

SPAN = 90  # days of history


@contextmanager
def database(platform: Platform) -> Iterator[Session]:
    """A unit of work on the platform's database (the production processes' or the embedded one)."""
    engine = None if platform.env is None else make_engine(platform.env["PERS_DATABASE_URL"])
    sessions = current().sessions if engine is None else sessionmaker(engine, expire_on_commit=False)
    try:
        with sessions() as session, session.begin():
            yield session
    finally:
        if engine is not None:
            engine.dispose()


def copy(row: Any, **changes: Any) -> Any:
    fields = {c.key: getattr(row, c.key) for c in type(row).__table__.columns}
    return type(row)(**{**fields, "id": uuid.uuid4(), **changes})


def history(
    session: Session,
    now: datetime,
    shop: Shop,
    seed: dict[str, Any],
    partner: str,
    users: list[dict[str, Any]],
) -> None:
    """Claims, operations and redeems of every status spread over the span, settled through the
    rollups' hooks in batches as the worker settles them (nothing is left for the real pump: no
    operation is queued, no mined one has a block for the confirmations)."""
    claim = session.get(Claim, uuid.UUID(seed["id"]))
    op = session.get(Operation, uuid.UUID(seed["operationIds"][0]))
    assert claim is not None and op is not None
    owned = select(Campaign.id).where(Campaign.tenant_id == claim.tenant_id)
    triggers = dict(
        session.execute(select(Trigger.campaign_id, Trigger.id).where(Trigger.campaign_id.in_(owned))).all()
    )
    campaigns = sorted(triggers)
    redemption = session.scalar(select(Redemption.id).where(Redemption.tenant_id == claim.tenant_id))
    ops, claims, redeems = [], [], []
    for i in range(150):
        created = now - timedelta(days=(i * 7) % SPAN, minutes=i * 37 % 1440)
        status = ("mined", "confirmed", "failed", "submitted")[i % 4]
        ops.append(
            copy(
                op,
                type=("mint", "burn", "transfer")[i % 3],
                status=status,
                amount=i + 1,
                ref="0x" + uuid.uuid4().hex * 2,
                gas_used=None if status == "submitted" else 21_000 + i,
                block_number=None,
                tx_hash=None,
                relayer_tx_id=None,
                business_id=None if i % 5 == 0 else op.business_id,
                token_type_id=uuid.UUID(shop.reward_id if i % 6 == 0 else shop.credit_id),
                created_at=created,
            )
        )
        campaign = campaigns[i % len(campaigns)]
        claims.append(
            copy(
                claim,
                campaign_id=campaign,
                trigger_id=triggers[campaign],
                status=("completed", "failed", "pending")[i % 3] if status != "submitted" else "pending",
                business_id=uuid.UUID(partner) if i % 4 == 1 else claim.business_id,
                user_id=uuid.UUID(users[i % len(users)]["id"]),
                created_at=created - timedelta(hours=i % 30),
            )
        )
        if i % 5 == 0:
            redeems.append(
                Redeem(
                    id=uuid.uuid4(),
                    tenant_id=claim.tenant_id,
                    environment=claim.environment,
                    redemption_id=redemption,
                    user_id=claim.user_id,
                    status={"failed": "FAILED", "submitted": "PROCESSING"}.get(status, "COMPLETED"),
                    burn_operation_id=ops[-1].id,
                    created_at=created,
                )
            )
    for rows in (ops, claims, redeems):
        session.add_all(rows)
        session.flush()
    session.add_all(
        ClaimOperation(operation_id=o.id, claim_id=c.id) for o, c in zip(ops, claims, strict=True)
    )
    settled_ops = [o.id for o in ops if o.status != "submitted"]
    for start in range(0, len(settled_ops), 11):
        rollups.operations_changed(session, settled_ops[start : start + 11], "transaction.mined")
    settled_claims = [c.id for c in claims if c.status != "pending"]
    for start in range(0, len(settled_claims), 13):
        rollups.claims_settled(session, settled_claims[start : start + 13])
    rollups.redeems_settled(session, [r.id for r in redeems if r.status != "PROCESSING"])
    gone, back = ops[0], ops[4]  # two mined ones leave the chain; the second is mined again, dearer
    for reorged in (gone, back):
        rollups.operations_unsettled(session, [reorged.id])
        reorged.status = "submitted"
    back.status, back.gas_used = "mined", 99_999
    rollups.operations_changed(session, [back.id], "transaction.mined")


def expected(
    session: Session, scope: dict[str, Any], days: tuple[date, date], interval: str
) -> dict[str, Any]:
    """The figures aggregated from the raw rows: settled facts of the range, as the API defines them."""
    tenant, business, subject = scope["tenant"], scope["business"], scope["subject"]
    campaigns = dict(session.execute(select(Campaign.id, Campaign.business_id)).all())
    campaign_of_op = dict(
        session.execute(select(ClaimOperation.operation_id, Claim.campaign_id).join(Claim)).all()
    )
    offers = {r.id: r for r in session.scalars(select(Redemption))}

    def seen(row: Any) -> bool:
        day = row.created_at.astimezone(UTC).date()
        return row.tenant_id == tenant and days[0] <= day <= days[1]

    def of_claim(c: Claim) -> bool:
        return (
            (business is None or business in (c.business_id, campaigns[c.campaign_id]))
            and subject.get("campaign") in (None, c.campaign_id)
            and (subject.get("token") is None or subject["token"] == scope["credit"])  # both pay credits
        )

    def of_op(o: Operation) -> bool:
        return (
            (business is None or o.business_id == business)
            and subject.get("campaign") in (None, campaign_of_op.get(o.id))
            and subject.get("token") in (None, o.token_type_id)
        )

    def of_redeem(r: Redeem) -> bool:
        offered = offers[r.redemption_id]
        return (business is None or offered.business_id == business) and subject.get("token") in (
            None,
            offered.cost_token_id,
            offered.reward_token_id,
        )

    claims = [c for c in session.scalars(select(Claim)) if seen(c) and c.status != "pending" and of_claim(c)]
    ops = [
        o for o in session.scalars(select(Operation)) if seen(o) and o.status in rollups.SETTLED_OPERATIONS
    ]
    ops = [o for o in ops if of_op(o)]
    redeems = [r for r in session.scalars(select(Redeem)) if seen(r) and r.status in rollups.SETTLED_REDEEMS]
    redeems = [r for r in redeems if of_redeem(r)]

    def figures(keep: Callable[[Any], bool]) -> dict[str, Any]:
        mine = [c for c in claims if keep(c)]
        moved = [o for o in ops if keep(o) and o.status in rollups.MOVED]
        return {
            "claims": len(mine),
            "completed": sum(c.status == "completed" for c in mine),
            "uniqueUsers": len({c.user_id for c in mine}),
            "tokens": {k: str(sum(o.amount for o in moved if o.type == t)) for k, t in TYPES},
            "gasUsed": str(sum(o.gas_used or 0 for o in ops if keep(o))),
            "redeems": sum(keep(r) for r in redeems),
        }

    def bucket(row: Any) -> str:
        return first_day(row.created_at.astimezone(UTC).date(), interval).isoformat()  # type: ignore[arg-type]

    starts = sorted({bucket(row) for row in [*claims, *ops, *redeems]})
    return {
        "totals": figures(lambda _: True),
        "series": {s: figures(lambda row, s=s: bucket(row) == s) for s in starts},  # type: ignore[misc]
    }


TYPES = (("issued", "mint"), ("burned", "burn"), ("transferred", "transfer"))
KEYS = ("claims", "completed", "uniqueUsers", "tokens", "gasUsed", "redeems")


def answered(
    platform: Platform, path: str, headers: dict[str, str], params: dict[str, str]
) -> dict[str, Any]:
    got = ok(platform.client.get(path, params=params, headers=headers))
    return {
        "totals": {k: got["totals"][k] for k in KEYS},
        "series": {
            b["start"]: {k: b[k] for k in KEYS}
            for b in got["series"]
            if b["claims"] or b["gasUsed"] != "0" or b["redeems"]
        },
    }


def test_rollups_equal_the_raw_aggregates_over_a_varied_history(platform: Platform) -> None:
    shop = open_shop(platform, "Rollups")
    client, admin = platform.client, shop.tenant.admin_headers
    first = campaign_of(platform, shop)
    campaign_of(platform, shop)  # a second one: history spreads claims over both
    partner = ok(client.post("/v1/businesses", json={"name": "Cafe"}, headers=admin), 201)
    key = ok(client.post(f"/v1/businesses/{partner['id']}/api-keys", json={"name": "t"}, headers=admin), 201)
    offer(platform, shop)
    users = [member(platform, shop) for _ in range(7)]
    body = {"campaignId": first["id"], "userId": users[0]["id"]}
    claimed = ok(client.post("/v1/campaigns/claims", json=body, headers=shop.key), 202)
    seed = settled_claim(platform, shop, claimed["id"])
    now = datetime.now(UTC)
    with database(platform) as session:
        history(session, now, shop, seed, partner["id"], users)

    since = now - timedelta(days=SPAN)
    days, window = (since.date(), now.date()), {"from": since.isoformat(), "to": now.isoformat()}
    tenant, credit = uuid.UUID(shop.tenant.id), uuid.UUID(shop.credit_id)
    callers = {
        "staff": (admin, None),
        "owner": (shop.key, uuid.UUID(shop.business_id)),
        "partner": ({"X-API-Key": key["key"]}, uuid.UUID(partner["id"])),
    }
    subjects = {
        "/v1/analytics/overview": {},
        f"/v1/analytics/campaigns/{first['id']}": {"campaign": uuid.UUID(first["id"])},
        f"/v1/analytics/tokens/{shop.credit_id}": {"token": credit},
    }
    answers = {}
    with database(platform) as session:
        for name, (headers, business) in callers.items():
            for path, subject in subjects.items():
                for interval in ("day", "week", "month"):
                    scope = {"tenant": tenant, "business": business, "subject": subject, "credit": credit}
                    want = expected(session, scope, days, interval)
                    got = answered(platform, path, headers, {**window, "interval": interval})
                    assert got == want, (name, path, interval)
                    answers[(name, path, interval)] = got
    assert answers[("staff", "/v1/analytics/overview", "day")]["totals"]["claims"] > 50

    with database(platform) as session:  # the migration's backfill builds the same rollups
        for rollup in rollups.TABLES:
            session.execute(delete(rollup))
        rollups.backfill(session.connection())
    for (name, path, interval), got in answers.items():
        assert answered(platform, path, callers[name][0], {**window, "interval": interval}) == got
