"""The mirror's events of a tenant's contracts, each joined to the operation of the books it belongs
to (by contract, signer and ref) or flagged external; pages of them, and all of them streamed."""

import csv
import io
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.audit.schemas import AuditEventOut
from backend.auth.principal import TenantScope
from backend.balances import service as balances
from backend.kit.api import Page, PageMeta, Paging
from backend.kit.errors import PersError
from backend.relay.models import Operation
from indexer import reads

STREAM_CHUNK = 1000  # events read, joined and written at a time by the export
OperationKey = tuple[str, str, str]  # (contract, signer, ref), lowercase


@dataclass(frozen=True)
class EventFilters:
    names: list[str] | None = None
    participant: str | None = None
    from_block: int | None = None
    to_block: int | None = None

    def __post_init__(self) -> None:
        if self.from_block is not None and self.to_block is not None and self.from_block > self.to_block:
            raise PersError("fromBlock is after toBlock", code="invalid_block_range", status=422)


def operations_by_key(
    session: Session, scope: TenantScope, keys: set[OperationKey]
) -> dict[OperationKey, uuid.UUID]:
    """The ids of the scope's operations with these (contract, signer, ref) keys."""
    if not keys:
        return {}
    rows = session.execute(
        select(Operation.id, Operation.contract_address, Operation.signer, Operation.ref).where(
            Operation.tenant_id == scope.tenant_id,
            Operation.environment == scope.environment,
            Operation.ref.in_(sorted({ref for _, _, ref in keys})),
        )
    )
    found = {}
    for op_id, contract, signer, ref in rows:
        key = (contract.lower(), signer.lower(), ref.lower())
        if key in keys:
            found[key] = op_id
    return found


def _key(event: Any) -> OperationKey | None:
    if event.signer is None or event.ref is None:
        return None
    return (event.contract, event.signer, event.ref.lower())


def described(session: Session, scope: TenantScope, events: Sequence[Any]) -> list[AuditEventOut]:
    """Mirror events as the audit shows them, each with its operation or flagged external."""
    keys = {key for key in map(_key, events) if key is not None}
    ops = operations_by_key(session, scope, keys)
    shown = []
    for event in events:
        key = _key(event)
        op_id = None if key is None else ops.get(key)
        shown.append(
            AuditEventOut(
                contract=event.contract,
                name=event.name,
                block_number=event.block_number,
                block_hash=event.block_hash,
                log_index=event.log_index,
                tx_hash=event.tx_hash,
                operator=event.operator,
                from_=event.from_address,
                to=event.to_address,
                chain_token_id=event.token_id,
                amount=event.amount,
                signer=event.signer,
                ref=event.ref,
                data=event.data,
                operation_id=op_id,
                external=key is None,
            )
        )
    return shown


def events(
    session: Session, scope: TenantScope, filters: EventFilters, paging: Paging
) -> Page[AuditEventOut]:
    books = balances.ledger(session, scope, discovered=True)
    rows: list[Any] = []
    total = 0
    if books.network is not None and books.contracts:
        rows, total = reads.events(
            session,
            books.network,
            books.contracts,
            paging.page,
            paging.limit,
            participant=filters.participant,
            names=filters.names,
            from_block=filters.from_block,
            to_block=filters.to_block,
        )
    return Page(
        data=described(session, scope, rows), meta=PageMeta(page=paging.page, limit=paging.limit, total=total)
    )


def stream(session: Session, scope: TenantScope, filters: EventFilters) -> Iterator[list[AuditEventOut]]:
    """Every matching event in chain order, in chunks: rows are fetched through a server-side cursor on
    Postgres, so memory stays flat whatever the number of events."""
    books = balances.ledger(session, scope, discovered=True)
    chain = None if books.network is None else reads.chain_id(session, books.network)
    if chain is None or not books.contracts:
        return
    query = reads.events_query(
        chain,
        books.contracts,
        participant=filters.participant,
        names=filters.names,
        from_block=filters.from_block,
        to_block=filters.to_block,
    )
    # The session's identity map holds its rows weakly: a chunk written out is let go.
    result = session.scalars(query.execution_options(yield_per=STREAM_CHUNK))
    for chunk in result.partitions():
        yield described(session, scope, chunk)


CSV_HEADER = [f.serialization_alias or f.alias or n for n, f in AuditEventOut.model_fields.items()]


def as_csv(chunks: Iterator[list[AuditEventOut]]) -> Iterator[str]:
    """One header line, then one line per event (`data` as compact JSON; null as an empty cell)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    for chunk in chunks:
        for event in chunk:
            row = event.model_dump(mode="json", by_alias=True)
            writer.writerow(["" if row[n] is None else _cell(row[n]) for n in CSV_HEADER])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def as_jsonl(chunks: Iterator[list[AuditEventOut]]) -> Iterator[str]:
    for chunk in chunks:
        yield "".join(event.model_dump_json(by_alias=True) + "\n" for event in chunk)


def _cell(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, dict) else str(value)
