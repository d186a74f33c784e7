"""What the domain reads from the mirror: balances, supplies and holders, events, and the outcome
events of operations. Addresses may be given in any case; they come back lowercase. Every answer
carries the block it is valid as of (the network's cursor)."""

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, and_, bindparam, func, or_, select, tuple_
from sqlalchemy.orm import Session

from indexer.models import BalanceChange, Cursor, Event, Holding, Supply, TenantContract


@dataclass(frozen=True)
class TokenBalance:
    contract: str
    token_id: int  # 0 on an ERC-20
    amount: int


@dataclass(frozen=True)
class Balances:
    holder: str
    as_of_block: int  # -1 when nothing is indexed yet
    balances: list[TokenBalance]


@dataclass(frozen=True)
class TokenSupply:
    contract: str
    token_id: int
    supply: int
    holders: int
    as_of_block: int


@dataclass(frozen=True)
class Holder:
    holder: str
    amount: int


@dataclass(frozen=True)
class Outcome:
    """The mirror's record of an operation's outcome event, as (contract, signer, ref) joins the books."""

    contract: str
    signer: str
    ref: str
    executed: bool
    block_number: int
    tx_hash: str
    log_index: int


def cursor(session: Session, network: str) -> Cursor | None:
    """Where the mirror of `network` stands (block, hash, the node's head when last written)."""
    return session.get(Cursor, network)


def as_of_block(session: Session, network: str) -> int:
    found = cursor(session, network)
    return -1 if found is None else found.block_number


def _chain_id(session: Session, network: str) -> int | None:
    found = cursor(session, network)
    return None if found is None else found.chain_id


def _balances_statement(of_contracts: bool) -> Select[int, str, int, int]:
    """One indexed read (holdings by holder, joined to the network's cursor for its chain and block):
    a row per non-zero holding, or one row of NULLs beside the block when there is none."""
    held = and_(
        Holding.chain_id == Cursor.chain_id,
        Holding.holder == bindparam("holder"),
        Holding.amount > 0,
    )
    if of_contracts:
        held = and_(held, Holding.contract.in_(bindparam("contracts", expanding=True)))
    return (
        select(Cursor.block_number, Holding.contract, Holding.token_id, Holding.amount)
        .select_from(Cursor)
        .outerjoin(Holding, held)
        .where(Cursor.network == bindparam("network"))
        .order_by(Holding.contract, Holding.token_id)
    )


_BALANCES = {of_contracts: _balances_statement(of_contracts) for of_contracts in (False, True)}


def balances(session: Session, network: str, holder: str, contracts: Iterable[str] | None = None) -> Balances:
    """`holder`'s non-zero balances, of every tenant contract or only of `contracts`."""
    holder = holder.lower()
    parameters: dict[str, Any] = {"network": network, "holder": holder}
    if contracts is not None:
        parameters["contracts"] = [c.lower() for c in contracts]
        if not parameters["contracts"]:
            return Balances(holder, as_of_block(session, network), [])
    rows = session.execute(_BALANCES[contracts is not None], parameters).all()
    if not rows:
        return Balances(holder, -1, [])
    found = [TokenBalance(contract, token_id, amount) for _, contract, token_id, amount in rows if contract]
    return Balances(holder, rows[0][0], found)


def supply(session: Session, network: str, contract: str, token_id: int = 0) -> TokenSupply:
    """A token's supply and holder count (zero for a token never moved)."""
    contract = contract.lower()
    chain_id = _chain_id(session, network)
    row = None
    if chain_id is not None:
        row = session.get(Supply, (chain_id, contract, token_id))
    return TokenSupply(
        contract,
        token_id,
        0 if row is None else row.supply,
        0 if row is None else row.holders,
        as_of_block(session, network),
    )


def holders(
    session: Session, network: str, contract: str, token_id: int, page: int, limit: int
) -> tuple[list[Holder], int]:
    """A page (1-based) of a token's non-zero holders, largest first, and their total count."""
    chain_id = _chain_id(session, network)
    if chain_id is None:
        return [], 0
    query = select(Holding.holder, Holding.amount).where(
        Holding.chain_id == chain_id,
        Holding.contract == contract.lower(),
        Holding.token_id == token_id,
        Holding.amount > 0,
    )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    # SQLite keeps amounts as decimal text: the longer is the larger, then text order is numeric order.
    largest = [Holding.amount.desc()]
    if session.get_bind().dialect.name == "sqlite":
        largest.insert(0, func.length(Holding.amount).desc())
    rows = session.execute(
        query.order_by(*largest, Holding.holder).limit(limit).offset((page - 1) * limit)
    ).all()
    return [Holder(*row) for row in rows], total


