"""Analytics figures, each one SQL aggregate (GROUP BY a date bucket for the series): never a loop
over rows. A caller sees the tenant's environment; a business only its share (claims at it or of its
campaigns, operations it signs, redeems of its offers)."""

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Select, and_, case, cast, func, or_, select
from sqlalchemy.orm import Session

from backend.analytics.schemas import Analytics, Bucket, BudgetUse, Figures, Interval, Share, Tokens
from backend.auth.principal import BUSINESS, Principal
from backend.campaigns.models import Campaign, Claim, ClaimOperation, TokenUnit, Trigger
from backend.kit.errors import PersError
from backend.redemptions.models import Redeem, Redemption
from backend.relay.models import Operation

Query = Select[*tuple[Any, ...]]  # an aggregate of any columns
MAX_BUCKETS = 1000
DEFAULT_DAYS = 30
SETTLED = ("mined", "confirmed")  # an operation's amount counts once it is on chain


def _invalid(message: str, code: str) -> PersError:
    return PersError(message, code=code, status=422)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    interval: Interval
    buckets: list[str]  # every bucket's first day, YYYY-MM-DD


def _first_day(day: date, interval: Interval) -> date:
    if interval == "week":
        return day - timedelta(days=day.weekday())  # Monday, as date_trunc('week') has it
    if interval == "month":
        return day.replace(day=1)
    return day


def _next_day(day: date, interval: Interval) -> date:
    if interval == "day":
        return day + timedelta(days=1)
    if interval == "week":
        return day + timedelta(days=7)
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)  # naive: taken as UTC


def window(start: datetime | None, end: datetime | None, interval: Interval) -> Window:
    """The range asked for (the last 30 days by default), refused if reversed or over 1,000 buckets."""
    try:
        end = _utc(end) if end else datetime.now(UTC)
        start = _utc(start) if start else end - timedelta(days=DEFAULT_DAYS)
        if start > end:
            raise _invalid("`from` is after `to`", "invalid_range")
        day, last, buckets = _first_day(start.date(), interval), end.date(), list[str]()
        while day <= last:
            if len(buckets) == MAX_BUCKETS:
                raise _invalid(
                    f"the range makes more than {MAX_BUCKETS} buckets: widen the interval", "too_many_buckets"
                )
            buckets.append(day.isoformat())
            day = _next_day(day, interval)
    except (OverflowError, ValueError):  # a date at the calendar's ends
        raise _invalid("the range runs past the calendar's ends", "invalid_range") from None
    return Window(start, end, interval, buckets)


@dataclass(frozen=True)
class Subject:
    """What the figures are about: the whole environment, one campaign or one token."""

    campaign_id: uuid.UUID | None = None
    token_id: uuid.UUID | None = None


