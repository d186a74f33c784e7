"""Analytics figures read from the daily rollups (models.py, kept by rollups.py as the facts settle):
each figure one SQL aggregate over at most a row per day and key, grouped by bucket (unique users
too: see `UserReturn`). A range covers whole UTC days, from `from`'s day to `to`'s.
A caller sees the tenant's environment; a business only its share (claims at it or of its campaigns,
operations it signs, redeems of its offers)."""

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Date, DateTime, case, cast, func, or_, select
from sqlalchemy.orm import Session

from backend.analytics.models import NONE, ClaimDay, OperationDay, RedeemDay, UserReturn
from backend.analytics.schemas import Analytics, Bucket, BudgetUse, Figures, Interval, Share, Tokens
from backend.auth.principal import BUSINESS, Principal
from backend.campaigns.models import Campaign, TokenUnit
from backend.kit.errors import PersError
from backend.redemptions.models import Redemption

MAX_BUCKETS = 1000
DEFAULT_DAYS = 30
COUNTS = ("completed", "failed", "issued", "burned", "transferred", "gas_used", "redeems")  # they add up


def _invalid(message: str, code: str) -> PersError:
    return PersError(message, code=code, status=422)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    interval: Interval
    buckets: list[str]  # every bucket's first day, YYYY-MM-DD


def first_day(day: date, interval: Interval) -> date:
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
        day, last, buckets = first_day(start.date(), interval), end.date(), list[str]()
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


Where = list[ColumnElement[bool]]


def _days(model: Any, caller: Principal, win: Window) -> Where:
    scope = caller.tenant
    return [
        model.tenant_id == scope.tenant_id,
        model.environment == scope.environment,
        model.day >= win.start.date(),
        model.day <= win.end.date(),
    ]


def _claims(caller: Principal, subject: Subject, win: Window) -> Where:
    """The claims' rows the caller sees about the subject."""
    where = _days(ClaimDay, caller, win)
    if caller.kind == BUSINESS:
        own = select(Campaign.id).where(
            Campaign.tenant_id == caller.tenant.tenant_id, Campaign.business_id == caller.subject_id
        )
        where.append(or_(ClaimDay.business_id == caller.subject_id, ClaimDay.campaign_id.in_(own)))
    if subject.campaign_id is not None:
        where.append(ClaimDay.campaign_id == subject.campaign_id)
    if subject.token_id is not None:
        paying = select(TokenUnit.campaign_id).where(TokenUnit.token_type_id == subject.token_id)
        where.append(ClaimDay.campaign_id.in_(paying))
    return where


def _users(caller: Principal, subject: Subject, win: Window) -> Where:
    """The caller's view of the subject's users (see `UserDay`)."""
    audience = caller.subject_id if caller.kind == BUSINESS else NONE
    return [
        *_days(UserReturn, caller, win),
        UserReturn.audience == audience,
        UserReturn.subject == (subject.campaign_id or subject.token_id or NONE),
    ]


def _operations(caller: Principal, subject: Subject, win: Window) -> Where:
    where = _days(OperationDay, caller, win)
    if caller.kind == BUSINESS:
        where.append(OperationDay.business_id == caller.subject_id)
    if subject.campaign_id is not None:
        where.append(OperationDay.campaign_id == subject.campaign_id)
    if subject.token_id is not None:
        where.append(OperationDay.token_type_id == subject.token_id)
    return where


def _redeems(caller: Principal, subject: Subject, win: Window) -> Where:
    where = _days(RedeemDay, caller, win)
    if caller.kind == BUSINESS:
        where.append(Redemption.business_id == caller.subject_id)
    if subject.token_id is not None:
        where.append(
            or_(Redemption.cost_token_id == subject.token_id, Redemption.reward_token_id == subject.token_id)
        )
    return where


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _bucket_start(session: Session, day: Any, interval: Interval) -> ColumnElement[Any]:
    """The first day of the day's bucket (a date on Postgres, YYYY-MM-DD text on SQLite)."""
    if _postgres(session):
        return cast(func.date_trunc(interval, cast(day, DateTime)), Date)
    if interval == "week":
        return func.date(day, "weekday 0", "-6 days")
    if interval == "month":
        return func.date(day, "start of month")
    return func.date(day)