def events_query(
    chain_id: int,
    contracts: Sequence[str],
    *,
    participant: str | None = None,
    names: Sequence[str] | None = None,
    from_block: int | None = None,
    to_block: int | None = None,
) -> Select[Event]:
    """Events of `contracts` in chain order, optionally those naming `participant` (as sender,
    receiver or signer), of some `names`, within blocks; stream it or page it."""
    query = select(Event).where(
        Event.chain_id == chain_id, Event.contract.in_([c.lower() for c in contracts])
    )
    if participant is not None:
        who = participant.lower()
        query = query.where(or_(Event.from_address == who, Event.to_address == who, Event.signer == who))
    if names is not None:
        query = query.where(Event.name.in_(list(names)))
    if from_block is not None:
        query = query.where(Event.block_number >= from_block)
    if to_block is not None:
        query = query.where(Event.block_number <= to_block)
    return query.order_by(Event.block_number, Event.log_index)


def events(
    session: Session,
    network: str,
    contracts: Sequence[str],
    page: int,
    limit: int,
    *,
    participant: str | None = None,
    names: Sequence[str] | None = None,
    from_block: int | None = None,
    to_block: int | None = None,
) -> tuple[list[Event], int]:
    """A page (1-based) of `events_query` and the total count."""
    chain_id = _chain_id(session, network)
    if chain_id is None:
        return [], 0
    query = events_query(
        chain_id, contracts, participant=participant, names=names, from_block=from_block, to_block=to_block
    )
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    rows = session.scalars(query.limit(limit).offset((page - 1) * limit)).all()
    return list(rows), total


def tenant_contracts(session: Session, network: str, tenant_key: str | None = None) -> list[TenantContract]:
    """The tenant contracts discovered on `network` (of one tenant environment's key, if given)."""
    chain_id = _chain_id(session, network)
    if chain_id is None:
        return []
    query = select(TenantContract).where(TenantContract.chain_id == chain_id)
    if tenant_key is not None:
        query = query.where(TenantContract.tenant_key == tenant_key.lower())
    return list(session.scalars(query.order_by(TenantContract.block_number, TenantContract.address)))


def outcomes(
    session: Session, network: str, keys: Iterable[tuple[str, str, str]]
) -> dict[tuple[str, str, str], Outcome]:
    """The outcome events (`OperationExecuted` / `OperationFailed`) in the mirror for (contract,
    signer, ref) keys, by their lowercase key; a key without one is absent."""
    chain_id = _chain_id(session, network)
    wanted = {(c.lower(), s.lower(), r.lower()) for c, s, r in keys}
    if chain_id is None or not wanted:
        return {}
    rows = session.execute(
        select(
            Event.contract,
            Event.signer,
            Event.ref,
            Event.name,
            Event.block_number,
            Event.tx_hash,
            Event.log_index,
        ).where(
            Event.chain_id == chain_id,
            Event.name.in_(("OperationExecuted", "OperationFailed")),
            tuple_(Event.signer, Event.ref).in_([(s, r) for _, s, r in wanted]),
        )
    ).all()
    found = {}
    for contract, signer, ref, name, block, tx_hash, log_index in rows:
        key = (contract, signer or "", ref or "")
        if key in wanted:
            found[key] = Outcome(*key, name == "OperationExecuted", block, tx_hash, log_index)
    return found


# --- for the audit and the transaction history (lane indexer-api) ---------------------------------

ZERO = "0x" + "00" * 20


@dataclass(frozen=True)
class Movement:
    """One item of a transfer event: `amount` of (contract, token id) from `source` to `target` (the
    zero address for a mint's source and a burn's target); `position` orders a batch's items."""

    contract: str
    token_id: int
    source: str
    target: str
    amount: int
    tx_hash: str
    block_hash: str
    block_number: int
    log_index: int
    position: int


