"""Keeps the daily rollups (models.py) as the facts settle, in the transaction that settles them: one
`INSERT … SELECT … GROUP BY … ON CONFLICT DO UPDATE SET n = n + excluded.n` per rollup and settle
batch, whatever the batch's size. Facts count once settled (a claim completed or failed, an operation
mined or failed, a redeem completed or failed): a settle runs in the worker, batched, so the API's
claim transaction takes no rollup row lock. Rows go in key order, so two settling transactions lock
the rows they share in one order (no deadlock). `backfill` is the same statements over every settled
row (the migration's, and the benchmark's after bulk inserts)."""

import functools
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Date,
    Numeric,
    Select,
    String,
    Table,
    and_,
    case,
    cast,
    func,
    literal,
    select,
    true,
    type_coerce,
    union,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from backend.analytics.models import FIRST, NONE, ClaimDay, OperationDay, RedeemDay, UserDay, UserReturn
from backend.campaigns.models import Campaign, Claim, ClaimOperation, TokenUnit, Trigger
from backend.kit.db import among
from backend.redemptions.models import Redeem
from backend.relay.models import SETTLING_EVENTS, Operation

MOVED = ("mined", "confirmed")  # an operation's amount counts once it is on chain
SETTLED_OPERATIONS = (*MOVED, "failed")
SETTLED_CLAIMS = ("completed", "failed")
SETTLED_REDEEMS = ("COMPLETED", "FAILED")
TABLES = (ClaimDay, UserDay, UserReturn, OperationDay, RedeemDay)
USER_DAYS_LOCK = 0x5E75  # the advisory lock class (two-key form: apart from the indexer's one-key locks)


def claims_settled(session: Session, claim_ids: Sequence[uuid.UUID]) -> None:
    if claim_ids:
        connection = _connection(session)
        _claims(connection, Claim.id.in_(claim_ids), 1)
        _new_user_days(connection, Claim.id.in_(claim_ids))


def claims_unsettled(session: Session, claim_ids: Sequence[uuid.UUID]) -> None:
    """Settled claims about to settle otherwise (a completed one whose operation a reorg took off the
    chain, and whose second run failed): their counts come off; their user days stay (a settled claim
    of either outcome makes the day)."""
    if claim_ids:
        _claims(_connection(session), Claim.id.in_(claim_ids), -1)


def operations_changed(session: Session, op_ids: Sequence[uuid.UUID], event_type: str) -> None:
    """The relay's hook: every status change of operations passes here (`relay.events`)."""
    if event_type in SETTLING_EVENTS and op_ids:
        _operations_among(_connection(session), op_ids, 1)


def operations_unsettled(session: Session, op_ids: Sequence[uuid.UUID]) -> None:
    """Mined operations that a reorg took off the chain: their figures come off until mined again."""
    if op_ids:
        _operations_among(_connection(session), op_ids, -1)


def redeems_settled(session: Session, redeem_ids: Sequence[uuid.UUID]) -> None:
    if redeem_ids:
        _redeems(_connection(session), Redeem.id.in_(redeem_ids))


def backfill(connection: Connection) -> None:
    """Every settled fact into empty rollups."""
    _claims(connection, Claim.status.in_(SETTLED_CLAIMS), 1)
    _all_user_days(connection, Claim.status.in_(SETTLED_CLAIMS))
    connection.execute(_operations(connection.dialect.name, Operation.status.in_(SETTLED_OPERATIONS), 1))
    _redeems(connection, Redeem.status.in_(SETTLED_REDEEMS))


def _connection(session: Session) -> Connection:
    session.flush()  # the settled rows are read back by the INSERT … SELECT
    return session.connection()


def _day(dialect: str, moment: Any) -> ColumnElement[Any]:
    """The UTC day of a timestamp (SQLite holds UTC already)."""
    if dialect == "postgresql":
        return cast(func.timezone("UTC", moment), Date)
    return func.date(moment, type_=Date)


def _add(connection: Connection, table: Table, query: Select[Any], counters: Sequence[str]) -> None:
    connection.execute(_upsert(connection.dialect.name, table, query, counters))


def _upsert(dialect: str, table: Table, query: Select[Any], counters: Sequence[str]) -> Any:
    """Adds the query's rows (the key's columns, then the counters, labelled as the table's) to the
    table; without counters the rows are only made to exist."""
    module = postgresql if dialect == "postgresql" else sqlite
    keys = [c.name for c in table.primary_key.columns]
    columns = {c.name: c for c in query.selected_columns}
    ordered = query.group_by(*(columns[k] for k in keys)).order_by(*(columns[k] for k in keys))
    insert = module.insert(table).from_select(list(columns), ordered)
    if counters:
        return insert.on_conflict_do_update(
            index_elements=keys,
            set_={n: _number(table.c[n]) + _number(insert.excluded[n]) for n in counters},
        )
    return insert.on_conflict_do_nothing(index_elements=keys)