def _unique_users(session: Session, win: Window) -> ColumnElement[Any]:
    """A bucket's users: those of its days whose previous active day is before the bucket (or before
    the range, for a first bucket that starts before it); see `UserReturn`."""
    start, first = _bucket_start(session, UserReturn.day, win.interval), win.start.date()
    since = case((start > first, start), else_=first)
    return func.coalesce(func.sum(case((UserReturn.previous < since, UserReturn.users), else_=0)), 0)


def _sum(session: Session, column: Any) -> ColumnElement[Any]:
    # Uint256 is NUMERIC on Postgres but decimal text on SQLite, where SUM would give a float.
    if not _postgres(session):
        column = cast(column, BigInteger)
    return func.coalesce(func.sum(column), 0)


def _by_bucket(
    session: Session, win: Window, model: Any, where: Where, **figures: ColumnElement[Any]
) -> dict[str, dict[str, int]]:
    """The figures per bucket of the window (a bucket without rows is absent)."""
    bucket = _bucket_start(session, model.day, win.interval)
    if _postgres(session):
        bucket = func.to_char(bucket, "YYYY-MM-DD")
    query = select(bucket.label("bucket"), *(v.label(k) for k, v in figures.items())).select_from(model)
    if model is RedeemDay:  # a redeem's business and tokens are its offer's
        query = query.join(Redemption, Redemption.id == RedeemDay.redemption_id)
    rows = session.execute(query.where(*where).group_by(bucket))
    return {row.bucket: {k: int(row._mapping[k]) for k in figures} for row in rows}


def _figures(n: dict[str, int]) -> dict[str, Any]:
    claims = n["completed"] + n["failed"]
    return {
        "claims": claims,
        "completed": n["completed"],
        "failed": n["failed"],
        "unique_users": n["unique_users"],
        "tokens": Tokens(issued=n["issued"], burned=n["burned"], transferred=n["transferred"]),
        "redeems": n["redeems"],
        "redemption_rate": n["redeems"] / claims if claims else None,
        "gas_used": n["gas_used"],
    }


def _shares(session: Session, where: Where, key: Any) -> list[Share]:
    claims = func.sum(ClaimDay.completed + ClaimDay.failed)
    query = select(key, claims, func.sum(ClaimDay.completed)).where(*where).group_by(key)
    rows = session.execute(query.order_by(claims.desc(), key)).all()
    return [Share(key=None if k == NONE else str(k), claims=n, completed=done) for k, n, done in rows]


def analytics(session: Session, caller: Principal, subject: Subject, win: Window) -> Analytics:
    claims, users = _claims(caller, subject, win), _users(caller, subject, win)
    found = [
        _by_bucket(
            session,
            win,
            ClaimDay,
            claims,
            completed=func.sum(ClaimDay.completed),
            failed=func.sum(ClaimDay.failed),
        ),
        _by_bucket(session, win, UserReturn, users, unique_users=_unique_users(session, win)),
        _by_bucket(
            session,
            win,
            OperationDay,
            _operations(caller, subject, win),
            issued=_sum(session, OperationDay.issued),
            burned=_sum(session, OperationDay.burned),
            transferred=_sum(session, OperationDay.transferred),
            gas_used=_sum(session, OperationDay.gas_used),
        ),
        _by_bucket(
            session, win, RedeemDay, _redeems(caller, subject, win), redeems=func.sum(RedeemDay.redeems)
        ),
    ]
    counts = {start: dict.fromkeys((*COUNTS, "unique_users"), 0) for start in win.buckets}
    for by_bucket in found:
        for start, figures in by_bucket.items():
            counts[start].update(figures)
    total = {k: sum(n[k] for n in counts.values()) for k in COUNTS}
    returning = select(func.sum(UserReturn.users)).where(*users, UserReturn.previous < win.start.date())
    total["unique_users"] = session.scalar(returning) or 0
    return Analytics.model_validate(
        {
            "from_": win.start,
            "to": win.end,
            "interval": win.interval,
            "totals": Figures(**_figures(total)),
            "series": [Bucket(start=start, **_figures(n)) for start, n in counts.items()],
            "by_business": _shares(session, claims, ClaimDay.business_id),
            "by_trigger_type": _shares(session, claims, ClaimDay.trigger_type),
            "by_trigger_source": _shares(session, claims, ClaimDay.trigger_source_id),
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