def chain_id(session: Session, network: str) -> int | None:
    """The chain the mirror of `network` follows (None before the indexer first wrote)."""
    return _chain_id(session, network)


def external_movements_query(
    chain_id: int,
    tokens: Sequence[tuple[str, int]],
    *,
    participant: str | None = None,
    kind: str | None = None,
    from_block: int | None = None,
    to_block: int | None = None,
) -> Select[*tuple[Any, ...]]:
    """Movements of `tokens` ((contract, token id) pairs) made on chain by wallets, not relayed by the
    platform (their transfer event carries no operation's signer): one row per batch item, the columns
    of `Movement` (`amount` as a signed delta). `kind` is mint, burn or transfer."""
    change, event = BalanceChange, Event
    query = (
        select(
            change.contract,
            change.token_id,
            event.from_address.label("source"),
            event.to_address.label("target"),
            change.delta.label("amount"),
            event.tx_hash,
            change.block_hash,
            change.block_number,
            change.log_index,
            change.position,
        )
        .join(
            event,
            (event.chain_id == change.chain_id)
            & (event.block_number == change.block_number)  # the key's prefix
            & (event.block_hash == change.block_hash)
            & (event.log_index == change.log_index),
        )
        .where(
            change.chain_id == chain_id,
            # One row per item: the receiving side, or the holder's side of a burn.
            or_(change.position % 2 == 1, event.to_address == ZERO),
            tuple_(change.contract, change.token_id).in_([(c.lower(), t) for c, t in tokens]),
            event.signer.is_(None),
        )
    )
    if participant is not None:
        who = participant.lower()
        query = query.where(or_(event.from_address == who, event.to_address == who))
    if kind == "mint":
        query = query.where(event.from_address == ZERO)
    elif kind == "burn":
        query = query.where(event.to_address == ZERO)
    elif kind == "transfer":
        query = query.where(event.from_address != ZERO, event.to_address != ZERO)
    if from_block is not None:
        query = query.where(change.block_number >= from_block)
    if to_block is not None:
        query = query.where(change.block_number <= to_block)
    return query


def movement(row: Any) -> Movement:
    """A row of `external_movements_query` as a `Movement`."""
    return Movement(
        row.contract,
        row.token_id,
        row.source,
        row.target,
        abs(row.amount),
        row.tx_hash,
        row.block_hash,
        row.block_number,
        row.log_index,
        row.position,
    )


def holdings(session: Session, network: str, contracts: Sequence[str]) -> Iterator[Holding]:
    """Every holding of `contracts` (zero ones too: a holder the mirror thinks sold out is checked as
    well), in key order, streamed in pages of constant size."""
    return _pages(
        session,
        network,
        Holding,
        contracts,
        (Holding.contract, Holding.token_id, Holding.holder),
    )


def supplies(session: Session, network: str, contracts: Sequence[str]) -> Iterator[Supply]:
    """Every supply row of `contracts`, in key order."""
    return _pages(session, network, Supply, contracts, (Supply.contract, Supply.token_id))


PAGE = 1000
M = TypeVar("M", Holding, Supply)


def _pages(
    session: Session, network: str, model: type[M], contracts: Sequence[str], key: tuple[Any, ...]
) -> Iterator[M]:
    """Keyset pagination over a table keyed by `key`: memory stays flat whatever the table's size."""
    found = _chain_id(session, network)
    if found is None or not contracts:
        return
    query = select(model).where(model.chain_id == found, model.contract.in_([c.lower() for c in contracts]))
    last: tuple[Any, ...] | None = None
    while True:
        page = query if last is None else query.where(tuple_(*key) > last)
        rows = list(session.scalars(page.order_by(*key).limit(PAGE)))
        yield from rows
        if len(rows) < PAGE:
            return
        last = tuple(getattr(rows[-1], column.key) for column in key)


def holdings_count(session: Session, network: str, contracts: Sequence[str]) -> int:
    """How many rows `holdings` yields."""
    found = _chain_id(session, network)
    if found is None or not contracts:
        return 0
    query = select(func.count()).where(
        Holding.chain_id == found, Holding.contract.in_([c.lower() for c in contracts])
    )
    return session.scalar(query) or 0