def _number(column: Any) -> ColumnElement[Any]:
    """A counter as a number: `+` on a Uint256 (text on SQLite) would otherwise be concatenation."""
    return type_coerce(column, Numeric())


def _scope(dialect: str, fact: Any) -> list[ColumnElement[Any]]:
    return [
        fact.tenant_id.label("tenant_id"),
        fact.environment.label("environment"),
        _day(dialect, fact.created_at).label("day"),
    ]


def _count(condition: ColumnElement[bool], sign: int) -> ColumnElement[int]:
    return func.count(case((condition, 1))) * sign


def _claims(connection: Connection, where: ColumnElement[bool], sign: int) -> None:
    scope = _scope(connection.dialect.name, Claim)
    counted = (
        select(
            *scope,
            Claim.campaign_id.label("campaign_id"),
            Claim.business_id.label("business_id"),
            Trigger.type.label("trigger_type"),
            func.coalesce(Claim.trigger_source_id, literal(NONE)).label("trigger_source_id"),
            _count(Claim.status == "completed", sign).label("completed"),
            _count(Claim.status == "failed", sign).label("failed"),
        )
        .select_from(Claim)
        .join(Trigger, Trigger.id == Claim.trigger_id)
        .where(where)
    )
    _add(connection, ClaimDay.__table__, counted, ("completed", "failed"))  # type: ignore[arg-type]


def _views(connection: Connection, where: ColumnElement[bool]) -> Select[Any]:
    """The claims' (view, user, day) rows, once each: every audience that sees a claim (everyone,
    the business it was made at, the campaign's owner) by every subject it is about (the
    environment, its campaign, each token the campaign pays)."""
    day = _day(connection.dialect.name, Claim.created_at).label("day")
    selects = []
    for audience in (literal(NONE), Claim.business_id, Campaign.business_id):
        for subject in (literal(NONE), Claim.campaign_id, TokenUnit.token_type_id):
            query = (
                select(
                    Claim.tenant_id.label("tenant_id"),
                    Claim.environment.label("environment"),
                    audience.label("audience"),
                    subject.label("subject"),
                    Claim.user_id.label("user_id"),
                    day,
                )
                .select_from(Claim)
                .join(Campaign, Campaign.id == Claim.campaign_id)
            )
            if subject is TokenUnit.token_type_id:
                query = query.join(TokenUnit, TokenUnit.campaign_id == Claim.campaign_id)
            selects.append(query.where(where))
    views = union(*selects).subquery()
    return select(*views.c).where(true())  # SQLite reads `… FROM (…) ON CONFLICT` as a join without it


VIEW = ("tenant_id", "environment", "audience", "subject", "user_id")


def _all_user_days(connection: Connection, where: ColumnElement[bool]) -> None:
    """The user days of every settled claim into empty tables, each day's previous one by LAG."""
    _add(connection, UserDay.__table__, _views(connection, where), ())  # type: ignore[arg-type]
    key = [UserDay.__table__.c[name] for name in VIEW]
    previous = func.lag(UserDay.day).over(partition_by=key, order_by=UserDay.day)
    days = select(
        *key, UserDay.day, func.coalesce(previous, literal(FIRST, Date)).label("previous")
    ).subquery()
    counted = select(*(days.c[name] for name in (*VIEW[:-1], "day", "previous")), func.count().label("users"))
    _add(connection, UserReturn.__table__, counted, ("users",))  # type: ignore[arg-type]