def _bucket(session: Session, column: Any, interval: Interval) -> ColumnElement[str]:
    """The row's bucket as YYYY-MM-DD text (UTC), on Postgres and on SQLite alike."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.date_trunc(interval, func.timezone("UTC", column)), "YYYY-MM-DD")
    if interval == "week":
        return func.date(column, "weekday 0", "-6 days")
    if interval == "month":
        return func.strftime("%Y-%m-01", column)
    return func.date(column)


def _amount(session: Session) -> Any:
    # Uint256 is NUMERIC on Postgres but decimal text on SQLite, where SUM would give a float.
    if session.get_bind().dialect.name == "postgresql":
        return Operation.amount
    return cast(Operation.amount, BigInteger)


def _grouped(session: Session, query: Query, column: Any, win: Window) -> Query:
    bucket = _bucket(session, column, win.interval).label("bucket")
    return query.add_columns(bucket).group_by(bucket)


def _claims(caller: Principal, subject: Subject, win: Window) -> Query:
    scope = caller.tenant
    query: Query = (
        select(
            func.count().label("claims"),
            func.count(case((Claim.status == "completed", 1))).label("completed"),
            func.count(case((Claim.status == "failed", 1))).label("failed"),
            func.count(func.distinct(Claim.user_id)).label("unique_users"),
        )
        .select_from(Claim)
        .where(
            Claim.tenant_id == scope.tenant_id,
            Claim.environment == scope.environment,
            Claim.created_at >= win.start,
            Claim.created_at < win.end,
        )
    )
    if caller.kind == BUSINESS:
        own = select(Campaign.id).where(
            Campaign.tenant_id == scope.tenant_id, Campaign.business_id == caller.subject_id
        )
        query = query.where(or_(Claim.business_id == caller.subject_id, Claim.campaign_id.in_(own)))
    if subject.campaign_id is not None:
        query = query.where(Claim.campaign_id == subject.campaign_id)
    if subject.token_id is not None:
        paying = select(TokenUnit.campaign_id).where(TokenUnit.token_type_id == subject.token_id)
        query = query.where(Claim.campaign_id.in_(paying))
    return query


def _operations(session: Session, caller: Principal, subject: Subject, win: Window) -> Query:
    scope, amount = caller.tenant, _amount(session)
    settled = Operation.status.in_(SETTLED)

    def moved(kind: str) -> Any:
        return func.coalesce(func.sum(case((and_(settled, Operation.type == kind), amount), else_=0)), 0)

    query = (
        select(
            moved("mint").label("issued"),
            moved("burn").label("burned"),
            moved("transfer").label("transferred"),
            func.coalesce(func.sum(Operation.gas_used), 0).label("gas_used"),
        )
        .select_from(Operation)
        .where(
            Operation.tenant_id == scope.tenant_id,
            Operation.environment == scope.environment,
            Operation.created_at >= win.start,
            Operation.created_at < win.end,
        )
    )
    if caller.kind == BUSINESS:
        query = query.where(Operation.business_id == caller.subject_id)
    if subject.campaign_id is not None:
        paid = (
            select(ClaimOperation.operation_id)
            .join(Claim, Claim.id == ClaimOperation.claim_id)
            .where(Claim.tenant_id == scope.tenant_id, Claim.campaign_id == subject.campaign_id)
        )
        query = query.where(Operation.id.in_(paid))
    if subject.token_id is not None:
        query = query.where(Operation.token_type_id == subject.token_id)
    return query


def _redeems(caller: Principal, subject: Subject, win: Window) -> Query:
    scope = caller.tenant
    query: Query = (
        select(func.count().label("redeems"))
        .select_from(Redeem)
        .join(Redemption, Redemption.id == Redeem.redemption_id)
        .where(
            Redeem.tenant_id == scope.tenant_id,
            Redeem.environment == scope.environment,
            Redeem.created_at >= win.start,
            Redeem.created_at < win.end,
        )
    )
    if caller.kind == BUSINESS:
        query = query.where(Redemption.business_id == caller.subject_id)
    if subject.token_id is not None:
        query = query.where(
            or_(Redemption.cost_token_id == subject.token_id, Redemption.reward_token_id == subject.token_id)
        )
    return query


def _figures(claims: Any, operations: Any, redeems: int) -> dict[str, Any]:
    counted = claims.claims if claims else 0
    return {
        "claims": counted,
        "completed": claims.completed if claims else 0,
        "failed": claims.failed if claims else 0,
        "unique_users": claims.unique_users if claims else 0,
        "tokens": Tokens(
            issued=int(operations.issued) if operations else 0,
            burned=int(operations.burned) if operations else 0,
            transferred=int(operations.transferred) if operations else 0,
        ),
        "redeems": redeems,
        "redemption_rate": redeems / counted if counted else None,
        "gas_used": int(operations.gas_used) if operations else 0,
    }


def _shares(session: Session, claims: Query, key: Any, join: Any = None) -> list[Share]:
    query: Query = claims.with_only_columns(
        key.label("key"), func.count().label("claims"), func.count(case((Claim.status == "completed", 1)))
    )
    if join is not None:
        query = query.join(*join)
    rows = session.execute(query.group_by(key).order_by(func.count().desc())).all()
    return [Share(key=None if k is None else str(k), claims=n, completed=done) for k, n, done in rows]


def analytics(session: Session, caller: Principal, subject: Subject, win: Window) -> Analytics:
    claims, operations = _claims(caller, subject, win), _operations(session, caller, subject, win)
    redeems = _redeems(caller, subject, win)
    total = _figures(
        session.execute(claims).one(),
        session.execute(operations).one(),
        session.execute(redeems).scalar_one(),
    )
    by_bucket: dict[str, dict[str, Any]] = {}
    for name, query, column in (
        ("claims", claims, Claim.created_at),
        ("operations", operations, Operation.created_at),
        ("redeems", redeems, Redeem.created_at),
    ):
        for row in session.execute(_grouped(session, query, column, win)).all():  # a row per bucket
            by_bucket.setdefault(row.bucket, {})[name] = row
    series = [
        Bucket(
            start=start,
            **_figures(
                found.get("claims"),
                found.get("operations"),
                found["redeems"].redeems if "redeems" in found else 0,
            ),
        )
        for start in win.buckets
        for found in [by_bucket.get(start, {})]
    ]
    return Analytics.model_validate(
        {
            "from_": win.start,
            "to": win.end,
            "interval": win.interval,
            "totals": Figures(**total),
            "series": series,
            "by_business": _shares(session, claims, Claim.business_id),
            "by_trigger_type": _shares(
                session, claims, Trigger.type, (Trigger, Trigger.id == Claim.trigger_id)
            ),
            "by_trigger_source": _shares(session, claims, Claim.trigger_source_id),
            "budget": _budget(session, subject),
        }
    )


def _budget(session: Session, subject: Subject) -> list[BudgetUse]:
    """A campaign's use of each token unit's budget (the campaign's, not a partner's share)."""
    if subject.campaign_id is None:
        return []
    units = session.execute(
        select(TokenUnit.token_type_id, TokenUnit.issued, TokenUnit.max_amount)
        .where(TokenUnit.campaign_id == subject.campaign_id)
        .order_by(TokenUnit.created_at)
    ).all()
    return [
        BudgetUse(token_id=token, issued=issued, max_amount=most, used=issued / most if most else 0.0)
        for token, issued, most in units
    ]
