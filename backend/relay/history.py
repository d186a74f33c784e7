"""The transaction history (`GET /v1/transactions`): the platform's operations and, for the tenant's
admins and auditors, the movements of its tokens the chain mirror saw that the platform did not relay
(made by wallets on their own: `external`, SPEC §3.6). One order for both, since a movement seen on
chain has a block but no time of acceptance: what is not on chain yet first (newest first), then by
chain position, latest first."""

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, null, select, union_all
from sqlalchemy.orm import Session

from backend.auth.principal import TenantScope
from backend.balances import service as balances
from backend.kit.api import Page, PageMeta, Paging
from backend.relay.models import Operation
from backend.relay.schemas import TransactionOut
from backend.settings import Settings
from indexer import reads

Rows = Select[*tuple[Any, ...]]
EXTERNAL_STATUSES = ("mined", "confirmed")  # a wallet's movement on chain is never queued or failed


@dataclass(frozen=True)
class Filters:
    type: str | None = None
    status: str | None = None
    token_id: uuid.UUID | None = None
    participant: str | None = None
    dated: bool = False  # a date filter: movements seen on chain carry no time, so none of them match
    external: bool | None = None  # True: the external movements alone; False: the operations alone


def page(
    session: Session,
    settings: Settings,
    scope: TenantScope,
    operations: Select[Operation],
    filters: Filters,
    paging: Paging,
    *,
    with_external: bool,
) -> Page[TransactionOut]:
    """A page of `operations` (already filtered) merged with the external movements that match."""
    parts: list[Rows] = [] if filters.external else [_operation_keys(operations)]
    seen = None
    if with_external and filters.external is not False:
        seen = _movements(session, settings, scope, filters)
    if seen is not None:
        parts.insert(0, seen.query)  # first: the union's column types are the movements'
    if not parts:
        return Page(data=[], meta=PageMeta(page=paging.page, limit=paging.limit, total=0))
    history = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery("history")
    total = session.scalar(select(func.count()).select_from(history)) or 0
    rows = session.execute(
        select(history)
        .order_by(
            history.c.block_number.desc().nulls_first(),
            history.c.log_index.desc().nulls_first(),
            history.c.position.desc().nulls_first(),
            history.c.created_at.desc().nulls_first(),
            history.c.op_id.desc(),
        )
        .limit(paging.limit)
        .offset((paging.page - 1) * paging.limit)
    ).all()
    ids = [_uuid(r.op_id) for r in rows if r.op_id is not None]
    found = {op.id: op for op in session.scalars(select(Operation).where(Operation.id.in_(ids)))}
    data = [
        TransactionOut.model_validate(found[_uuid(r.op_id)])
        if r.op_id is not None or seen is None
        else _external(seen, reads.movement(r))
        for r in rows
    ]
    return Page(data=data, meta=PageMeta(page=paging.page, limit=paging.limit, total=total))


def _operation_keys(operations: Select[Operation]) -> Rows:
    return operations.order_by(None).with_only_columns(
        Operation.id.label("op_id"),
        Operation.created_at,
        null().label("contract"),
        null().label("token_id"),
        null().label("source"),
        null().label("target"),
        null().label("amount"),
        null().label("tx_hash"),
        null().label("block_hash"),
        Operation.block_number,
        Operation.log_index,
        null().label("position"),
    )


@dataclass(frozen=True)
class _Seen:
    """External movements matching the filters, the tenant's tokens, and the last confirmed block."""

    query: Rows
    books: balances.Ledger
    network: str
    safe: int


def _movements(session: Session, settings: Settings, scope: TenantScope, filters: Filters) -> _Seen | None:
    if filters.dated or (filters.status is not None and filters.status not in EXTERNAL_STATUSES):
        return None
    books = balances.ledger(session, scope)
    cursor = None if books.network is None else reads.cursor(session, books.network)
    if cursor is None or books.network is None:
        return None
    depth = settings.chain_config().network(books.network).confirmations
    safe = min(cursor.block_number, cursor.head_number - depth)
    tokens = [key for key, token in books.tokens.items() if filters.token_id in (None, token.id)]
    if not tokens:
        return None
    found = reads.external_movements_query(
        cursor.chain_id,
        tokens,
        participant=filters.participant,
        kind=filters.type,
        from_block=safe + 1 if filters.status == "mined" else None,
        to_block=safe if filters.status == "confirmed" else None,
    ).subquery()
    query = select(
        null().label("op_id"),
        null().label("created_at"),
        found.c.contract,
        found.c.token_id,
        found.c.source,
        found.c.target,
        found.c.amount,
        found.c.tx_hash,
        found.c.block_hash,
        found.c.block_number,
        found.c.log_index,
        found.c.position,
    )
    return _Seen(query, books, books.network, safe)


def _external(seen: _Seen, moved: reads.Movement) -> TransactionOut:
    """A wallet's movement as a transaction record; its id is derived from its place on chain."""
    token = seen.books.token(moved.contract, moved.token_id)
    assert token is not None  # the query selects the tenant's tokens only
    kind = "mint" if moved.source == reads.ZERO else "burn" if moved.target == reads.ZERO else "transfer"
    place = f"{moved.block_hash}:{moved.log_index}:{moved.position}"
    return TransactionOut.model_validate(
        {
            "id": uuid.uuid5(uuid.NAMESPACE_URL, f"pers:external:{place}"),
            "type": kind,
            "status": "confirmed" if moved.block_number <= seen.safe else "mined",
            "external": True,
            "token_type_id": token.id,
            "network": seen.network,
            "contract_address": token.contract_address,
            "chain_token_id": moved.token_id,
            "from_address": moved.source,
            "to_address": moved.target,
            "amount": moved.amount,
            "tx_hash": moved.tx_hash,
            "block_number": moved.block_number,
            "log_index": moved.log_index,
        }
    )


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