def _new_user_days(connection: Connection, where: ColumnElement[bool]) -> None:
    """The claims' user days that are new, and the `UserReturn` counts they change: a new day's own
    (its previous day: the nearest earlier one, old or new), and the next old day's, whose previous
    day becomes the nearest new one. Settles of one tenant take its lock here: two transactions
    adding days of one user would each miss the other's."""
    if connection.dialect.name == "postgresql":
        tenants = select(Claim.tenant_id).where(where).distinct().order_by(Claim.tenant_id).subquery()
        connection.execute(
            select(
                func.pg_advisory_xact_lock(USER_DAYS_LOCK, func.hashtext(cast(tenants.c.tenant_id, String)))
            )
        )
    candidates = _views(connection, where)
    views = candidates.subquery()
    same = [UserDay.__table__.c[name] == views.c[name] for name in VIEW]

    def nearest(pick: Any, side: ColumnElement[bool]) -> Any:
        return select(pick(UserDay.day)).where(*same, side).scalar_subquery()

    neighbours = {
        (*row[:5], row.day): (row.before, row.after)
        for row in connection.execute(
            select(
                *views.c,
                nearest(func.max, UserDay.day < views.c.day).label("before"),
                nearest(func.min, UserDay.day > views.c.day).label("after"),
            )
        )
    }
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    inserted = dialect.insert(UserDay).from_select([*views.c.keys()], candidates)
    added = connection.execute(
        inserted.on_conflict_do_nothing().returning(*(UserDay.__table__.c[n] for n in (*VIEW, "day")))
    ).all()
    new: dict[tuple[Any, ...], list[date]] = {}
    for row in added:
        new.setdefault(tuple(row[:5]), []).append(row.day)
    changes: Counter[tuple[Any, ...]] = Counter()
    for view, days in new.items():
        nexts = {}
        for day in days:
            before, after = neighbours[(*view, day)]
            changes[(*view[:4], day, _latest(before, days, day))] += 1
            if after is not None:
                nexts[after] = before
        for after, before in nexts.items():
            changes[(*view[:4], after, before or FIRST)] -= 1
            changes[(*view[:4], after, _latest(before, days, after))] += 1
    rows = [
        dict(zip((*VIEW[:4], "day", "previous", "users"), (*key, n), strict=True))
        for key, n in sorted(changes.items())
        if n
    ]
    if rows:
        upsert = dialect.insert(UserReturn).values(rows)
        connection.execute(
            upsert.on_conflict_do_update(
                index_elements=[*VIEW[:4], "day", "previous"],
                set_={"users": UserReturn.users + upsert.excluded.users},
            )
        )


def _latest(before: date | None, days: list[date], day: date) -> date:
    """The previous active day of `day`: the latest of the old one and the new days before it."""
    return max([before or FIRST, *(d for d in days if d < day)])


def _operations_among(connection: Connection, op_ids: Sequence[uuid.UUID], sign: int) -> None:
    connection.execute(_operations_of_ids(connection.dialect.name, sign), {"ids": list(op_ids)})


@functools.cache
def _operations_of_ids(dialect: str, sign: int) -> Any:
    """`_operations` of the operations given as `ids`, built once (built per settled transaction,
    with a placeholder per operation, it was 7% of the worker's CPU)."""
    return _operations(dialect, among(Operation.__table__.c.id, dialect), sign)


def _operations(dialect: str, where: ColumnElement[bool], sign: int) -> Any:
    # Uint256 is NUMERIC on Postgres but decimal text on SQLite, where SUM would give a float.
    amount = Operation.amount if dialect == "postgresql" else cast(Operation.amount, BigInteger)

    def signed(total: ColumnElement[Any]) -> ColumnElement[Any]:
        return _number(total) if sign > 0 else -_number(total)

    def moved(kind: str) -> ColumnElement[Any]:
        return signed(
            func.sum(case((and_(Operation.status.in_(MOVED), Operation.type == kind), amount), else_=0))
        )

    summed = (
        select(
            *_scope(dialect, Operation),
            Operation.token_type_id.label("token_type_id"),
            func.coalesce(Operation.business_id, literal(NONE)).label("business_id"),
            func.coalesce(Claim.campaign_id, literal(NONE)).label("campaign_id"),
            moved("mint").label("issued"),
            moved("burn").label("burned"),
            moved("transfer").label("transferred"),
            signed(func.coalesce(func.sum(Operation.gas_used), 0)).label("gas_used"),
        )
        .select_from(Operation)
        .outerjoin(ClaimOperation, ClaimOperation.operation_id == Operation.id)
        .outerjoin(Claim, Claim.id == ClaimOperation.claim_id)
        .where(where)
    )
    counters = ("issued", "burned", "transferred", "gas_used")
    return _upsert(dialect, OperationDay.__table__, summed, counters)  # type: ignore[arg-type]


def _redeems(connection: Connection, where: ColumnElement[bool]) -> None:
    counted = select(
        *_scope(connection.dialect.name, Redeem),
        Redeem.redemption_id.label("redemption_id"),
        func.count().label("redeems"),
    ).where(where)
    _add(connection, RedeemDay.__table__, counted, ("redeems",))  # type: ignore[arg-type]
