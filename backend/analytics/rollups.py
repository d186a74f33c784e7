"""Keeps the daily rollups (models.py) as the facts settle, in the transaction that settles them: one
`INSERT … SELECT … GROUP BY … ON CONFLICT DO UPDATE SET n = n + excluded.n` per rollup and settle
batch, whatever the batch's size. Facts count once settled (a claim completed or failed, an operation
mined or failed, a redeem completed or failed): a settle runs in the worker, batched, so the API's
claim transaction takes no rollup row lock. Rows go in key order, so two settling transactions lock
the rows they share in one order (no deadlock). `backfill` is the same statements over every settled
row (the migration's, and the benchmark's after bulk inserts)."""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Date,
    Numeric,
    Select,
    Table,
    and_,
    case,
    cast,
    func,
    literal,
    select,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from backend.analytics.models import NONE, ClaimDay, OperationDay, RedeemDay, UserDay
from backend.campaigns.models import Claim, ClaimOperation, Trigger
from backend.redemptions.models import Redeem
from backend.relay.models import Operation

MOVED = ("mined", "confirmed")  # an operation's amount counts once it is on chain
SETTLED_OPERATIONS = (*MOVED, "failed")
SETTLED_CLAIMS = ("completed", "failed")
SETTLED_REDEEMS = ("COMPLETED", "FAILED")
SETTLING = {"transaction.mined", "transaction.failed"}  # the relay's events that settle operations


def claims_settled(session: Session, claim_ids: Sequence[uuid.UUID]) -> None:
    if claim_ids:
        _claims(_connection(session), Claim.id.in_(claim_ids))


def operations_changed(session: Session, op_ids: Sequence[uuid.UUID], event_type: str) -> None:
    """The relay's hook: every status change of operations passes here (`relay.events`)."""
    if event_type in SETTLING and op_ids:
        _operations(_connection(session), Operation.id.in_(op_ids), 1)


def operations_unsettled(session: Session, op_ids: Sequence[uuid.UUID]) -> None:
    """Mined operations that a reorg took off the chain: their figures come off until mined again."""
    if op_ids:
        _operations(_connection(session), Operation.id.in_(op_ids), -1)


def redeems_settled(session: Session, redeem_ids: Sequence[uuid.UUID]) -> None:
    if redeem_ids:
        _redeems(_connection(session), Redeem.id.in_(redeem_ids))


def backfill(connection: Connection) -> None:
    """Every settled fact into empty rollups."""
    _claims(connection, Claim.status.in_(SETTLED_CLAIMS))
    _operations(connection, Operation.status.in_(SETTLED_OPERATIONS), 1)
    _redeems(connection, Redeem.status.in_(SETTLED_REDEEMS))


def _connection(session: Session) -> Connection:
    session.flush()  # the settled rows are read back by the INSERT … SELECT
    return session.connection()


def _day(connection: Connection, moment: Any) -> ColumnElement[Any]:
    """The UTC day of a timestamp (SQLite holds UTC already)."""
    if connection.dialect.name == "postgresql":
        return cast(func.timezone("UTC", moment), Date)
    return func.date(moment)


def _add(connection: Connection, table: Table, query: Select[Any], counters: Sequence[str]) -> None:
    """Adds the query's rows (the key's columns, then the counters, labelled as the table's) to the
    table; without counters the rows are only made to exist."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    keys = [c.name for c in table.primary_key.columns]
    columns = {c.name: c for c in query.selected_columns}
    ordered = query.group_by(*(columns[k].element for k in keys)).order_by(*(columns[k] for k in keys))
    insert = dialect.insert(table).from_select(list(columns), ordered)
    if counters:
        connection.execute(
            insert.on_conflict_do_update(
                index_elements=keys,
                set_={n: _number(table.c[n]) + _number(insert.excluded[n]) for n in counters},
            )
        )
    else:
        connection.execute(insert.on_conflict_do_nothing(index_elements=keys))


def _number(column: Any) -> ColumnElement[Any]:
    """A counter as a number: `+` on a Uint256 (text on SQLite) would otherwise be concatenation."""
    return type_coerce(column, Numeric())


def _scope(connection: Connection, fact: Any) -> list[ColumnElement[Any]]:
    return [
        fact.tenant_id.label("tenant_id"),
        fact.environment.label("environment"),
        _day(connection, fact.created_at).label("day"),
    ]


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.count(case((condition, 1)))


def _claims(connection: Connection, where: ColumnElement[bool]) -> None:
    scope = _scope(connection, Claim)
    counted = (
        select(
            *scope,
            Claim.campaign_id.label("campaign_id"),
            Claim.business_id.label("business_id"),
            Trigger.type.label("trigger_type"),
            func.coalesce(Claim.trigger_source_id, literal(NONE)).label("trigger_source_id"),
            _count(Claim.status == "completed").label("completed"),
            _count(Claim.status == "failed").label("failed"),
        )
        .select_from(Claim)
        .join(Trigger, Trigger.id == Claim.trigger_id)
        .where(where)
    )
    _add(connection, ClaimDay.__table__, counted, ("completed", "failed"))  # type: ignore[arg-type]
    users = select(
        *scope,
        Claim.user_id.label("user_id"),
        Claim.campaign_id.label("campaign_id"),
        Claim.business_id.label("business_id"),
    ).where(where)
    _add(connection, UserDay.__table__, users, ())  # type: ignore[arg-type]


def _operations(connection: Connection, where: ColumnElement[bool], sign: int) -> None:
    # Uint256 is NUMERIC on Postgres but decimal text on SQLite, where SUM would give a float.
    amount = (
        Operation.amount if connection.dialect.name == "postgresql" else cast(Operation.amount, BigInteger)
    )

    def signed(total: ColumnElement[Any]) -> ColumnElement[Any]:
        return _number(total) if sign > 0 else -_number(total)

    def moved(kind: str) -> ColumnElement[Any]:
        return signed(
            func.sum(case((and_(Operation.status.in_(MOVED), Operation.type == kind), amount), else_=0))
        )

    summed = (
        select(
            *_scope(connection, Operation),
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
    _add(connection, OperationDay.__table__, summed, counters)  # type: ignore[arg-type]


def _redeems(connection: Connection, where: ColumnElement[bool]) -> None:
    counted = select(
        *_scope(connection, Redeem),
        Redeem.redemption_id.label("redemption_id"),
        func.count().label("redeems"),
    ).where(where)
    _add(connection, RedeemDay.__table__, counted, ("redeems",))  # type: ignore[arg-type]
