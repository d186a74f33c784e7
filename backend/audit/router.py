"""/v1/audit: what an auditor (or an admin) reads to prove the books against the chain."""

import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from backend.audit import proof, service, verify
from backend.audit.schemas import AuditEventOut, ExportFormat, ProofOut, VerifyReport
from backend.auth.principal import AdminOrAuditor, TenantScope
from backend.kit.api import Page, Paging, error_responses
from backend.kit.errors import NotFound
from backend.kit.session import DbSession
from backend.kit.types import Address
from backend.relay.models import Operation
from backend.runtime import Runtime
from indexer import reads

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=error_responses(400, 401, 403, 422, 429))
Block = Annotated[int | None, Query(ge=0, le=2**63 - 1)]
Names = Annotated[
    list[Annotated[str, Query(pattern=r"^[A-Za-z]{1,32}$")]] | None,
    Query(
        alias="name",
        max_length=20,
        description="Event names, e.g. Transfer, TransferSingle, OperationExecuted",
    ),
]
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def event_filters(
    name: Names = None,
    participant_address: Annotated[Address | None, Query(alias="participantAddress")] = None,
    from_block: Annotated[Block, Query(alias="fromBlock")] = None,
    to_block: Annotated[Block, Query(alias="toBlock")] = None,
) -> service.EventFilters:
    return service.EventFilters(name, participant_address, from_block, to_block)


Filters = Annotated[service.EventFilters, Depends(event_filters)]


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


@router.get("/events", response_model=Page[AuditEventOut])
def audit_events(
    session: DbSession, caller: AdminOrAuditor, filters: Filters, paging: Annotated[Paging, Depends()]
) -> Page[AuditEventOut]:
    """The mirror's events of the tenant's contracts in chain order, each with the operation it
    belongs to, or flagged `external`."""
    return service.events(session, caller.tenant, filters, paging)


@router.get(
    "/transactions/{transaction_id}/proof",
    response_model=ProofOut,
    responses=error_responses(404, 409, 502, 503),
)
def transaction_proof(
    transaction_id: str, request: Request, session: DbSession, caller: AdminOrAuditor
) -> ProofOut:
    """The operation's receipt and logs fetched live from the node, checked against the record and the
    mirror."""
    op = _operation(session, caller.tenant, transaction_id)
    mirrored = reads.outcomes(session, op.network, [(op.contract_address, op.signer, op.ref)])
    found = mirrored.get((op.contract_address.lower(), op.signer.lower(), op.ref.lower()))
    return proof.prove(_runtime(request).chain(op.network), op, found)


@router.post("/verify", response_model=VerifyReport, responses=error_responses(409, 502, 503))
def verify_mirror(request: Request, caller: AdminOrAuditor) -> VerifyReport:
    """Every holder's mirrored balance against `balanceOf`, every supply against the chain, every event
    mapped to an operation or flagged external: a report, at the mirror's block."""
    runtime = _runtime(request)
    return verify.verify(runtime.sessions, caller.tenant, runtime.chain)


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={200: {"content": {t: {} for t in CONTENT_TYPES.values()}, "description": "the events"}},
)
def export(
    request: Request, caller: AdminOrAuditor, filters: Filters, format: ExportFormat = "jsonl"
) -> StreamingResponse:
    """Every matching event (as `GET /v1/audit/events` shows them), streamed as CSV or JSON lines."""
    runtime, scope = _runtime(request), caller.tenant
    write = service.as_csv if format == "csv" else service.as_jsonl

    def body() -> Iterator[str]:
        with runtime.sessions() as session:  # its own: the request's session ends before the body is sent
            yield from write(service.stream(session, scope, filters))

    disposition = f'attachment; filename="audit-events.{format}"'
    return StreamingResponse(
        body(), media_type=CONTENT_TYPES[format], headers={"Content-Disposition": disposition}
    )


def _operation(session: DbSession, scope: TenantScope, transaction_id: str) -> Operation:
    try:
        key = uuid.UUID(transaction_id)
    except ValueError:
        raise NotFound("transaction not found") from None
    op = session.scalar(
        select(Operation).where(
            Operation.id == key,
            Operation.tenant_id == scope.tenant_id,
            Operation.environment == scope.environment,
        )
    )
    if op is None:
        raise NotFound("transaction not found")
    return op
